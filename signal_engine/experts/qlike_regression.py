"""Log-linear variance models fitted by minimising QLIKE (a convex problem)."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator

LOG_VARIANCE_BOUND = 60.0


def row_dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` summed row by row, so a row's value never depends on the other rows (BLAS may)."""
    return np.asarray((matrix * vector[None, :]).sum(axis=1)) if matrix.shape[1] else np.zeros(len(matrix))


class QlikeLogLinear(BaseEstimator):
    """Variance forecast ``f = exp(b0 + x @ b)`` with b minimising ``mean(log f + y / f) + ridge/2 |b|^2``.

    QLIKE is convex in log f, and log f is linear in b, so the fit has a single minimum; it is the
    Gaussian quasi-likelihood (a Gamma GLM with log link), robust to noise in the variance proxy ``y``.
    Inputs are standardised with the training mean and scale before the fit.

    Parameters
    ----------
    ridge : L2 penalty on the slopes (not the intercept), in standardised units.
    max_iter : L-BFGS iterations.

    References
    ----------
    Patton (2011), "Volatility forecast comparison using imperfect volatility proxies", J. Econometrics
    160(1), 246-256; McCullagh and Nelder (1989), "Generalized Linear Models", 2nd ed.
    """

    def __init__(self, ridge: float = 1e-3, max_iter: int = 500) -> None:
        self.ridge = ridge
        self.max_iter = max_iter

    def fit(self, features: np.ndarray, y: np.ndarray) -> Self:
        A = np.asarray(features, dtype=float)
        target = np.asarray(y, dtype=float)
        ok = np.isfinite(target) & np.isfinite(A).all(axis=1)
        A, target = A[ok], target[ok]
        self.mean_ = A.mean(axis=0) if len(A) else np.zeros(A.shape[1])
        scale = A.std(axis=0) if len(A) else np.ones(A.shape[1])
        self.scale_ = np.where(scale > 0, scale, 1.0)
        design = np.column_stack((np.ones(len(A)), (A - self.mean_) / self.scale_))
        start = np.zeros(design.shape[1])
        start[0] = np.log(max(float(np.mean(target)), 1e-300)) if len(target) else 0.0
        penalty = np.full(design.shape[1], self.ridge)
        penalty[0] = 0.0

        def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
            z = np.clip(design @ b, -LOG_VARIANCE_BOUND, LOG_VARIANCE_BOUND)
            ratio = target * np.exp(-z)
            value = float(np.mean(z + ratio) + 0.5 * np.sum(penalty * b * b))
            gradient = design.T @ (1.0 - ratio) / len(target) + penalty * b
            return value, gradient

        result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.coef_ = np.asarray(result.x[1:])
        self.intercept_ = float(result.x[0])
        self.converged_ = bool(result.success)
        self.n_rows_ = len(target)
        return self

    def predict_log(self, features: np.ndarray) -> np.ndarray:
        """Forecast log variance per row."""
        standardised = (np.asarray(features, dtype=float) - self.mean_) / self.scale_
        return np.clip(self.intercept_ + row_dot(standardised, self.coef_), -LOG_VARIANCE_BOUND, LOG_VARIANCE_BOUND)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Forecast variance per row."""
        return np.exp(self.predict_log(features))
