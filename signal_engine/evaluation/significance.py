"""Is one strategy's Sharpe ratio really above another's? A paired stationary bootstrap of the difference.

Two strategies traded over the same bars give two return series whose Sharpe ratios are estimated with
error (over 17 years of daily returns, about 0.25 in annualised units each) and are correlated with each
other. Resampling the *pairs* of returns in blocks of random length (Politis and Romano's stationary
bootstrap; block length chosen by Politis and White's rule, as corrected by Patton, Politis and White)
keeps both the serial dependence and the cross-correlation, so the interval of ``Sharpe(a) - Sharpe(b)``
says whether a backtest's ranking could be noise.

References
----------
Politis, D. N. and Romano, J. P. (1994), "The stationary bootstrap", JASA 89(428).
Politis, D. N. and White, H. (2004), "Automatic block-length selection for the dependent bootstrap",
Econometric Reviews 23(1); Patton, A., Politis, D. N. and White, H. (2009), correction, 28(4).
Ledoit, O. and Wolf, M. (2008), "Robust performance hypothesis testing with the Sharpe ratio", Journal of
Empirical Finance 15(5) (the paired design).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import StationaryBootstrap, optimal_block_length

from signal_engine.evaluation.metrics import annualised_sharpe

DEFAULT_REPS = 1000
DEFAULT_LEVEL = 0.90


@dataclass(frozen=True)
class SharpeDifference:
    """``Sharpe(a) - Sharpe(b)`` (annualised, as ``strategy_metrics`` computes them) and its bootstrap interval.

    ``p_value`` is two-sided, from inverting the percentile interval: twice the smaller share of resampled
    differences on either side of 0. ``block`` is the mean block length in bars (rounded up).
    """

    difference: float
    low: float
    high: float
    level: float
    p_value: float
    block: int
    reps: int
    bars: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def sharpe_difference(
    a: np.ndarray,
    b: np.ndarray,
    periods_per_year: float,
    *,
    reps: int = DEFAULT_REPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> SharpeDifference:
    """The paired stationary-bootstrap interval of ``Sharpe(a) - Sharpe(b)`` for returns realised on the same bars.

    Raises
    ------
    ValueError
        When the series differ in length, hold a non-finite value, are shorter than 20 bars, or ``level`` is
        not in (0, 1).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two return series of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < 20:
        raise ValueError(f"a Sharpe difference needs at least 20 paired returns, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("the return series hold NaN or infinite values; drop or fill those bars first")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")

    def difference(p: np.ndarray, q: np.ndarray) -> float:
        return annualised_sharpe(p, periods_per_year) - annualised_sharpe(q, periods_per_year)

    point = difference(x, y)
    block = block_length(np.column_stack((x, y)))
    bootstrap = StationaryBootstrap(block, x, y, seed=seed)
    draws = bootstrap.apply(lambda p, q: np.array([difference(p, q)]), reps=reps)[:, 0]
    low, high, p_value = _percentile_interval(draws, level)
    return SharpeDifference(difference=point, low=float(low), high=float(high), level=level, p_value=p_value,
                            block=block, reps=reps, bars=len(x))


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float, float]:
    """The central ``level`` interval of bootstrap ``draws`` and the two-sided p-value of 0 from it."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    p_value = min(1.0, 2.0 * min(float(np.mean(draws <= 0.0)), float(np.mean(draws >= 0.0))))
    return float(low), float(high), p_value


def block_length(series: np.ndarray) -> int:
    """The stationary-bootstrap block length (Politis-White) of ``series`` (bars, or bars x columns: the
    largest over the columns), rounded up; n^(1/3) when it cannot be estimated (a constant series)."""
    pairs = np.asarray(series, dtype=float)
    if pairs.ndim == 1:
        pairs = pairs[:, None]
    estimate = math.nan
    if np.all(np.std(pairs, axis=0) > 0):
        estimate = float(np.nanmax(optimal_block_length(pairs)["stationary"].to_numpy()))
    if not math.isfinite(estimate):
        estimate = len(pairs) ** (1.0 / 3.0)
    return max(1, math.ceil(estimate))


@dataclass(frozen=True)
class MeanDifference:
    """``mean(a) - mean(b)`` of paired per-bar values (e.g. forecast losses) and its bootstrap interval.

    Fields as :class:`SharpeDifference`: a two-sided ``p_value`` from the percentile interval, ``block`` the
    mean block length in bars (rounded up).
    """

    difference: float
    low: float
    high: float
    level: float
    p_value: float
    block: int
    reps: int
    bars: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def mean_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    reps: int = DEFAULT_REPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> MeanDifference:
    """The paired stationary-bootstrap interval of ``mean(a) - mean(b)`` for values on the same bars.

    Used for loss differences (QLIKE of two volatility forecasts on the same bars: a Diebold-Mariano
    comparison with a bootstrap interval instead of a HAC variance). The block length is that of the
    difference series (Politis-White).

    Raises
    ------
    ValueError
        When the series differ in length, hold a non-finite value, are shorter than 20 bars, or ``level`` is
        not in (0, 1).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two series of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < 20:
        raise ValueError(f"a mean difference needs at least 20 paired values, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("the series hold NaN or infinite values; keep only the bars where both are finite")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = x - y
    block = block_length(d[:, None])
    draws = StationaryBootstrap(block, d, seed=seed).apply(lambda s: np.array([s.mean()]), reps=reps)[:, 0]
    low, high, p_value = _percentile_interval(draws, level)
    return MeanDifference(difference=float(d.mean()), low=low, high=high, level=level,
                          p_value=p_value, block=block, reps=reps, bars=len(x))


def panel_mean_difference(
    differences: Mapping[str, pd.Series],
    *,
    reps: int = DEFAULT_REPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> MeanDifference:
    """The pooled difference of a panel: the equal-weight mean over series of each series' mean per-bar difference,
    with a stationary-bootstrap interval that resamples calendar dates.

    ``differences`` maps each series to its per-bar differences indexed by date (e.g. the QLIKE of one forecast
    less another's). The bootstrap draws blocks of dates from the union of all the series' dates, so series that
    share dates are resampled together and their correlation is kept; the block length is the largest
    Politis-White length of the series' own difference series. ``bars`` counts the bars of all series.

    Raises
    ------
    ValueError
        When a series is shorter than 20 bars or holds a non-finite value, no series is given, or ``level`` is
        not in (0, 1).
    """
    if not differences:
        raise ValueError("a panel mean difference needs at least one series")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for name, series in differences.items():
        values = np.asarray(series, dtype=float)
        if len(values) < 20:
            raise ValueError(f"{name}: a mean difference needs at least 20 paired values, got {len(values)}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: the differences hold NaN or infinite values; keep only the bars where both "
                             "are finite")
        if not series.index.is_unique:
            raise ValueError(f"{name}: the differences repeat a date")
    panel = pd.DataFrame({name: series.astype(float) for name, series in differences.items()}).sort_index()
    values = panel.to_numpy()
    block = max(block_length(series.to_numpy(dtype=float)) for series in differences.values())
    draws = StationaryBootstrap(block, values, seed=seed).apply(
        lambda rows: np.array([_mean_of_column_means(rows)]), reps=reps)[:, 0]
    low, high, p_value = _percentile_interval(draws[np.isfinite(draws)], level)
    return MeanDifference(difference=_mean_of_column_means(values), low=low, high=high, level=level,
                          p_value=p_value, block=block, reps=reps,
                          bars=int(sum(len(s) for s in differences.values())))


def panel_sharpe_difference(
    pairs: Mapping[str, pd.DataFrame],
    periods_per_year: Mapping[str, float],
    *,
    reps: int = DEFAULT_REPS,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> SharpeDifference:
    """The pooled Sharpe difference of a panel: the equal-weight mean over series of ``Sharpe(a) - Sharpe(b)``,
    with a stationary-bootstrap interval that resamples calendar dates (the Sharpe counterpart of
    :func:`panel_mean_difference`).

    ``pairs`` maps each series to its two return series on the same bars, columns ``a`` and ``b``, indexed by date;
    each series' Sharpe ratios are annualised with its own ``periods_per_year`` and, in a resample, computed on the
    series' bars among the drawn dates. The block length is the largest Politis-White length of the series' return
    pairs. ``bars`` counts the bars of all series.

    Raises
    ------
    ValueError
        As :func:`panel_mean_difference`, and when a series lacks column ``a`` or ``b`` or its periods per year.
    """
    if not pairs:
        raise ValueError("a panel Sharpe difference needs at least one series")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for name, frame in pairs.items():
        if not {"a", "b"} <= set(frame.columns) or name not in periods_per_year:
            raise ValueError(f"{name}: expected columns a and b and the series' periods per year")
        values = frame[["a", "b"]].to_numpy(dtype=float)
        if len(values) < 20:
            raise ValueError(f"{name}: a Sharpe difference needs at least 20 paired returns, got {len(values)}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: the returns hold NaN or infinite values; drop or fill those bars first")
        if not frame.index.is_unique:
            raise ValueError(f"{name}: the returns repeat a date")
    names = list(pairs)
    panel = pd.concat({name: pairs[name][["a", "b"]].astype(float) for name in names}, axis=1).sort_index()
    values = panel.to_numpy()
    ppy = [float(periods_per_year[name]) for name in names]
    block = max(block_length(pairs[name][["a", "b"]].to_numpy(dtype=float)) for name in names)

    def statistic(rows: np.ndarray) -> float:
        return _mean_sharpe_difference(rows, ppy)

    draws = StationaryBootstrap(block, values, seed=seed).apply(lambda rows: np.array([statistic(rows)]),
                                                                reps=reps)[:, 0]
    low, high, p_value = _percentile_interval(draws[np.isfinite(draws)], level)
    return SharpeDifference(difference=statistic(values), low=low, high=high, level=level, p_value=p_value,
                            block=block, reps=reps, bars=int(sum(len(f) for f in pairs.values())))


def _mean_sharpe_difference(rows: np.ndarray, periods_per_year: list[float]) -> float:
    """The mean over series (column pairs a, b) of Sharpe(a) - Sharpe(b) on each pair's non-NaN rows (series with
    fewer than two such rows left out)."""
    differences = []
    for j, ppy in enumerate(periods_per_year):
        pair = rows[:, 2 * j : 2 * j + 2]
        present = np.isfinite(pair).all(axis=1)
        if present.sum() >= 2:
            differences.append(annualised_sharpe(pair[present, 0], ppy) - annualised_sharpe(pair[present, 1], ppy))
    return float(np.mean(differences)) if differences else math.nan


def _mean_of_column_means(rows: np.ndarray) -> float:
    """The mean over columns of each column's mean of its non-NaN values (columns without one left out)."""
    present = np.isfinite(rows)
    counts = present.sum(axis=0)
    sums = np.where(present, rows, 0.0).sum(axis=0)
    filled = counts > 0
    return float(np.mean(sums[filled] / counts[filled])) if filled.any() else math.nan
