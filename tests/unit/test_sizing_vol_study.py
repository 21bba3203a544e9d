"""The sizing-volatility study: its walk-forward uses no bar after each refit, its losses and its declared rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import WalkForwardConfig, load_config
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.sizing_vol_study import (
    CANDIDATES,
    REFERENCE,
    choose,
    daily_development_symbols,
    qlike_losses,
    walk_forecasts,
)
from signal_engine.labels import make_labels

SMALL = WalkForwardConfig(initial_window=200, validation_bars=60, refit_every=60, min_test_bars=60)


def _forecasts(series: PriceSeries, bars: int) -> dict[str, np.ndarray]:
    truncated = PriceSeries(series.symbol, series.source, series.bars.iloc[:bars])
    frame = series_frame(truncated)
    labels = make_labels(truncated.bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    return walk_forecasts(frame, labels, replace(load_config("quick"), walk_forward=SMALL))


@pytest.mark.parametrize(("symbol", "cuts"), [("NDX", (321, 350)), ("EURUSD-BOC", (321,))])
def test_each_forecast_uses_only_the_bars_up_to_its_refit(symbol: str, cuts: tuple[int, ...], tmp_path: Path) -> None:
    series = load_prices(export_dataset(symbol, tmp_path), symbol)
    full = _forecasts(series, 440)
    # cut after the refit bar 320 (whose next-bar variance only the full series knows) and inside its block
    for bars in cuts:
        cut = _forecasts(series, bars)
        for name in CANDIDATES:
            assert np.isnan(full[name][:200]).all() and np.isfinite(full[name][200:]).any(), name
            np.testing.assert_array_equal(cut[name], full[name][:bars], err_msg=f"{name}, {bars} bars")


def test_the_losses_are_qlike_on_the_test_bars_where_every_forecast_is_usable() -> None:
    e = float(np.e)
    forecasts = {"a": np.array([1.0, 1.0, e, 2.0, 1.0]), "b": np.array([1.0, 1.0, 1.0, np.nan, 1.0])}
    realised = np.array([5.0, 1.0, e, 1.0, np.nan])
    losses = qlike_losses(forecasts, realised, pd.bdate_range("2001-01-01", periods=5), test_start=1)
    assert list(losses.index) == list(pd.bdate_range("2001-01-01", periods=5)[1:3])  # bar 3: b has none; 4: no y
    np.testing.assert_allclose(losses["a"], [0.0 + 1.0, 1.0 + 1.0])
    np.testing.assert_allclose(losses["b"], [1.0, e])


def _pooled(qlike: dict[str, float], intervals: dict[str, tuple[float, float]]) -> dict[str, Any]:
    return {"qlike": {REFERENCE: 0.0, **qlike},
            "minus_blend": {name: {"low": low, "high": high} for name, (low, high) in intervals.items()}}


def test_the_rule_takes_the_best_candidate_whose_interval_is_below_zero() -> None:
    pooled = _pooled({"vol_har": -0.05, "vol_boosted": -0.08, "baseline_garch11": -0.01},
                     {"vol_har": (-0.07, -0.03), "vol_boosted": (-0.20, 0.01), "baseline_garch11": (-0.02, -0.001)})
    assert choose(pooled) == "vol_har"  # boosted is lower but its interval reaches zero


def test_the_rule_keeps_the_blend_when_no_interval_is_below_zero() -> None:
    pooled = _pooled({"vol_har": -0.05, "baseline_ewma": 0.02},
                     {"vol_har": (-0.09, 0.0), "baseline_ewma": (0.01, 0.03)})
    assert choose(pooled) == REFERENCE


def test_the_study_runs_on_msft_and_the_daily_panel() -> None:
    assert daily_development_symbols() == ["MSFT", "NDX", "N225", "JKSE", "BTCUSD-BITSTAMP", "LTCUSD-BITSTAMP",
                                           "EURUSD-BOC", "GBPUSD-BOC"]
