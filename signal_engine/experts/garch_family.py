"""The GARCH family through ``arch``: GARCH, GJR-GARCH and EGARCH with normal or Student-t errors."""

from __future__ import annotations

import warnings
from typing import Any, Self

import numpy as np
import pandas as pd
from arch import arch_model

from signal_engine.experts.base import Expert, log_returns
from signal_engine.experts.volatility import _recursion

VOLATILITY_PROCESSES = ("GARCH", "GJR", "EGARCH")
DISTRIBUTIONS = ("normal", "t")
SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))
LN_SIGMA_MAX = float(np.log(np.finfo(np.float64).max)) - 5.0


class ArchVolatility(Expert):
    """One-bar-ahead variance of a (1, 1) model of the GARCH family, estimated by ``arch``.

    ``fit`` estimates a constant mean and the volatility process by maximum likelihood on the training
    returns (rescaled to unit variance). ``predict_variance(X)`` gives, for each row t, the forecast
    variance of the log return from bar t's close to bar t+1's close, from the returns of ``X`` up to
    row t, the fitted parameters and the ``arch`` backcast of the training data; the recursions are
    the ones ``arch`` uses, so on the training rows they equal its conditional variances.

    Parameters
    ----------
    vol : ``"GARCH"`` (Bollerslev), ``"GJR"`` (GARCH with a leverage term, ``arch`` vol='GARCH', o=1)
        or ``"EGARCH"`` (Nelson, o=1).
    dist : ``"normal"`` or ``"t"`` (standardised Student-t).

    References
    ----------
    Bollerslev (1986), "Generalized autoregressive conditional heteroskedasticity", J. Econometrics;
    Glosten, Jagannathan and Runkle (1993), "On the relation between the expected value and the
    volatility of the nominal excess return on stocks", J. Finance; Nelson (1991), "Conditional
    heteroskedasticity in asset returns: a new approach", Econometrica; Bollerslev (1987), "A
    conditionally heteroskedastic time series model for speculative prices and rates of return"
    (Student-t errors).
    """

    name = "arch_volatility"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(self, vol: str = "GARCH", dist: str = "normal") -> None:
        self.vol = vol
        self.dist = dist

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> Self:
        if self.vol not in VOLATILITY_PROCESSES:
            raise ValueError(f"vol={self.vol!r}; expected one of {VOLATILITY_PROCESSES}")
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(f"dist={self.dist!r}; expected one of {DISTRIBUTIONS}")
        returns = log_returns(X)[1:]
        self.scale_ = 1.0 / float(np.std(returns))
        distribution: Any = self.dist
        model = arch_model(
            returns * self.scale_, mean="Constant", vol="EGARCH" if self.vol == "EGARCH" else "GARCH",
            p=1, o=0 if self.vol == "GARCH" else 1, q=1, dist=distribution, rescale=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
        params = result.params
        self.mu_ = float(params["mu"])
        self.omega_ = float(params["omega"])
        self.alpha_ = float(params["alpha[1]"])
        self.gamma_ = float(params["gamma[1]"]) if "gamma[1]" in params else 0.0
        self.beta_ = float(params["beta[1]"])
        self.nu_ = float(params["nu"]) if "nu" in params else float("inf")
        self.backcast_ = float(np.asarray(model._backcast))
        self.converged_ = result.convergence_flag == 0
        self.loglikelihood_ = float(result.loglikelihood)
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        residuals = log_returns(X) * self.scale_ - self.mu_
        variance = self._egarch(residuals) if self.vol == "EGARCH" else self._garch(residuals)
        return variance / self.scale_**2

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)[:, None]

    def _garch(self, residuals: np.ndarray) -> np.ndarray:
        squared = residuals**2
        leverage = self.gamma_ * squared * (residuals < 0)
        first = self.omega_ + (self.alpha_ + 0.5 * self.gamma_ + self.beta_) * self.backcast_
        return _recursion(self.omega_ + self.alpha_ * squared + leverage, self.beta_, first)

    def _egarch(self, residuals: np.ndarray) -> np.ndarray:
        n = len(residuals)
        log_variance = np.empty(n)
        if n == 0:
            return log_variance
        log_variance[0] = min(self.omega_ + self.beta_ * self.backcast_, LN_SIGMA_MAX)
        for t in range(1, n):
            z = residuals[t] / np.exp(0.5 * log_variance[t - 1])
            value = self.omega_ + self.alpha_ * (abs(z) - SQRT_2_OVER_PI) + self.gamma_ * z
            log_variance[t] = min(value + self.beta_ * log_variance[t - 1], LN_SIGMA_MAX)
        return np.exp(log_variance)
