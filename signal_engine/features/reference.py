"""Straightforward per-symbol pandas implementation of every feature.

Written for clarity, not speed: pandas ``rolling``/``ewm`` and ``rolling(...).apply(raw=True)``
for the windowed regressions. It is the test oracle of :mod:`signal_engine.features.technical`
and :mod:`signal_engine.features.fingerprint` and the baseline of ``benchmarks/bench_features.py``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from signal_engine.features.fingerprint import FINGERPRINT_NAMES, HURST_LAGS
from signal_engine.features.technical import FEATURE_NAMES, MOMENTUM_AVERAGE, MOMENTUM_LOOKBACKS, MOMENTUM_NAMES


def _log(series: pd.Series) -> pd.Series:
    return pd.Series(np.log(series.to_numpy(dtype=np.float64)), index=series.index)


def _ema(series: pd.Series, span: int) -> pd.Series:
    return series.ewm(span=span, adjust=False, min_periods=span).mean()


def _wilder(series: pd.Series, period: int) -> pd.Series:
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def _rsi(close: pd.Series, period: int = 14) -> pd.Series:
    change = close.diff()
    average_gain = _wilder(change.clip(lower=0.0), period)
    average_loss = _wilder((-change).clip(lower=0.0), period)
    rsi = 100.0 - 100.0 / (1.0 + average_gain / average_loss)
    return rsi.mask(average_loss == 0.0, 100.0)


def _true_range(high: pd.Series, low: pd.Series, close: pd.Series) -> pd.Series:
    previous_close = close.shift(1)
    ranges = pd.concat([high - low, (high - previous_close).abs(), (low - previous_close).abs()], axis=1)
    return ranges.max(axis=1)


def _volume_z(volume: pd.Series | None, index: pd.Index, window: int = 20) -> pd.Series:
    if volume is None:
        zeros = pd.Series(0.0, index=index)
        return zeros.mask(np.arange(len(index)) < window - 1)
    log_volume = pd.Series(np.log1p(volume.to_numpy(dtype=np.float64)), index=volume.index)
    mean = log_volume.rolling(window).mean()
    std = log_volume.rolling(window).std(ddof=0)
    return ((log_volume - mean) / std).mask(std == 0.0, 0.0)


def _trend_r2_window(log_close: npt.NDArray[np.float64]) -> float:
    if np.ptp(log_close) == 0.0:
        return 0.0
    correlation = np.corrcoef(np.arange(len(log_close)), log_close)[0, 1]
    return float(correlation**2)


def _hurst_window(log_close: npt.NDArray[np.float64]) -> float:
    lags = np.asarray(HURST_LAGS)
    mean_squared = np.array([np.mean((log_close[lag:] - log_close[:-lag]) ** 2) for lag in lags])
    if (mean_squared == 0.0).any():
        return 0.0
    slope, _ = np.polyfit(np.log(lags), 0.5 * np.log(mean_squared), 1)
    return float(slope)


def _spread(high: pd.Series, low: pd.Series, close: pd.Series, window: int = 20) -> pd.Series:
    log_close = _log(close)
    mid_range = (_log(high) + _log(low)) / 2.0
    previous_close = log_close.shift(1)
    squared_spread = 4.0 * (previous_close - mid_range.shift(1)) * (previous_close - mid_range)
    return np.sqrt(squared_spread.rolling(window).mean().clip(lower=0.0))


def reference_feature_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Every feature of one symbol computed bar by bar with plain pandas.

    Parameters
    ----------
    bars
        Lower-case columns ``open``, ``high``, ``low``, ``close`` and optionally ``volume``,
        indexed by timestamp, without missing values.

    Returns
    -------
    pandas.DataFrame
        Same index, columns ``FEATURE_NAMES + FINGERPRINT_NAMES + MOMENTUM_NAMES``, meant to equal
        :func:`signal_engine.features.feature_frame` up to rounding.
    """
    high, low, close = bars["high"], bars["low"], bars["close"]
    log_close = _log(close)
    ema_fast = close.ewm(span=12, adjust=False).mean()
    ema_slow = close.ewm(span=26, adjust=False).mean()
    macd_line = (ema_fast - ema_slow) / close
    macd_signal = macd_line.ewm(span=9, adjust=False).mean()
    signal_warmup = np.arange(len(close)) < 33
    columns: dict[str, pd.Series] = {
        **{f"ret_{k}": _log(close / close.shift(k)) for k in (1, 5, 20)},
        **{f"sma_{k}": close / close.rolling(k).mean() - 1.0 for k in (5, 20, 50)},
        **{f"ema_{k}": close / _ema(close, k) - 1.0 for k in (5, 20, 50)},
        "rsi_14": _rsi(close),
        "macd": macd_line.mask(np.arange(len(close)) < 25),
        "macd_signal": macd_signal.mask(signal_warmup),
        "macd_hist": (macd_line - macd_signal).mask(signal_warmup),
        "atr_14": _wilder(_true_range(high, low, close), 14) / close,
        "bb_width_20": 4.0 * close.rolling(20).std(ddof=0) / close.rolling(20).mean(),
        "volume_z_20": _volume_z(bars.get("volume"), bars.index),
        "vol30": log_close.diff().rolling(30).std(ddof=1),
        "trend_r2": log_close.rolling(30).apply(_trend_r2_window, raw=True),
        "hurst": log_close.rolling(100).apply(_hurst_window, raw=True),
        "spread": _spread(high, low, close),
    }
    columns["volume_z"] = columns["volume_z_20"]
    for k in MOMENTUM_LOOKBACKS:
        scaled = _log(close / close.shift(k)) / (columns["vol30"] * np.sqrt(k))
        columns[f"mom_{k}"] = scaled.mask(columns["vol30"] == 0.0, 0.0)
    columns[f"sma_{MOMENTUM_AVERAGE}"] = close / close.rolling(MOMENTUM_AVERAGE).mean() - 1.0
    return pd.DataFrame(columns, index=bars.index)[[*FEATURE_NAMES, *FINGERPRINT_NAMES, *MOMENTUM_NAMES]]
