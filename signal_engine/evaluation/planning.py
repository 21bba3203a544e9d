"""What a backtest walks forward for each series, decided from its bars and the settings alone: the timeframe
models of its book, and whether the series is long enough. Light to import (no models, no report): the command
line checks a run's files and settings with it before importing the pipeline, so a bad one fails at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.config import IV_COLUMN, NEWS_COLUMN, RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError, InputError
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.timeframes import TimeframeSpec, timeframe_specs


def periods_per_year(timestamps: np.ndarray) -> float:
    """Bars per calendar year implied by a span of timestamps (datetime64)."""
    span_days = (timestamps[-1] - timestamps[0]) / np.timedelta64(1, "D")
    return float((len(timestamps) - 1) / (span_days / 365.25)) if span_days > 0 else 252.0


def series_periods_per_year(series: PriceSeries, config: RunConfig) -> float:
    """Bars per year from the initial window only (what the walk-forward knows at its first refit)."""
    return periods_per_year(series.bars.index.to_numpy()[: config.walk_forward.initial_window + 1])


def orchestration_config(
    ppy: float, config: RunConfig, overrides: Mapping[str, Any] | None = None
) -> OrchestrationConfig:
    """The book's settings: defaults for its bar frequency, the trading costs and target, then ``overrides``."""
    base = {"cost_bps": config.trading.cost_bps, "target_vol_annual": config.trading.target_vol_annual}
    try:
        return OrchestrationConfig.for_periods_per_year(ppy, **{**base, **dict(overrides or {})})
    except TypeError as exc:
        known = ", ".join(f.name for f in OrchestrationConfig.__dataclass_fields__.values())
        raise ConfigError(f"orchestration: unknown setting ({exc}); expected some of {known}") from None


def timeframe_plan(series: PriceSeries, config: RunConfig, overrides: Mapping[str, Any] | None) -> list[TimeframeSpec]:
    """The timeframe models to walk forward for ``series``, shortest first."""
    settings = orchestration_config(series_periods_per_year(series, config), config, overrides)
    settings.allocation_bounds_for(len(settings.timeframes))  # n models must fit the bounds: fail before the work
    return [spec for name, spec in timeframe_specs(settings).items() if name in settings.timeframes]


def check_length(series: PriceSeries, config: RunConfig) -> None:
    """Fail with one clear line when ``series`` is too short for the walk-forward of ``config``."""
    wf = config.walk_forward
    if len(series) < wf.min_rows:
        raise InputError(
            series.source,
            f"has {len(series)} bars; profile '{config.profile}' needs at least {wf.min_rows} (initial window "
            f"{wf.initial_window} + validation {wf.validation_bars} + test {wf.min_test_bars}); use a longer "
            "file or smaller walk_forward settings in --config",
        )


IMPLIED_VOL_EXPERTS = ("vol_har_implied",)


def check_inputs(series: PriceSeries, frame: pd.DataFrame, config: RunConfig) -> None:
    """Fail with one clear line when the MoE reads a column that ``frame`` (the walk-forward's market frame, or the
    bars it is built from) lacks: implied volatility for ``vol_har_implied``, the news score for ``moe.news``."""
    name = config.moe.experts.volatility
    if config.moe.enabled and name in IMPLIED_VOL_EXPERTS and IV_COLUMN not in frame.columns:
        raise InputError(
            series.source,
            f"has no '{IV_COLUMN}' column, which moe.experts.volatility '{name}' reads; add the column to the price "
            "file (implied volatility in annualised %, e.g. the VIX, known at each bar's close; empty where "
            "missing, and the expert abstains there) or set moe.experts.volatility: volatility_blend or vol_har",
        )
    absent = [c for c in config.volatility.implied_terms if c not in frame.columns]
    if config.moe.enabled and name in IMPLIED_VOL_EXPERTS and absent:
        raise InputError(
            series.source,
            f"has no {', '.join(repr(c) for c in absent)} column, which volatility.implied_terms asks "
            f"moe.experts.volatility '{name}' to read; add the column to the price file (the option term slope or "
            "skew in % points at each bar's close, empty where missing, and the expert abstains there; the bars "
            "export writes them from collected option chains) or remove it from volatility.implied_terms",
        )
    if config.moe.enabled and config.moe.news and NEWS_COLUMN not in frame.columns:
        raise InputError(
            series.source,
            f"has no '{NEWS_COLUMN}' column, which the news expert of moe.news reads; add the column to the price "
            "file (the news aggregate's direction in [-1, 1] at each bar's close, empty where the bar had no news, "
            "and the expert abstains there) or set moe.news: false",
        )


def check_series(series: Sequence[PriceSeries], config: RunConfig, orchestration: Mapping[str, Any] | None) -> None:
    """Fail on a series too short for the walk-forward, without a column its experts read, or with a bad
    orchestration setting, before the long work."""
    for s in series:
        check_length(s, config)
        check_inputs(s, s.bars, config)
        timeframe_plan(s, config, orchestration)
