"""A QLIKE-optimal combination of volatility forecasts, weighted on a validation fold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import clone

from signal_engine.experts.base import Expert
from signal_engine.experts.har import hour_dummies
from signal_engine.experts.qlike_regression import row_dot
from signal_engine.experts.realised import intraday_hours

MIN_VALIDATION_ROWS = 100


def simplex_qlike_weights(log_forecasts: np.ndarray, seasonal: np.ndarray, y: np.ndarray,
                          ridge: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Intercept, simplex weights and seasonal effects minimising QLIKE of ``exp(c + L w + S d)``.

    The weights are non-negative and sum to one (a geometric mean of the members' forecasts, scaled by
    ``exp(c)``); ``ridge`` shrinks the seasonal effects. The problem is convex and solved by SLSQP.
    """
    ok = np.isfinite(y) & np.isfinite(log_forecasts).all(axis=1)
    L, S, target = log_forecasts[ok], seasonal[ok], y[ok]
    k, h = L.shape[1], S.shape[1]
    equal = np.full(k, 1.0 / k)
    start = np.concatenate(([np.log(np.mean(target)) - float(np.mean(L @ equal))], equal, np.zeros(h)))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.clip(params[0] + L @ params[1 : 1 + k] + S @ params[1 + k :], -60.0, 60.0)
        ratio = target * np.exp(-z)
        residual = (1.0 - ratio) / len(target)
        value = float(np.mean(z + ratio) + 0.5 * ridge * np.sum(params[1 + k :] ** 2))
        gradient = np.concatenate(([residual.sum()], L.T @ residual, S.T @ residual + ridge * params[1 + k :]))
        return value, gradient

    bounds = [(None, None)] + [(0.0, 1.0)] * k + [(None, None)] * h
    constraint = {"type": "eq", "fun": lambda p: np.sum(p[1 : 1 + k]) - 1.0, "jac": lambda p: np.concatenate(
        ([0.0], np.ones(k), np.zeros(h)))}
    result = minimize(loss, start, jac=True, method="SLSQP", bounds=bounds, constraints=[constraint],
                      options={"maxiter": 500, "ftol": 1e-12})
    weights = np.clip(result.x[1 : 1 + k], 0.0, None)
    return float(result.x[0]), weights / weights.sum(), np.asarray(result.x[1 + k :])


def variance_forecast(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The variance forecast of any volatility expert (``predict_variance``, else ``predict``)."""
    method = getattr(model, "predict_variance", None) or model.predict
    return np.asarray(method(X), dtype=float)


class VolatilityCombination(Expert):
    """Geometric combination ``log f = c + sum_k w_k log f_k [+ hour effects]`` of member forecasts.

    The weights ``w_k`` are non-negative and sum to one. ``fit`` first fits clones of the members on the
    training rows before a validation fold (the last ``validation_fraction`` of the rows whose target is
    known) and learns ``c``, ``w`` (and the hour effects) by QLIKE on the members' out-of-sample forecasts
    for that fold; then it refits the members on all the training rows. Weighting out of sample keeps an
    over-fitted member from taking all the weight.

    Parameters
    ----------
    members : ``[(name, expert), ...]`` of volatility experts (cloned, as scikit-learn meta-estimators do).
    validation_fraction : share of known rows in the weighting fold.
    seasonal : add hour-of-day effects for intraday bars.
    ridge : L2 penalty on the hour effects.

    References
    ----------
    Bates and Granger (1969), "The combination of forecasts", OR Quarterly; Timmermann (2006), "Forecast
    combinations", Handbook of Economic Forecasting; Patton (2011) for QLIKE; Wolpert (1992), "Stacked
    generalization", Neural Networks.
    """

    name = "volatility_combination"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(self, members: Sequence[tuple[str, Any]] = (), validation_fraction: float = 0.3,
                 seasonal: bool = True, ridge: float = 1e-2) -> None:
        self.members = members
        self.validation_fraction = validation_fraction
        self.seasonal = seasonal
        self.ridge = ridge

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        if not self.members:
            raise ValueError("VolatilityCombination needs at least one member")
        target = np.asarray(y, dtype=float)
        known = np.flatnonzero(np.isfinite(target))
        fold = known[-max(int(self.validation_fraction * len(known)), MIN_VALIDATION_ROWS):]
        split = int(fold[0])
        early_target = target[:split].copy()
        early_target[-1:] = np.nan
        early = [clone(model).fit(X.iloc[:split], early_target) for _, model in self.members]
        hours = intraday_hours(X.index) if self.seasonal else None
        self.hours_ = np.unique(hours[:split]) if hours is not None else None
        logs, seasonal = self._design([variance_forecast(m, X) for m in early], X)
        self.intercept_, weights, self.seasonal_effects_ = simplex_qlike_weights(
            logs[fold], seasonal[fold], target[fold], self.ridge
        )
        self.weights_ = dict(zip([name for name, _ in self.members], weights.tolist(), strict=True))
        self.members_ = [(name, clone(model).fit(X, target)) for name, model in self.members]
        return self

    def member_forecasts(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each refitted member's variance forecast."""
        return {name: variance_forecast(model, X) for name, model in self.members_}

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        logs, seasonal = self._design(list(self.member_forecasts(X).values()), X)
        weights = np.array(list(self.weights_.values()))
        log_variance = self.intercept_ + row_dot(logs, weights) + row_dot(seasonal, self.seasonal_effects_)
        return np.exp(np.clip(log_variance, -60.0, 60.0))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)[:, None]

    def context_bars(self) -> int | None:
        contexts = [model.context_bars() for _, model in self.members]
        return None if any(c is None for c in contexts) else max(c for c in contexts if c is not None)

    def _design(self, forecasts: list[np.ndarray], X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Log forecasts (n, members) and hour-of-day dummies (n, hours - 1; no column for daily bars)."""
        logs = np.column_stack([np.log(np.maximum(f, 1e-300)) for f in forecasts])
        if self.hours_ is None:
            return logs, np.zeros((len(X), 0))
        hours = intraday_hours(X.index)
        hours = np.zeros(len(X), dtype=np.int64) if hours is None else hours
        return logs, hour_dummies(hours, self.hours_)
