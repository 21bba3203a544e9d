"""Training and evaluation targets. Each label at bar t looks ahead and is known only at a later bar.

``known_at`` says at which bar's close each label becomes known; the walk-forward harness trains on a
row only once that bar has passed (purging), so no fold ever trains on its own future.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DOWN, NEUTRAL, UP = 0, 1, 2
TREND_CLASSES = ("down", "neutral", "up")


@dataclass(frozen=True)
class Labels:
    """Forward-looking targets aligned to the bars they are decided at.

    Attributes
    ----------
    trend : class per bar (DOWN, NEUTRAL, UP), -1 where the horizon runs past the data.
    forward_return : log return from bar t's close to bar t+H's close.
    forward_z : ``forward_return`` divided by the volatility threshold scale sigma_t * sqrt(H).
    next_variance : squared log return from bar t's close to bar t+1's close.
    horizon_variance : sum of the squared log returns over bars t+1..t+H.
    future_low, future_high : lowest low and highest high over bars t+1..t+H.
    known_at_next, known_at_horizon : index of the bar at whose close a 1-bar or H-bar label is known.
    """

    horizon: int
    trend: np.ndarray
    forward_return: np.ndarray
    forward_z: np.ndarray
    next_variance: np.ndarray
    horizon_variance: np.ndarray
    future_low: np.ndarray
    future_high: np.ndarray

    @property
    def size(self) -> int:
        return len(self.trend)

    def known_at_next(self) -> np.ndarray:
        return np.arange(self.size) + 1

    def known_at_horizon(self) -> np.ndarray:
        return np.arange(self.size) + self.horizon


def make_labels(bars: pd.DataFrame, sigma: np.ndarray, *, horizon: int, threshold: float) -> Labels:
    """Build every label from ``bars`` (open, high, low, close) and a point-in-time per-bar sigma.

    Trend at t is UP when log(C[t+H] / C[t]) > threshold * sigma[t] * sqrt(H), DOWN when below the
    negative of that, NEUTRAL otherwise; rows whose sigma is unknown are NEUTRAL-thresholded at 0 and
    marked -1 so they are never trained on.
    """
    close = np.log(bars["close"].to_numpy(dtype=float))
    n = len(close)
    forward = _shift_back(close, horizon) - close
    scale = sigma * np.sqrt(horizon)
    with np.errstate(invalid="ignore", divide="ignore"):
        forward_z = forward / scale
    trend = np.full(n, -1, dtype=np.int64)
    valid = np.isfinite(forward_z)
    trend[valid] = NEUTRAL
    trend[valid & (forward_z > threshold)] = UP
    trend[valid & (forward_z < -threshold)] = DOWN

    one_bar = np.diff(close, append=np.nan)
    squared = one_bar**2
    horizon_variance = _forward_window_sum(squared, horizon)
    low = bars["low"].to_numpy(dtype=float)
    high = bars["high"].to_numpy(dtype=float)
    return Labels(
        horizon=horizon,
        trend=trend,
        forward_return=forward,
        forward_z=forward_z,
        next_variance=squared,
        horizon_variance=horizon_variance,
        future_low=_forward_window(low, horizon, np.min),
        future_high=_forward_window(high, horizon, np.max),
    )


def _shift_back(values: np.ndarray, steps: int) -> np.ndarray:
    shifted = np.full_like(values, np.nan)
    if steps < len(values):
        shifted[: len(values) - steps] = values[steps:]
    return shifted


def _forward_window_sum(values: np.ndarray, horizon: int) -> np.ndarray:
    """Sum over t..t+H-1 of ``values`` (values[t] already refers to bar t -> t+1)."""
    out = np.full_like(values, np.nan)
    n = len(values)
    if horizon > n:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values, horizon)
    out[: len(windows)] = windows.sum(axis=1)
    return out


def _forward_window(values: np.ndarray, horizon: int, reduce: np.ufunc | object) -> np.ndarray:
    """``reduce`` over bars t+1..t+H."""
    out = np.full_like(values, np.nan)
    n = len(values)
    if horizon >= n:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values[1:], horizon)
    out[: len(windows)] = reduce(windows, axis=1)  # type: ignore[operator]
    return out
