"""Point-in-time technical features and the entry points of the feature layer.

:func:`compute_features` turns OHLCV arrays shaped (T,) or (T, N) into a dict of feature
arrays (``FEATURE_NAMES``, ``FINGERPRINT_NAMES``, then ``MOMENTUM_NAMES``); :func:`feature_frame` does
the same for one symbol's bars in a DataFrame. Every feature is

* point in time: the value at bar ``t`` uses only bars ``<= t``, and computing on the
  first ``t + 1`` bars gives bitwise the same values as computing on all of them;
* scale free: a ratio, a log return or a z-score, so a $5 and a $5000 series are comparable;
* NaN during its warm-up (``WARMUP_BARS[name]`` bars from each column's first valid close)
  and finite afterwards.

Columns of a panel may start late (leading NaN: not listed yet) and stop early (trailing
NaN: delisted); between their first and last valid close all inputs must be finite.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from signal_engine.features.fingerprint import (
    FINGERPRINT_NAMES,
    FINGERPRINT_WARMUP,
    fingerprint_features,
    volume_zscore,
)
from signal_engine.features.rolling import (
    FloatArray,
    difference,
    ema,
    first_valid_row,
    lag,
    rolling_mean,
    rolling_std,
)

RETURN_HORIZONS: tuple[int, ...] = (1, 5, 20)
AVERAGE_SPANS: tuple[int, ...] = (5, 20, 50)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
ATR_PERIOD = 14
BOLLINGER_WINDOW = 20
VOLUME_Z_WINDOW = 20

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{k}" for k in RETURN_HORIZONS),
    *(f"sma_{k}" for k in AVERAGE_SPANS),
    *(f"ema_{k}" for k in AVERAGE_SPANS),
    f"rsi_{RSI_PERIOD}",
    "macd",
    "macd_signal",
    "macd_hist",
    f"atr_{ATR_PERIOD}",
    f"bb_width_{BOLLINGER_WINDOW}",
    f"volume_z_{VOLUME_Z_WINDOW}",
)

TECHNICAL_WARMUP: dict[str, int] = {
    **{f"ret_{k}": k for k in RETURN_HORIZONS},
    **{f"sma_{k}": k - 1 for k in AVERAGE_SPANS},
    **{f"ema_{k}": k - 1 for k in AVERAGE_SPANS},
    f"rsi_{RSI_PERIOD}": RSI_PERIOD,
    "macd": MACD_SLOW - 1,
    "macd_signal": MACD_SLOW + MACD_SIGNAL - 2,
    "macd_hist": MACD_SLOW + MACD_SIGNAL - 2,
    f"atr_{ATR_PERIOD}": ATR_PERIOD - 1,
    f"bb_width_{BOLLINGER_WINDOW}": BOLLINGER_WINDOW - 1,
    f"volume_z_{VOLUME_Z_WINDOW}": VOLUME_Z_WINDOW - 1,
}

MOMENTUM_LOOKBACKS: tuple[int, ...] = (60, 120, 250)
MOMENTUM_AVERAGE = 200

MOMENTUM_NAMES: tuple[str, ...] = (*(f"mom_{k}" for k in MOMENTUM_LOOKBACKS), f"sma_{MOMENTUM_AVERAGE}")
"""Long look-back trend features (a quarter, half a year and a year of daily bars; the 200-bar average).

The trend expert reads them when ``trend.momentum`` is on and its label horizon is at least
``trend.momentum_min_horizon`` (by default the ``medium`` and ``long`` timeframe models; chosen on the
development series, ``benchmarks/bench_development.py``): the other features look back at most 100 bars,
shorter than the 60-bar labels of the ``long`` model. The other experts and the gate do not read them.
"""

MOMENTUM_WARMUP: dict[str, int] = {
    **{f"mom_{k}": k for k in MOMENTUM_LOOKBACKS},
    f"sma_{MOMENTUM_AVERAGE}": MOMENTUM_AVERAGE - 1,
}

WARMUP_BARS: dict[str, int] = {**TECHNICAL_WARMUP, **FINGERPRINT_WARMUP, **MOMENTUM_WARMUP}
"""Number of leading bars (from a column's first valid close) that each feature leaves NaN."""

_COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, *FINGERPRINT_NAMES, *MOMENTUM_NAMES)


def span_alpha(span: int) -> float:
    """Smoothing factor ``2 / (span + 1)`` of an EMA with the given span."""
    return 2.0 / (span + 1.0)


def log_return(log_close: FloatArray, horizon: int) -> FloatArray:
    """``log(C_t / C_{t-horizon})``."""
    return difference(log_close, horizon)


def sma_gap(close: FloatArray, window: int) -> FloatArray:
    """``C_t / SMA_window(C)_t - 1``."""
    return close / rolling_mean(close, window) - 1.0


def ema_gap(close: FloatArray, span: int) -> FloatArray:
    """``C_t / EMA_span(C)_t - 1`` with ``alpha = 2 / (span + 1)``, seeded with the first close."""
    return close / ema(close, span_alpha(span)) - 1.0


def wilder_rsi(close: FloatArray, period: int = RSI_PERIOD) -> FloatArray:
    """Wilder's relative strength index in [0, 100].

    Wilder, J. W. (1978), *New Concepts in Technical Trading Systems*. Gains and losses of
    the close-to-close changes (from the second bar on) are smoothed recursively with
    ``alpha = 1 / period``, seeded with the first change (``pandas ewm(alpha=1/period,
    adjust=False)``); ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``, and 100 when the
    average loss is 0.

    Parameters
    ----------
    close
        Closes shaped (T, N).
    period
        Wilder's smoothing period.

    Returns
    -------
    numpy.ndarray
        Shaped like ``close``.
    """
    change = difference(close, 1)
    average_gain = np.maximum(ema(np.maximum(change, 0.0), 1.0 / period), 0.0)
    average_loss = np.maximum(ema(np.maximum(-change, 0.0), 1.0 / period), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + average_gain / average_loss)
    return np.where(average_loss == 0.0, 100.0, rsi)


def macd(close: FloatArray) -> dict[str, FloatArray]:
    """MACD line, signal and histogram, scaled by the close.

    ``macd = (EMA12(C) - EMA26(C)) / C_t``, ``macd_signal = EMA9(macd)`` (seeded with the
    first value of ``macd``), ``macd_hist = macd - macd_signal``; all EMAs recursive and
    seeded with their first input.
    """
    line = (ema(close, span_alpha(MACD_FAST)) - ema(close, span_alpha(MACD_SLOW))) / close
    signal = ema(line, span_alpha(MACD_SIGNAL))
    return {"macd": line, "macd_signal": signal, "macd_hist": line - signal}


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """``max(H - L, |H - C_{t-1}|, |L - C_{t-1}|)``; ``H - L`` on a column's first bar."""
    previous_close = lag(close, 1)
    gap = np.fmax(np.abs(high - previous_close), np.abs(low - previous_close))
    return np.fmax(high - low, gap)


def wilder_atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int = ATR_PERIOD) -> FloatArray:
    """Wilder's average true range divided by the close.

    Wilder, J. W. (1978), *New Concepts in Technical Trading Systems*. The true range
    (:func:`true_range`) is smoothed recursively with ``alpha = 1 / period`` seeded with the
    first bar's range (``pandas ewm(alpha=1/period, adjust=False)``), then divided by ``C_t``.
    """
    return ema(true_range(high, low, close), 1.0 / period) / close


def bollinger_width(close: FloatArray, window: int = BOLLINGER_WINDOW) -> FloatArray:
    """Bollinger band width ``(upper - lower) / middle = 4 * std / SMA`` (population std)."""
    return 4.0 * rolling_std(close, window) / rolling_mean(close, window)


def technical_features(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray | None
) -> dict[str, FloatArray]:
    """Unmasked technical features of validated (T, N) panels, keyed by ``FEATURE_NAMES``."""
    log_close = np.log(close)
    return {
        **{f"ret_{k}": log_return(log_close, k) for k in RETURN_HORIZONS},
        **{f"sma_{k}": sma_gap(close, k) for k in AVERAGE_SPANS},
        **{f"ema_{k}": ema_gap(close, k) for k in AVERAGE_SPANS},
        f"rsi_{RSI_PERIOD}": wilder_rsi(close),
        **macd(close),
        f"atr_{ATR_PERIOD}": wilder_atr(high, low, close),
        f"bb_width_{BOLLINGER_WINDOW}": bollinger_width(close),
        f"volume_z_{VOLUME_Z_WINDOW}": volume_zscore(volume, close, VOLUME_Z_WINDOW),
    }


def scaled_momentum(log_close: FloatArray, lookback: int, vol: FloatArray) -> FloatArray:
    """``log(C_t / C_{t-k}) / (sigma_t * sqrt(k))``: the k-bar return in units of its own standard deviation.

    ``sigma_t`` is the realised one-bar volatility of the last 30 bars, so the value reads as a t-statistic
    of the trend and is comparable across assets and volatility regimes (Moskowitz, Ooi and Pedersen (2012),
    "Time series momentum", J. Financial Economics, scale their 12-month signal the same way). 0.0 where the
    30 bars did not move at all.
    """
    scaled = log_return(log_close, lookback) / (vol * np.sqrt(lookback))
    return np.where(vol > 0.0, scaled, np.where(np.isnan(vol), np.nan, 0.0))


def momentum_features(close: FloatArray, vol30: FloatArray) -> dict[str, FloatArray]:
    """Unmasked long look-back features of a validated (T, N) close panel, keyed by ``MOMENTUM_NAMES``.

    ``vol30`` is the fingerprint's 30-bar realised volatility of the same panel (computed once, read here).
    """
    log_close = np.log(close)
    return {
        **{f"mom_{k}": scaled_momentum(log_close, k, vol30) for k in MOMENTUM_LOOKBACKS},
        f"sma_{MOMENTUM_AVERAGE}": sma_gap(close, MOMENTUM_AVERAGE),
    }


def _as_panel(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"{name} must be shaped (T,) or (T, N), got {array.shape}")
    return array


def _check_contiguous_history(close: FloatArray) -> None:
    present = ~np.isnan(close)
    first = first_valid_row(close)
    last = close.shape[0] - 1 - first_valid_row(close[::-1])
    gaps = present.any(axis=0) & (present.sum(axis=0) != last - first + 1)
    if gaps.any():
        column = int(np.flatnonzero(gaps)[0])
        raise ValueError(
            f"close column {column} has NaN between its first and last valid bar; "
            "only leading and trailing NaN are supported"
        )


def _check_within_history(values: FloatArray, present: npt.NDArray[np.bool_], name: str, *, allow_zero: bool) -> None:
    inside = values[present]
    out_of_range = inside < 0.0 if allow_zero else inside <= 0.0
    if (~np.isfinite(inside) | out_of_range).any():
        expectation = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {expectation} wherever close is present")


def _validated(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    close_panel = _as_panel(close, "close")
    panels = {
        "open_": _as_panel(open_, "open_"),
        "high": _as_panel(high, "high"),
        "low": _as_panel(low, "low"),
    }
    if volume is not None:
        panels["volume"] = _as_panel(volume, "volume")
    for name, panel in panels.items():
        if panel.shape != close_panel.shape:
            raise ValueError(f"{name} is shaped {panel.shape} but close is shaped {close_panel.shape}")
    _check_contiguous_history(close_panel)
    present = ~np.isnan(close_panel)
    for name, panel in (("close", close_panel), ("high", panels["high"]), ("low", panels["low"])):
        _check_within_history(panel, present, name, allow_zero=False)
    volume_panel = panels.get("volume")
    if volume_panel is not None:
        _check_within_history(volume_panel, present, "volume", allow_zero=True)
        volume_panel = _only_where(volume_panel, present)
    return _only_where(panels["high"], present), _only_where(panels["low"], present), close_panel, volume_panel


def _only_where(values: FloatArray, present: npt.NDArray[np.bool_]) -> FloatArray:
    """``values`` with NaN wherever close is absent, so that no feature starts before the close does."""
    return values if present.all() else np.where(present, values, np.nan)


def _mask_warmup_in_place(raw: dict[str, FloatArray], close: FloatArray) -> dict[str, FloatArray]:
    """Set NaN where close is NaN and during each feature's warm-up; returns the features in column order."""
    row = np.arange(close.shape[0])[:, np.newaxis]
    first_row = first_valid_row(close)[np.newaxis, :]
    absent = np.isnan(close)
    for name in _COLUMNS:
        np.putmask(raw[name], absent | (row < first_row + WARMUP_BARS[name]), np.nan)
    return {name: raw[name] for name in _COLUMNS}


def compute_features(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike | None = None,
) -> dict[str, FloatArray]:
    """Compute every feature for one series or a panel of series side by side.

    Parameters
    ----------
    open_, high, low, close
        Prices shaped (T,) or (T, N) (N symbols, same length), converted to float64.
        ``open_`` is accepted for a uniform OHLCV signature; no feature uses it.
    volume
        Volumes shaped like ``close``, or None (then ``volume_z_20`` and ``volume_z`` are 0.0
        after their warm-up).

    Returns
    -------
    dict of str to numpy.ndarray
        One float64 array shaped like ``close`` per name in ``FEATURE_NAMES + FINGERPRINT_NAMES +
        MOMENTUM_NAMES`` (in that order), NaN during the feature's warm-up (``WARMUP_BARS``) and where close is NaN.

    Raises
    ------
    ValueError
        On mismatched shapes, NaN between a column's first and last valid close, or
        non-positive/non-finite prices or negative volumes where close is present.
    """
    high_panel, low_panel, close_panel, volume_panel = _validated(open_, high, low, close, volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        technical = technical_features(high_panel, low_panel, close_panel, volume_panel)
        fingerprint = fingerprint_features(
            high_panel,
            low_panel,
            close_panel,
            volume_panel,
            volume_z=technical[f"volume_z_{VOLUME_Z_WINDOW}"],
        )
        momentum = momentum_features(close_panel, fingerprint["vol30"])
    masked = _mask_warmup_in_place({**technical, **fingerprint, **momentum}, close_panel)
    if np.ndim(close) == 1:
        return {name: values[:, 0] for name, values in masked.items()}
    return masked


def feature_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Features of one symbol's bars.

    Parameters
    ----------
    bars
        Lower-case columns ``open``, ``high``, ``low``, ``close`` and optionally ``volume``,
        indexed by timestamp.

    Returns
    -------
    pandas.DataFrame
        Same index, columns ``FEATURE_NAMES + FINGERPRINT_NAMES + MOMENTUM_NAMES``; see
        :func:`compute_features`.
    """
    missing = [column for column in ("open", "high", "low", "close") if column not in bars.columns]
    if missing:
        raise ValueError(f"bars lack the column(s) {missing}; expected open, high, low, close[, volume]")
    prices = {column: bars[column].to_numpy(dtype=np.float64) for column in ("open", "high", "low", "close")}
    volume = bars["volume"].to_numpy(dtype=np.float64) if "volume" in bars.columns else None
    features = compute_features(prices["open"], prices["high"], prices["low"], prices["close"], volume)
    return pd.DataFrame(features, index=bars.index, columns=list(_COLUMNS))
