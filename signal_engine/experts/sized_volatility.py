"""Two volatility forecasts in one expert: one for the MoE's volatility score, one to report and size by."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine.experts.base import Expert
from signal_engine.experts.volatility_combination import variance_forecast


class SizedVolatility(Expert):
    """The MoE's volatility expert (``score``) next to the forecast users see and positions are sized by (``sizing``).

    ``predict_variance`` is the sizing model's forecast (the Signal API's ``vol_forecast``); ``score_variance`` is
    the score model's, whose recent history the MoE's volatility score reads (the API's ``vol_history``). The
    backtest keeps the two apart the same way (``moe.experts.volatility`` and ``moe.experts.sizing_volatility``).
    Both are fitted on the same rows and targets.
    """

    name = "sized_volatility"
    target = "next_variance"
    outputs = ("vol_forecast",)

    def __init__(self, score: Any = None, sizing: Any = None) -> None:
        self.score = score
        self.sizing = sizing

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        if self.score is None or self.sizing is None:
            raise ValueError("SizedVolatility needs a score model and a sizing model")
        self.score_ = clone(self.score).fit(X, y)
        self.sizing_ = clone(self.sizing).fit(X, y)
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return variance_forecast(self.sizing_, X)

    def score_variance(self, X: pd.DataFrame) -> np.ndarray:
        return variance_forecast(self.score_, X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.sqrt(self.predict_variance(X))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)[:, None]
