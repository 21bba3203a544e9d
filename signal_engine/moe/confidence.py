"""Calibrated confidence: the probability that a signal's direction is right over the label horizon."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression

from signal_engine.moe.scores import confidence_map


class ConfidenceCalibrator(BaseEstimator):
    """Isotonic map from |combined score| to how often the score's sign matched the H-bar move.

    ``fit(scores, forward_returns)`` uses past out-of-sample rows only (the caller passes those whose
    move is known); with fewer than ``min_rows`` usable rows, or only one outcome, every confidence is
    the observed hit rate (0.5 with no rows). ``predict`` is non-decreasing in |score| and in [0, 1].

    References
    ----------
    Zadrozny & Elkan (2002), "Transforming classifier scores into accurate multiclass probability
    estimates", KDD; seed 002 (stage 3: calibrated confidence).
    """

    def __init__(self, min_rows: int = 100) -> None:
        self.min_rows = min_rows

    def fit(self, scores: np.ndarray, forward_returns: np.ndarray) -> Self:
        scores = np.asarray(scores, dtype=float)
        moves = np.asarray(forward_returns, dtype=float)
        usable = np.isfinite(scores) & np.isfinite(moves) & (scores != 0) & (moves != 0)
        right = (np.sign(scores[usable]) == np.sign(moves[usable])).astype(float)
        self.n_train_ = int(usable.sum())
        self.hit_rate_ = float(right.mean()) if self.n_train_ else 0.5
        self.isotonic_: IsotonicRegression | None = None
        if self.n_train_ >= self.min_rows and 0 < right.sum() < len(right):
            self.isotonic_ = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            self.isotonic_.fit(np.abs(scores[usable]), right)
        return self

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted map as knots (x, y) of |score| -> confidence: the isotonic fit's thresholds (piecewise
        linear between them, flat outside, as ``out_of_bounds="clip"`` predicts), or one knot at the hit rate."""
        if self.isotonic_ is None:
            return np.array([0.0]), np.array([self.hit_rate_])
        x = np.asarray(self.isotonic_.X_thresholds_, dtype=float)
        y = np.clip(np.asarray(self.isotonic_.y_thresholds_, dtype=float), 0.0, 1.0)
        return x.copy(), y.copy()

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Confidence per score through :func:`~signal_engine.moe.scores.confidence_map`, the Signal API's code."""
        x, y = self.knots()
        return confidence_map(scores, x, y)
