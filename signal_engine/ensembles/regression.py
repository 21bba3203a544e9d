"""Ensembles of models that predict one number (a variance, a level): averages, stacking, BMA.

Every ensemble takes ``{name: (n,)}`` predictions and gives ``predict`` (n,).
"""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator

from signal_engine.ensembles.base import Predictions, normalise, stack


class MeanAverage(BaseEstimator):
    """The plain mean of the members' predictions."""

    def fit(self, predictions: Predictions, y: np.ndarray | None = None) -> Self:
        self.members_, stacked = stack(predictions)
        self.weights_ = self._fit_weights(stacked, None if y is None else np.asarray(y, dtype=float))
        return self

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        return np.full(stacked.shape[0], 1.0 / stacked.shape[0])

    def predict(self, predictions: Predictions) -> np.ndarray:
        _, stacked = stack(predictions, self.members_)
        return self.weights_ @ stacked


def _require(y: np.ndarray | None, name: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{name}.fit needs the validation targets y")
    return y


class InverseLossAverage(MeanAverage):
    """Members weighted by 1 / (their validation mean squared error), normalised to sum to 1."""

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        target = _require(y, "InverseLossAverage")
        self.losses_ = np.nanmean((stacked - target[None, :]) ** 2, axis=1)
        return normalise(1.0 / np.maximum(self.losses_, 1e-300))


class StackingRegressor(MeanAverage):
    """Non-negative least squares of the target on the members' predictions (weights need not sum to 1).

    References
    ----------
    Breiman (1996), "Stacked regressions", Machine Learning.
    """

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        target = _require(y, "StackingRegressor")
        ok = np.isfinite(target) & np.isfinite(stacked).all(axis=0)
        weights, _ = nnls(stacked[:, ok].T, target[ok])
        return np.asarray(weights)


class BayesianAverageRegressor(MeanAverage):
    """Members weighted by their posterior under Gaussian errors with a common variance.

    log L_m = -n/2 log(MSE_m) up to a constant (the variance profiled out); weights are
    proportional to exp(log L_m / temperature).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        target = _require(y, "BayesianAverageRegressor")
        ok = np.isfinite(target)
        mse = np.mean((stacked[:, ok] - target[None, ok]) ** 2, axis=1)
        log_likelihood = -0.5 * ok.sum() * np.log(np.maximum(mse, 1e-300))
        self.log_likelihood_ = log_likelihood
        return normalise(np.exp((log_likelihood - log_likelihood.max()) / self.temperature))
