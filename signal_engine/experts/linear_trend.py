"""Trend expert: multinomial logistic regression of the H-bar trend class on standardised features."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from signal_engine.experts.trend import TREND_FEATURES
from signal_engine.experts.trend_base import TrendClassifier, fit_standardiser, full_proba, standardise
from signal_engine.labels import DOWN, UP


class LogisticTrendExpert(TrendClassifier):
    """A linear trend classifier: L2-regularised multinomial logistic regression on z-scored features.

    Each feature is standardised with the mean and standard deviation of the training rows, clipped to
    +/- ``INPUT_CLIP``; a missing value (a look-back longer than the history) becomes 0, the training mean.
    Where the gradient-boosted expert can fit any shape from few rows, this one can only weigh its inputs
    (for instance momentum against reversal at each look-back), so it varies less from refit to refit.

    Parameters
    ----------
    C : float
        Inverse L2 strength (scikit-learn's ``C``; 1.0, its default).
    max_iter : int
        L-BFGS iterations.
    features : columns of the market frame to use; defaults to the whole feature set.
    calibration, validation_fraction, purge, refit :
        As for :class:`~signal_engine.experts.trend_base.TrendClassifier`.

    References
    ----------
    Seed 000 (trend expert: classification on prices and technical indicators); Moskowitz, Ooi and
    Pedersen (2012), "Time series momentum", Journal of Financial Economics, for the linear weighing of
    volatility-scaled past returns.
    """

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 500,
        features: tuple[str, ...] = TREND_FEATURES,
        calibration: str | None = None,
        validation_fraction: float = 0.25,
        purge: int = 5,
        refit: bool = True,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.features = features
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.purge = purge
        self.refit = refit

    def context_bars(self) -> int | None:
        return 0

    def _fit_model(self, X: pd.DataFrame, labels: np.ndarray, rows: np.ndarray) -> None:
        self.feature_names_in_ = np.array(self.features)
        raw = self._feature_matrix(X.iloc[rows])
        self.mean_, self.scale_ = fit_standardiser(raw)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.model_.fit(self._standardised(raw), labels[rows])

    def _raw_proba(self, X: pd.DataFrame, rows: np.ndarray | None) -> np.ndarray:
        selected = X if rows is None else X.iloc[rows]
        proba = self.model_.predict_proba(self._standardised(self._feature_matrix(selected)))
        return full_proba(np.asarray(proba), self.model_.classes_, len(self.classes_))

    def directional_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n, F) exact contributions of each feature to logit(up) - logit(down): its z-score times the
        difference of its up and down coefficients (zeros if a class was never seen)."""
        classes = list(self.model_.classes_)
        z = self._standardised(np.asarray(matrix, dtype=float))
        if UP not in classes or DOWN not in classes:
            return np.zeros_like(z)
        coef = self.model_.coef_
        return z * (coef[classes.index(UP)] - coef[classes.index(DOWN)])

    def _standardised(self, raw: np.ndarray) -> np.ndarray:
        return standardise(raw, self.mean_, self.scale_)
