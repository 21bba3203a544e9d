"""Regime fingerprint: five scale-free numbers that describe how a market is behaving.

``vol30`` (how much it moves), ``trend_r2`` (how straight it moves), ``hurst`` (whether
moves persist or revert), ``spread`` (how costly it is to trade) and ``volume_z`` (how
busy it is compared with its recent past). All are point-in-time and vectorised over
panels shaped (T, N); see :mod:`signal_engine.features.rolling` for the conventions.

The functions here return *unmasked* values; ``compute_features`` sets the first
``FINGERPRINT_WARMUP[name]`` bars of each column to NaN.
"""

from __future__ import annotations

import numpy as np

from signal_engine.features.rolling import (
    FloatArray,
    difference,
    lag,
    rolling_mean,
    rolling_std,
    rolling_sum,
    rolling_time_cov,
    rolling_var,
    rolling_zscore,
    zero_leading,
)

FINGERPRINT_NAMES: tuple[str, ...] = ("vol30", "trend_r2", "hurst", "spread", "volume_z")

VOL_WINDOW = 30
TREND_WINDOW = 30
HURST_WINDOW = 100
HURST_LAGS: tuple[int, ...] = tuple(range(2, 21))
SPREAD_WINDOW = 20
VOLUME_WINDOW = 20

FINGERPRINT_WARMUP: dict[str, int] = {
    "vol30": VOL_WINDOW,
    "trend_r2": TREND_WINDOW - 1,
    "hurst": HURST_WINDOW - 1,
    "spread": SPREAD_WINDOW,
    "volume_z": VOLUME_WINDOW - 1,
}


def realised_volatility(log_close: FloatArray, window: int = VOL_WINDOW) -> FloatArray:
    """Sample standard deviation (ddof=1) of the last ``window`` one-bar log returns.

    Per bar, not annualised. The first value needs ``window`` returns, i.e. ``window + 1`` closes.

    Parameters
    ----------
    log_close
        Log closes shaped (T, N).
    window
        Number of returns in the window.

    Returns
    -------
    numpy.ndarray
        Shaped like ``log_close``.
    """
    one_bar_returns = difference(log_close, 1)
    return rolling_std(one_bar_returns, window, ddof=1)


def trend_r2(log_close: FloatArray, window: int = TREND_WINDOW) -> FloatArray:
    """R² of the OLS regression of log close on time over the last ``window`` bars.

    Equal to the squared correlation of the ``window`` log closes with ``0 .. window - 1``:
    ``cov(t, y)**2 / (var(t) * var(y))`` with ``var(t) = (window**2 - 1) / 12``. A window
    whose closes are all equal has no trend and gets 0.0. Values are clipped to [0, 1]
    to absorb rounding.

    Parameters
    ----------
    log_close
        Log closes shaped (T, N).
    window
        Number of bars in the regression.

    Returns
    -------
    numpy.ndarray
        Shaped like ``log_close``, in [0, 1].
    """
    time_var = (window * window - 1) / 12.0
    cov = rolling_time_cov(log_close, window)
    price_var = rolling_var(log_close, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = cov * cov / (time_var * price_var)
    return np.where(price_var == 0.0, 0.0, np.clip(r2, 0.0, 1.0))


def ols_slope_weights(x: FloatArray) -> FloatArray:
    """Weights ``w`` such that ``w @ y`` is the OLS slope of ``y`` on ``x`` (with intercept)."""
    centred = x - x.mean()
    weights: FloatArray = centred / (centred @ centred)
    return weights


def mean_squared_increment(log_close: FloatArray, lag_bars: int, window: int) -> FloatArray:
    """``m_L``: mean of ``(x[s] - x[s - L])**2`` over the ``window - L`` pairs in the last ``window`` bars.

    The squared increments are summed with a cumulative sum; they are local quantities, so
    the sum needs no anchoring, and a window without any change gives exactly 0.0.
    """
    increments = difference(log_close, lag_bars)
    pairs = window - lag_bars
    return rolling_sum(zero_leading(increments * increments), pairs) / pairs


def hurst_exponent(log_close: FloatArray, window: int = HURST_WINDOW, lags: tuple[int, ...] = HURST_LAGS) -> FloatArray:
    """Hurst exponent of log close over the last ``window`` bars, from the scaling of increments.

    For a window ``x_{t-window+1} .. x_t`` of log closes and each lag ``L`` in ``lags``
    (2..20 by default)::

        m_L = mean over s in [t - window + 1 + L, t] of (x_s - x_{s-L})**2     (window - L pairs)
        H   = OLS slope of 0.5 * log(m_L) on log(L)

    For a random walk ``m_L`` grows like ``L`` (H = 0.5); trending series give H > 0.5,
    mean-reverting ones H < 0.5. If some ``m_L`` is exactly 0 (a flat window, or one that
    repeats exactly with a period dividing ``L``) the increments do not grow with the lag
    and H is defined as 0.0.

    Parameters
    ----------
    log_close
        Log closes shaped (T, N).
    window
        Number of bars in the window (larger than the largest lag).
    lags
        Lags ``L`` of the regression.

    Returns
    -------
    numpy.ndarray
        Shaped like ``log_close``.
    """
    weights = ols_slope_weights(np.log(np.asarray(lags, dtype=np.float64)))
    slope = np.zeros_like(log_close)
    degenerate = np.zeros(log_close.shape, dtype=np.bool_)
    for lag_bars, weight in zip(lags, weights, strict=True):
        m_lag = mean_squared_increment(log_close, lag_bars, window)
        degenerate |= m_lag == 0.0
        with np.errstate(divide="ignore"):
            slope += weight * (0.5 * np.log(m_lag))
    return np.where(degenerate, 0.0, slope)


def abdi_ranaldo_spread(
    high: FloatArray, low: FloatArray, close: FloatArray, window: int = SPREAD_WINDOW
) -> FloatArray:
    """Point-in-time Abdi-Ranaldo close-high-low estimate of the relative bid-ask spread.

    Abdi, F. and Ranaldo, A. (2017), "A simple estimation of bid-ask spreads from daily
    close, high, and low prices", *Review of Financial Studies* 30(12), 4437-4480.
    With ``eta_t = (log H_t + log L_t) / 2`` and ``c_t = log C_t`` the one-bar estimate

        s2_t = 4 * (c_{t-1} - eta_{t-1}) * (c_{t-1} - eta_t)

    uses only bars ``t - 1`` and ``t`` (the paper's ``c_t, eta_t, eta_{t+1}`` shifted back by
    one bar), and ``spread_t = sqrt(max(0, mean of s2 over the last window bars))``.

    Parameters
    ----------
    high, low, close
        Prices shaped (T, N).
    window
        Number of one-bar estimates averaged.

    Returns
    -------
    numpy.ndarray
        Shaped like ``close``, non-negative.
    """
    log_close = np.log(close)
    mid_range = 0.5 * (np.log(high) + np.log(low))
    previous_close = lag(log_close, 1)
    squared_spread = 4.0 * lag(log_close - mid_range, 1) * (previous_close - mid_range)
    return np.sqrt(np.maximum(rolling_mean(squared_spread, window), 0.0))


def volume_zscore(volume: FloatArray | None, like: FloatArray, window: int = VOLUME_WINDOW) -> FloatArray:
    """z-score of ``log(1 + volume)`` against its last ``window`` bars (population std).

    0.0 where the window's std is 0 and everywhere when ``volume`` is None; ``like`` gives
    the shape in that case.
    """
    if volume is None:
        return np.zeros_like(like)
    return rolling_zscore(np.log1p(volume), window)


def fingerprint_features(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray | None,
    *,
    volume_z: FloatArray | None = None,
) -> dict[str, FloatArray]:
    """Unmasked fingerprint features of validated (T, N) panels, keyed by ``FINGERPRINT_NAMES``.

    ``volume_z`` may pass an already computed :func:`volume_zscore` (it is copied) to save
    computing it twice.
    """
    log_close = np.log(close)
    return {
        "vol30": realised_volatility(log_close),
        "trend_r2": trend_r2(log_close),
        "hurst": hurst_exponent(log_close),
        "spread": abdi_ranaldo_spread(high, low, close),
        "volume_z": volume_zscore(volume, close) if volume_z is None else volume_z.copy(),
    }
