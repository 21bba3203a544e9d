"""Online learning between refits in the walk-forward, on real prices: off by rate, on by config, point in time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from signal_engine.config import RunConfig, apply_overrides, load_config
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.backtest import SymbolResult, run_symbol

pytestmark = pytest.mark.slow

SMALL = {"walk_forward": {"initial_window": 300, "validation_bars": 150, "refit_every": 60, "min_test_bars": 100},
         "trend": {"n_estimators": 40}, "suite": {"enabled": False}, "moe": {"multistage": False}}
TRUNCATE_AT = 1100


def _config(online: dict[str, object] | None = None) -> RunConfig:
    overrides = {**SMALL, "moe": {**SMALL["moe"], **({"online": online} if online else {})}}  # type: ignore[dict-item]
    return apply_overrides(load_config("quick"), overrides, source="test")


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> PriceSeries:
    series = load_prices(goog_csv, "GOOG")
    return PriceSeries(series.symbol, series.source, series.bars.iloc[:1400])


@pytest.fixture(scope="module")
def frozen(goog: PriceSeries) -> SymbolResult:
    return run_symbol(goog, _config())


@pytest.fixture(scope="module")
def learning(goog: PriceSeries) -> SymbolResult:
    return run_symbol(goog, _config({"enabled": True, "gate_rate": 0.05, "meta_rate": 0.01}))


def test_online_learning_at_rate_zero_decides_exactly_as_the_frozen_models(goog: PriceSeries,
                                                                          frozen: SymbolResult) -> None:
    still = run_symbol(goog, _config({"enabled": True, "gate_rate": 0.0, "meta_rate": 0.0}))
    # one bar at a time instead of one block at a time: the same arithmetic, up to the last bits of a matrix product
    pd.testing.assert_frame_equal(still.signals, frozen.signals, check_exact=False, rtol=0.0, atol=1e-12)
    assert still.signals["signal"].tolist() == frozen.signals["signal"].tolist()


def test_online_learning_moves_the_gate_and_the_score_within_blocks(frozen: SymbolResult,
                                                                   learning: SymbolResult) -> None:
    gates = [f"gate_{e}" for e in ("trend", "levels", "volatility")]
    # refits at bars 300, 360, ...; the test span starts at bar 450 (after the validation bars): a refit's own bar
    # is decided by the weights just fitted, with no step taken yet
    first_of_block = (learning.signals.index + 450 - 300) % 60 == 0
    moved = (learning.signals[gates] - frozen.signals[gates]).abs().max(axis=1) > 1e-12
    assert moved[~first_of_block].mean() > 0.9 and not moved[first_of_block].any()
    assert (learning.signals["score"] - frozen.signals["score"]).abs().max() > 1e-6
    online = learning.diagnostics["moe"]["online"]
    # each bar t after its block's refit learns the label of bar t - 5 (horizon 5, embargo 0), from bar 300 on
    blocks = [(start, min(start + 60, 1400)) for start in range(300, 1400, 60)]
    expected = [sum(1 for t in range(start + 1, stop) if t - 5 >= 300) for start, stop in blocks]
    assert expected[0] == 55 and expected[1] == 59 and expected[-1] == 19
    assert online["gate_rate"] == 0.05 and online["updates_per_block"] == expected


def test_online_learning_reads_nothing_after_the_bar_it_decides(goog: PriceSeries, learning: SymbolResult) -> None:
    short = PriceSeries(goog.symbol, goog.source, goog.bars.iloc[:TRUNCATE_AT])
    truncated = run_symbol(short, _config({"enabled": True, "gate_rate": 0.05, "meta_rate": 0.01}))
    assert len(truncated.signals) > 100
    pd.testing.assert_frame_equal(truncated.signals, learning.signals.iloc[: len(truncated.signals)],
                                  check_exact=True)
