"""Volatility: GARCH(1,1) and EWMA one-bar-ahead forecasts, and the expert that blends them."""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import pandas as pd
from arch import arch_model
from scipy.signal import lfilter

from signal_engine.experts.base import Expert, log_returns


def qlike(forecast_variance: np.ndarray, realised_squared: np.ndarray) -> float:
    """QLIKE loss ``mean(log f + y / f)`` over rows where both are finite and f > 0."""
    ok = np.isfinite(forecast_variance) & np.isfinite(realised_squared) & (forecast_variance > 0)
    f = forecast_variance[ok]
    return float(np.mean(np.log(f) + realised_squared[ok] / f))


def _recursion(intercept: np.ndarray, persistence: float, first: float) -> np.ndarray:
    """Solve ``v[t] = intercept[t] + persistence * v[t-1]`` with ``v[0] = first`` (vectorised)."""
    if len(intercept) <= 1:
        return np.full(len(intercept), first)
    out = lfilter([1.0], [1.0, -persistence], intercept[1:], zi=[persistence * first])[0]
    return np.concatenate(([first], out))


class Garch11(Expert):
    """GARCH(1,1) with a constant mean and normal errors, fitted by ``arch``.

    ``predict(X)`` gives, for each row t, the forecast variance of the log return from bar t's close
    to bar t+1's close, using the returns of ``X`` up to row t and the parameters learned in ``fit``.
    The recursion and its start (the ``arch`` backcast) are the ones ``arch`` uses.

    References
    ----------
    Bollerslev (1986), "Generalized autoregressive conditional heteroskedasticity", J. Econometrics.
    """

    name = "garch11"
    target = "next_variance"
    outputs = ("variance",)

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> Self:
        returns = log_returns(X)[1:]
        self.scale_ = 1.0 / float(np.std(returns))
        model = arch_model(returns * self.scale_, mean="Constant", vol="GARCH", p=1, q=1, dist="normal",
                           rescale=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
        self.mu_, self.omega_, self.alpha_, self.beta_ = (float(v) for v in result.params)
        self.backcast_ = float(np.asarray(model._backcast))
        self.converged_ = result.convergence_flag == 0
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        returns = log_returns(X)
        squared_residuals = (returns * self.scale_ - self.mu_) ** 2
        first = self.omega_ + (self.alpha_ + self.beta_) * self.backcast_
        intercept = self.omega_ + self.alpha_ * squared_residuals
        return _recursion(intercept, self.beta_, first) / self.scale_**2

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)[:, None]


class Ewma(Expert):
    """RiskMetrics EWMA variance: ``v[t+1] = lam * v[t] + (1 - lam) * r[t]^2``.

    The recursion starts from the mean squared return of the first ``seed_bars`` returns of the
    training data (which always starts at the first bar, so the start never moves).

    References
    ----------
    J.P. Morgan/Reuters (1996), "RiskMetrics - Technical Document", 4th ed.
    """

    name = "ewma"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(self, lam: float = 0.94, seed_bars: int = 20) -> None:
        self.lam = lam
        self.seed_bars = seed_bars

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> Self:
        returns = log_returns(X)[1 : self.seed_bars + 1]
        self.seed_variance_ = float(np.mean(returns**2))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        intercept = (1.0 - self.lam) * log_returns(X) ** 2
        return _recursion(intercept, self.lam, self.seed_variance_)

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)[:, None]


class VolatilityExpert(Expert):
    """Forecast of next-bar volatility: a variance blend of GARCH(1,1) and EWMA.

    ``fit`` fits both and picks the blend weight ``weight_`` (GARCH share, on a grid) that minimises
    QLIKE against the realised squared returns in ``y`` (NaN where not yet known). ``predict`` gives
    the forecast standard deviation of the next bar's log return.

    Parameters
    ----------
    lam : EWMA decay.
    grid : number of blend weights tried between 0 and 1.
    """

    name = "volatility"
    target = "next_variance"
    outputs = ("vol_forecast",)

    def __init__(self, lam: float = 0.94, grid: int = 21) -> None:
        self.lam = lam
        self.grid = grid

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        self.garch_ = Garch11().fit(X)
        self.ewma_ = Ewma(lam=self.lam).fit(X)
        garch, ewma = self.garch_.predict(X), self.ewma_.predict(X)
        realised = np.asarray(y, dtype=float)
        weights = np.linspace(0.0, 1.0, self.grid)
        losses = [qlike(w * garch + (1 - w) * ewma, realised) for w in weights]
        self.weight_ = float(weights[int(np.argmin(losses))])
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return self.weight_ * self.garch_.predict(X) + (1 - self.weight_) * self.ewma_.predict(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.sqrt(self.predict_variance(X))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)[:, None]
