"""Weighted-score combiner of seed 000: gate-weighted sum of expert scores, then thresholds."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from signal_engine.moe.scores import weighted_score

SIGNALS = np.array(["sell", "hold", "buy"])


class WeightedScoreCombiner(BaseEstimator):
    """Score = sum_e w_e * s_e; buy above ``buy_threshold``, sell below ``sell_threshold``, else hold.

    Seed 000's worked example: weights [0.4, 0.3, 0.2] on scores [0.7, 0.5, -0.2] give 0.39, a buy
    at a 0.3 threshold. Weights that do not sum to 1 are used as given.
    """

    def __init__(self, buy_threshold: float = 0.1, sell_threshold: float = -0.1) -> None:
        self.buy_threshold = buy_threshold
        self.sell_threshold = sell_threshold

    def fit(self, scores: np.ndarray | None = None, weights: np.ndarray | None = None) -> Self:
        self.classes_ = SIGNALS
        return self

    def decision_function(self, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The combined score per row, clipped to [-1, 1]."""
        return weighted_score(scores, weights)

    def direction(self, combined: np.ndarray) -> np.ndarray:
        """+1 buy, -1 sell, 0 hold for each combined score."""
        return np.where(combined > self.buy_threshold, 1, np.where(combined < self.sell_threshold, -1, 0))

    def predict(self, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return SIGNALS[self.direction(self.decision_function(scores, weights)) + 1]
