"""Support and resistance from clusters of confirmed swing points."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.experts.levels import confirmed_swings, level_error
from signal_engine.experts.realised import trailing_mean

RANGE_WINDOW = 14


def swing_events(X: pd.DataFrame, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows at which swing lows and highs become known, and their prices, in time order."""
    low, high = X["low"].to_numpy(dtype=float), X["high"].to_numpy(dtype=float)
    lows, highs = confirmed_swings(low, width, lows=True), confirmed_swings(high, width, lows=False)
    rows = np.concatenate((np.flatnonzero(np.isfinite(lows)), np.flatnonzero(np.isfinite(highs))))
    prices = np.concatenate((lows[np.isfinite(lows)], highs[np.isfinite(highs)]))
    order = np.argsort(rows, kind="stable")
    return rows[order], prices[order]


def recent_events(event_rows: np.ndarray, event_prices: np.ndarray, n: int, count: int,
                  lookback: int) -> np.ndarray:
    """(n, count) prices of the last ``count`` swing points known at each row within ``lookback`` bars."""
    ends = np.searchsorted(event_rows, np.arange(n), side="right")
    positions = ends[:, None] - count + np.arange(count)[None, :]
    valid = positions >= 0
    safe = np.clip(positions, 0, max(len(event_rows) - 1, 0))
    if len(event_rows) == 0:
        return np.full((n, count), np.nan)
    age_ok = event_rows[safe] > np.arange(n)[:, None] - lookback
    return np.where(valid & age_ok, event_prices[safe], np.nan)


def cluster_levels(X: pd.DataFrame, *, width: int, count: int, lookback: int, tolerance: float,
                   min_touches: int) -> np.ndarray:
    """(n, 2) support and resistance: the nearest swing cluster below / above the close.

    The candidates at bar t are the last ``count`` swing highs and lows confirmed within ``lookback``
    bars (a broken resistance can become support). Two swing points belong to one cluster when they are
    within ``tolerance`` x the mean bar range of the last 14 bars; a cluster's level is the mean of its
    points and its strength their number. Support is the highest cluster level at or below the close
    with at least ``min_touches`` points (else any cluster, else the lowest low of the look-back);
    resistance mirrors it.
    """
    close = X["close"].to_numpy(dtype=float)
    low, high = X["low"].to_numpy(dtype=float), X["high"].to_numpy(dtype=float)
    n = len(close)
    candidates = recent_events(*swing_events(X, width), n, count, lookback)
    bar_range = trailing_mean(high - low, RANGE_WINDOW)
    band = (tolerance * bar_range)[:, None, None]
    with np.errstate(invalid="ignore"):
        near = np.abs(candidates[:, :, None] - candidates[:, None, :]) <= band
    strength = near.sum(axis=2)
    summed = np.nansum(np.where(near, candidates[:, None, :], 0.0), axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.where(np.isfinite(candidates) & (strength > 0), summed / strength, np.nan)
    reference = close[:, None]
    with np.errstate(invalid="ignore"):
        below, above = level <= reference, level >= reference
    strong = strength >= min_touches

    def nearest(side: np.ndarray, *, lower: bool) -> np.ndarray:
        fill = -np.inf if lower else np.inf
        chosen = np.where(side & strong, level, fill)
        picked = chosen.max(axis=1) if lower else chosen.min(axis=1)
        anyone = np.where(side, level, fill)
        fallback = anyone.max(axis=1) if lower else anyone.min(axis=1)
        return np.where(np.isfinite(picked), picked, np.where(np.isfinite(fallback), fallback, np.nan))

    rolling_low = pd.Series(low).rolling(lookback, min_periods=1).min().to_numpy()
    rolling_high = pd.Series(high).rolling(lookback, min_periods=1).max().to_numpy()
    support = nearest(below, lower=True)
    resistance = nearest(above, lower=False)
    support = np.where(np.isnan(support), rolling_low, support)
    resistance = np.where(np.isnan(resistance), rolling_high, resistance)
    return np.column_stack((np.minimum(support, close), np.maximum(resistance, close)))


class SwingClusterLevels(Expert):
    """Support/resistance from clustered swing highs and lows, the cluster tolerance learned.

    ``fit`` picks ``tolerance_`` (in mean bar ranges) and ``min_touches_`` from the grids whose levels
    best match the lowest low and highest high of the next H bars on the training rows (``y`` is the
    (n, 2) future low and high, NaN where not yet known).

    Parameters
    ----------
    swing_width : bars on each side that a swing point must dominate.
    count : swing points considered at each bar.
    lookback : bars within which a swing point stays a candidate.
    tolerances : candidate cluster tolerances, in mean bar ranges.
    touches : candidate minimum cluster sizes.

    References
    ----------
    Osler (2000), "Support for resistance: technical analysis and intraday exchange rates", FRBNY Economic
    Policy Review; Bulkowski (2005), "Encyclopedia of Chart Patterns" (clusters of swing points).
    """

    name = "levels_cluster"
    target = "future_range"
    outputs = ("support", "resistance")

    def __init__(self, swing_width: int = 3, count: int = 24, lookback: int = 120,
                 tolerances: tuple[float, ...] = (0.25, 0.5, 1.0), touches: tuple[int, ...] = (1, 2, 3)) -> None:
        self.swing_width = swing_width
        self.count = count
        self.lookback = lookback
        self.tolerances = tolerances
        self.touches = touches

    def context_bars(self) -> int | None:
        return self.lookback + 2 * self.swing_width + RANGE_WINDOW

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        future = np.asarray(y, dtype=float)
        close = X["close"].to_numpy(dtype=float)
        errors = {}
        for tolerance in self.tolerances:
            for touches in self.touches:
                levels = self._levels(X, tolerance, touches)
                errors[(tolerance, touches)] = level_error(levels, close, future[:, 0], future[:, 1])
        self.errors_ = errors
        self.tolerance_, self.min_touches_ = min(errors, key=lambda key: (errors[key], key))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self._levels(X, self.tolerance_, self.min_touches_)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)

    def _levels(self, X: pd.DataFrame, tolerance: float, touches: int) -> np.ndarray:
        return cluster_levels(X, width=self.swing_width, count=self.count, lookback=self.lookback,
                              tolerance=tolerance, min_touches=touches)
