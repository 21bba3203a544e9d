"""Meta-model combiner of seed 000: a logistic regression on expert outputs and gate weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from signal_engine.labels import DOWN, TREND_CLASSES, UP
from signal_engine.moe.combiner import SIGNALS
from signal_engine.moe.standardise import fit_standardiser, standardise


@dataclass(frozen=True)
class MetaWeights:
    """The fitted meta-model as plain arrays: standardise, then multinomial logistic regression."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (down, neutral, up) in NumPy only (the serving path)."""
        z = standardise(features, self.mean, self.scale)
        logits = z @ self.coef.T + self.intercept
        if logits.shape[1] == 1:
            logits = np.column_stack((-logits[:, 0] / 2, logits[:, 0] / 2))
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        proba = np.zeros((len(z), len(TREND_CLASSES)))
        proba[:, self.classes] = exp / exp.sum(axis=1, keepdims=True)
        return proba


class MetaModelCombiner(BaseEstimator):
    """Learns the signal from the experts' outputs and the gate weights.

    ``fit(features, y)`` trains a multinomial logistic regression of the realised trend class (down,
    neutral, up) on out-of-fold features: each expert's score or outputs and the gate weights.
    ``decision_function`` is P(up) - P(down); buy above ``buy_threshold``, sell below
    ``sell_threshold``. ``weights_`` holds the model as plain arrays for the serving path.

    References
    ----------
    Seed 000, "Meta-Model Combination"; Wolpert (1992), "Stacked generalization", Neural Networks.
    """

    def __init__(self, C: float = 1.0, buy_threshold: float = 0.1, sell_threshold: float = -0.1) -> None:
        self.C = C
        self.buy_threshold = buy_threshold
        self.sell_threshold = sell_threshold

    def fit(self, features: np.ndarray, y: np.ndarray) -> Self:
        X = np.asarray(features, dtype=float)
        mean, scale = fit_standardiser(X)
        model = LogisticRegression(C=self.C, max_iter=2000)
        model.fit(standardise(X, mean, scale), np.asarray(y, dtype=np.int64))
        self.model_ = model
        self.classes_ = SIGNALS
        self.weights_ = MetaWeights(mean, scale, model.coef_, model.intercept_, model.classes_.astype(np.int64))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.weights_.predict_proba(features)

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(features)
        return proba[:, UP] - proba[:, DOWN]

    def predict(self, features: np.ndarray) -> np.ndarray:
        score = self.decision_function(features)
        direction = np.where(score > self.buy_threshold, 1, np.where(score < self.sell_threshold, -1, 0))
        return SIGNALS[direction + 1]
