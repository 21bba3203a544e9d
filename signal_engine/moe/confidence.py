"""Calibrated confidence: the probability that a signal's direction is right over the label horizon."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression


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

    def predict(self, scores: np.ndarray) -> np.ndarray:
        magnitude = np.nan_to_num(np.abs(np.asarray(scores, dtype=float)), nan=0.0)
        if self.isotonic_ is None:
            return np.full(len(magnitude), self.hit_rate_)
        return np.clip(self.isotonic_.predict(magnitude), 0.0, 1.0)
