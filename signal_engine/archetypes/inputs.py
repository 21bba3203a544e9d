"""Network inputs of the archetype experts, in NumPy: bar windows, chart images, IV grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signal_engine.archetypes.fingerprint import IV_PREFIX
from signal_engine.archetypes.kernels import BAR_CHANNELS
from signal_engine.experts.realised import trailing_windows

CLIP = 10.0
VOL_WINDOW = 30
FALLBACK_VOLATILITY = 0.01


def edge_windows(matrix: np.ndarray, window: int) -> np.ndarray:
    """(n, window, channels) windows ending at each row; rows before the first repeat the first row."""
    padded = np.concatenate((np.repeat(matrix[:1], window - 1, axis=0), matrix)) if len(matrix) else matrix
    return np.ascontiguousarray(sliding_window_view(padded, window, axis=0).transpose(0, 2, 1))


def trailing_volatility(log_close: np.ndarray) -> np.ndarray:
    """Standard deviation of the last 30 one-bar log returns (fewer at the start; 1% before two), point in time."""
    windows = trailing_windows(np.diff(log_close, prepend=log_close[0]), VOL_WINDOW)
    counts = np.isfinite(windows).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        vol = np.where(counts >= 2, np.nanstd(windows, axis=1) * np.sqrt(counts / np.maximum(counts - 1, 1)), np.nan)
    return np.where(np.isfinite(vol) & (vol > 0), vol, FALLBACK_VOLATILITY)


def bar_windows(X: pd.DataFrame, window: int) -> np.ndarray:
    """(n, window, 5) windows of log close, open, high, low relative to the row's close, and volume z.

    Prices are divided by the row's 30-bar volatility x sqrt(window) so that one unit is a typical move
    over the window; volume is the ``volume_z_20`` feature where the frame has it (else 0).
    """
    log_prices = np.log(X.loc[:, ["close", "open", "high", "low"]].to_numpy(dtype=float))
    windows = edge_windows(log_prices, window)
    scale = (trailing_volatility(log_prices[:, 0]) * np.sqrt(window))[:, None, None]
    relative = (windows - log_prices[:, None, None, 0]) / scale
    volume = X["volume_z_20"].to_numpy(dtype=float) if "volume_z_20" in X else np.zeros(len(X))
    volume_windows = edge_windows(np.nan_to_num(volume)[:, None], window)
    stacked = np.concatenate((relative, volume_windows), axis=2)
    assert stacked.shape[2] == len(BAR_CHANNELS)
    return np.clip(stacked, -CLIP, CLIP).astype(np.float32)


def chart_images(windows: np.ndarray, bins: int) -> np.ndarray:
    """(n, bins, window, 1) chart: pixel (b, j) is 1 where bar j's low-high range covers price bin b.

    Bins split each window's lowest low .. highest high (bin 0 lowest); ``windows`` are from
    :func:`bar_windows`.
    """
    high, low = windows[:, :, 2], windows[:, :, 3]
    top, bottom = high.max(axis=1, keepdims=True), low.min(axis=1, keepdims=True)
    span = np.where(top > bottom, top - bottom, 1.0)
    centres = bottom[:, :, None] + span[:, :, None] * (np.arange(bins)[None, :, None] + 0.5) / bins
    covered = (low[:, None, :] <= centres) & (centres <= high[:, None, :])
    return covered.astype(np.float32)[..., None]


def iv_columns(X: pd.DataFrame) -> list[str]:
    """The ``iv_*`` columns (one per strike, lowest strike first)."""
    columns = [c for c in X.columns if str(c).startswith(IV_PREFIX)]
    if len(columns) < 3:
        raise ValueError(f"an implied-volatility frame needs at least 3 '{IV_PREFIX}*' columns, got {columns}")
    return columns


def iv_inputs(X: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of the options expert: (n, window, 5) smile summaries and (n, window, strikes, 1) IV grids.

    Channels: ATM IV, skew (lowest strike - ATM), curvature (wings - 2 ATM), log close (each relative to
    the row's value), 0. The grid is the IV surface of the window less the row's ATM IV, over the
    window's standard deviation.
    """
    grid = X.loc[:, iv_columns(X)].to_numpy(dtype=float)
    atm = grid[:, grid.shape[1] // 2]
    skew = grid[:, 0] - atm
    curvature = grid[:, 0] + grid[:, -1] - 2 * atm
    log_close = np.log(X["close"].to_numpy(dtype=float)) if "close" in X else np.zeros(len(X))
    channels = np.column_stack((atm, skew, curvature, log_close, np.zeros(len(X))))
    windows = edge_windows(channels, window)
    relative = windows - windows[:, -1:, :]
    grids = edge_windows(grid, window)
    spread = grids.std(axis=(1, 2), keepdims=True)
    images = (grids - atm[:, None, None]) / np.where(spread > 0, spread, 1.0)
    return (np.clip(relative * 10.0, -CLIP, CLIP).astype(np.float32),
            np.clip(images, -CLIP, CLIP).astype(np.float32)[..., None])
