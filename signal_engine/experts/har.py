"""HAR model of realised variance measures from OHLC bars, fitted by QLIKE."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.experts.qlike_regression import QlikeLogLinear
from signal_engine.experts.realised import MEASURES, intraday_hours, squared_returns, trailing_mean, usable_measures


def har_features(X: pd.DataFrame, measures: tuple[str, ...], lags: tuple[int, ...], floor: np.ndarray,
                 leverage: bool) -> np.ndarray:
    """Log trailing means of each measure over each lag, and (with ``leverage``) the signed last return.

    Column order: for each measure, for each lag; then the negative part of the last return and of the
    mean return over the longest lag, each divided by the trailing volatility of that lag.
    """
    columns: list[np.ndarray] = []
    for measure, measure_floor in zip(measures, floor, strict=True):
        values = MEASURES[measure](X)
        columns.extend(np.log(trailing_mean(values, lag) + measure_floor) for lag in lags)
    if leverage:
        close = np.log(X["close"].to_numpy(dtype=float))
        returns = np.diff(close, prepend=close[0])
        scale = np.sqrt(trailing_mean(squared_returns(X), max(lags)) + floor[0])
        columns.append(np.minimum(returns, 0.0) / scale)
        columns.append(np.minimum(trailing_mean(returns, max(lags)), 0.0) / scale)
    return np.column_stack(columns)


def hour_dummies(hours: np.ndarray | None, known: np.ndarray) -> np.ndarray:
    """One column per hour of ``known`` (the first dropped); empty when the bars are not intraday."""
    if hours is None or len(known) < 2:
        return np.zeros((0 if hours is None else len(hours), 0))
    return (hours[:, None] == known[None, 1:]).astype(float)


class HarVolatility(Expert):
    """Heterogeneous autoregressive (HAR) forecast of the next bar's variance from realised measures.

    ``log f_t = b0 + sum_m sum_k b_mk log RM_m(t; k) [+ leverage terms] [+ hour-of-day effects]`` where
    ``RM_m(t; k)`` is the mean of measure m over the last k bars (1, 5 and 22: a day, a week and a month
    for daily bars). Where intraday data are absent the range-based Garman-Klass and Parkinson measures
    stand in for realised variance. The coefficients minimise QLIKE against the next bar's squared
    return (:class:`~signal_engine.experts.qlike_regression.QlikeLogLinear`), so the close-to-close
    scale (overnight gaps included) is learned, not assumed. For intraday bars, hour-of-day dummies model
    the daily seasonality of volatility.

    Parameters
    ----------
    measures : names in :data:`signal_engine.experts.realised.MEASURES`.
    lags : trailing windows in bars.
    leverage : add the negative part of recent returns (the leverage effect).
    seasonal : add hour-of-day effects for intraday bars.
    ridge : L2 penalty of the QLIKE fit.

    References
    ----------
    Corsi (2009), "A simple approximate long-memory model of realized volatility", J. Financial
    Econometrics 7(2), 174-196; Corsi and Reno (2012), "Discrete-time volatility forecasting with
    persistent leverage effect", JBES; Parkinson (1980); Garman and Klass (1980); Patton (2011);
    Andersen and Bollerslev (1997), "Intraday periodicity and volatility persistence", J. Empirical Finance.
    """

    name = "har"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(
        self,
        measures: tuple[str, ...] = ("garman_klass", "parkinson", "squared_return"),
        lags: tuple[int, ...] = (1, 5, 22),
        leverage: bool = True,
        seasonal: bool = True,
        ridge: float = 1e-3,
    ) -> None:
        self.measures = measures
        self.lags = lags
        self.leverage = leverage
        self.seasonal = seasonal
        self.ridge = ridge

    def context_bars(self) -> int | None:
        return max(self.lags)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measure(s) {unknown}; expected some of {sorted(MEASURES)}")
        target = np.asarray(y, dtype=float)
        self.measures_ = usable_measures(tuple(self.measures), X)
        self.floor_ = np.array([_floor(MEASURES[m](X)) for m in self.measures_])
        hours = intraday_hours(X.index) if self.seasonal else None
        self.hours_ = np.unique(hours) if hours is not None else None
        design = self._design(X)
        self.model_ = QlikeLogLinear(ridge=self.ridge).fit(design[1:], target[1:])
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(self._design(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)[:, None]

    @property
    def fitted_measures(self) -> tuple[str, ...]:
        """The measures of the fit: ``measures``, less the range-based ones on close-only bars."""
        return getattr(self, "measures_", tuple(self.measures))  # a model pickled before measures_ has them all

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        features = har_features(X, self.fitted_measures, tuple(self.lags), self.floor_, self.leverage)
        if self.hours_ is None:
            return features
        hours = intraday_hours(X.index)
        hours = np.zeros(len(X), dtype=np.int64) if hours is None else hours
        return np.column_stack((features, hour_dummies(hours, self.hours_)))


def _floor(values: np.ndarray) -> float:
    """A small positive variance added before taking logs: 1% of the median positive value."""
    positive = values[np.isfinite(values) & (values > 0)]
    return 0.01 * float(np.median(positive)) if len(positive) else 1e-12
