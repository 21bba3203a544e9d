"""Support and resistance from swing points; the pivot baselines live in :mod:`signal_engine.experts.pivots`."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signal_engine.experts.base import Expert
from signal_engine.experts.pivots import PivotLevels


def confirmed_swings(values: np.ndarray, width: int, *, lows: bool) -> np.ndarray:
    """Swing levels placed at the bar where they become known, NaN elsewhere.

    Bar j is a swing low when its low is the minimum of bars j-width..j+width; that is known at bar
    j+width's close, so the level is placed at row j+width.
    """
    n = len(values)
    placed = np.full(n, np.nan)
    span = 2 * width + 1
    if n < span:
        return placed
    windows = sliding_window_view(values, span)
    extreme = windows.min(axis=1) if lows else windows.max(axis=1)
    centre = values[width : n - width]
    is_swing = centre == extreme
    confirmed_at = np.arange(width, n - width)[is_swing] + width
    placed[confirmed_at] = centre[is_swing]
    return placed


def _nearest(candidates: np.ndarray, close: np.ndarray, window: int, *, below: bool) -> np.ndarray:
    """Per row t, the candidate level in rows t-window+1..t nearest to close[t] on the given side."""
    n = len(close)
    padded = np.concatenate((np.full(window - 1, np.nan), candidates))
    windows = sliding_window_view(padded, window)[:n]
    reference = close[:, None]
    with np.errstate(invalid="ignore"):
        side = windows <= reference if below else windows >= reference
    masked = np.where(side, windows, -np.inf if below else np.inf)
    nearest = masked.max(axis=1) if below else masked.min(axis=1)
    return np.where(np.isfinite(nearest), nearest, np.nan)


def _rolling_extreme(values: np.ndarray, window: int, *, lows: bool) -> np.ndarray:
    series = pd.Series(values).rolling(window, min_periods=1)
    return (series.min() if lows else series.max()).to_numpy()


def swing_levels(X: pd.DataFrame, window: int, width: int) -> np.ndarray:
    """Support and resistance per row from swing points confirmed within the last ``window`` bars.

    Support is the highest confirmed swing low at or below the close, resistance the lowest confirmed
    swing high at or above it; where there is none, the lowest low / highest high of the window.
    """
    low = X["low"].to_numpy(dtype=float)
    high = X["high"].to_numpy(dtype=float)
    close = X["close"].to_numpy(dtype=float)
    support = _nearest(confirmed_swings(low, width, lows=True), close, window, below=True)
    resistance = _nearest(confirmed_swings(high, width, lows=False), close, window, below=False)
    support = np.where(np.isnan(support), _rolling_extreme(low, window, lows=True), support)
    resistance = np.where(np.isnan(resistance), _rolling_extreme(high, window, lows=False), resistance)
    return np.column_stack((np.minimum(support, close), np.maximum(resistance, close)))


def level_error(levels: np.ndarray, close: np.ndarray, future_low: np.ndarray, future_high: np.ndarray) -> float:
    """Mean absolute distance, relative to the close, between the levels and the H-bar low/high."""
    error = (np.abs(levels[:, 0] - future_low) + np.abs(levels[:, 1] - future_high)) / close
    return float(np.nanmean(error))


__all__ = ["PivotLevels", "SwingLevelsExpert", "confirmed_swings", "level_error", "swing_levels"]


class SwingLevelsExpert(Expert):
    """Support/resistance from confirmed swing highs and lows.

    ``fit`` picks the look-back ``window_`` among ``windows`` whose levels best match the lowest low
    and highest high of the next H bars on the training rows (``y`` is the (n, 2) array of
    future low and future high, NaN where not yet known).

    Parameters
    ----------
    windows : candidate look-backs in bars.
    swing_width : bars on each side that a swing point must dominate.
    """

    name = "levels"
    target = "future_range"
    outputs = ("support", "resistance")

    def __init__(self, windows: tuple[int, ...] = (20, 50, 100), swing_width: int = 3) -> None:
        self.windows = windows
        self.swing_width = swing_width

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        future = np.asarray(y, dtype=float)
        close = X["close"].to_numpy(dtype=float)
        errors = {
            w: level_error(swing_levels(X, w, self.swing_width), close, future[:, 0], future[:, 1])
            for w in self.windows
        }
        self.errors_ = errors
        self.window_ = min(errors, key=lambda w: (errors[w], w))
        return self

    def context_bars(self) -> int | None:
        return max(self.windows) + 2 * self.swing_width

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return swing_levels(X, self.window_, self.swing_width)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)
