"""Every expert walked forward on real prices next to its baseline: tables, determinism, no look-ahead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signal_engine.config import load_config
from signal_engine.data import load_prices
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.expert_suite import (
    SUITE_PROFILES,
    ExpertSuiteResult,
    SuiteSettings,
    markdown_table,
    run_expert_suite,
)
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.registry import load_catalogue

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]  # the catalogue's LSTM

EXPERTS = ("trend_lightgbm", "trend_lstm", "vol_gjr_t", "vol_har", "vol_combination", "levels_cluster",
           "levels_fibonacci")
TRUNCATE_AT = 1500


@pytest.fixture(scope="module")
def config():
    base = load_config("quick")
    return replace(base, walk_forward=replace(base.walk_forward, initial_window=300, validation_bars=150,
                                              refit_every=240, min_test_bars=100))


@pytest.fixture(scope="module")
def catalogue():
    specs = load_catalogue()
    small: dict[str, dict[str, Any]] = {"trend_lightgbm": {"n_estimators": 30},
             "trend_lstm": {"window": 16, "epochs": 1, "max_train_rows": 300},
             "vol_combination": {"members": ["vol_gjr_t", "vol_har", "baseline_ewma"]}}
    return {name: replace(spec, kwargs={**spec.kwargs, **small.get(name, {})}) for name, spec in specs.items()}


SETTINGS = SuiteSettings(experts=EXPERTS, tf_refit_every=1440)  # the LSTM refits at bars 450 and 1890
# TensorFlow determinism and causality are checked expert by expert in the unit tests; the reruns here
# cover the walk-forward plumbing with the classical experts only.
CLASSICAL = SuiteSettings(experts=tuple(e for e in EXPERTS if e != "trend_lstm"), include_tensorflow=False)


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> PriceSeries:
    return load_prices(goog_csv)


@pytest.fixture(scope="module")
def result(goog: PriceSeries, config, catalogue) -> ExpertSuiteResult:
    return run_expert_suite(goog, config, settings=SETTINGS, catalogue=catalogue)


def test_each_expert_has_walk_forward_metrics_next_to_its_baseline(result: ExpertSuiteResult) -> None:
    trend, volatility, levels = (result.metrics[k] for k in ("trend", "volatility", "levels"))
    assert {"trend_lightgbm", "baseline_majority"} <= set(trend)
    assert {"accuracy", "balanced_accuracy", "log_loss", "ece"} <= set(trend["trend_lightgbm"])
    assert {"vol_gjr_t", "vol_har", "vol_combination", "baseline_garch11", "baseline_ewma"} == set(volatility)
    assert {"levels_cluster", "levels_fibonacci", "baseline_pivot"} == set(levels)
    assert {"support_error", "respect_rate", "support_hold_rate"} <= set(levels["baseline_pivot"])
    assert result.baselines["vol_har"] == "baseline_garch11"
    assert result.baselines["levels_cluster"] == "baseline_pivot"
    assert result.archetype == "equity_daily"
    test_rows = 2148 - 450
    assert volatility["baseline_garch11"]["rows"] == test_rows - 1
    for name in EXPERTS:
        if name in result.outputs:
            assert np.isfinite(result.outputs[name][450:]).all(), name
            assert np.isnan(result.outputs[name][:300]).all(), name
    if tensorflow_available():
        assert "trend_lstm" in trend and result.refits["trend_lstm"] < result.refits["trend_lightgbm"]
    table = markdown_table([result])
    assert "| vol_har | baseline_garch11 |" in table


def test_the_same_input_gives_identical_outputs(result: ExpertSuiteResult, goog: PriceSeries, config,
                                                catalogue) -> None:
    again = run_expert_suite(goog, config, settings=CLASSICAL, catalogue=catalogue)
    assert set(again.outputs) == set(result.outputs) - {"trend_lstm"}
    for name, values in again.outputs.items():
        assert result.outputs[name].tobytes() == values.tobytes(), name


def test_truncating_the_data_changes_no_output_before_the_cut(result: ExpertSuiteResult, goog: PriceSeries,
                                                              config, catalogue) -> None:
    short = PriceSeries(goog.symbol, goog.source, goog.bars.iloc[:TRUNCATE_AT])
    truncated = run_expert_suite(short, config, settings=CLASSICAL, catalogue=catalogue)
    for name, values in truncated.outputs.items():
        np.testing.assert_array_equal(values, result.outputs[name][:TRUNCATE_AT], err_msg=name)


def test_quick_profile_refits_tensorflow_less_often_and_runs_the_routed_archetype() -> None:
    quick = SUITE_PROFILES["quick"]
    assert quick.tf_refit_every is not None and quick.refit_every is not None
    assert quick.tf_refit_every % quick.refit_every == 0 and quick.tf_refit_every > quick.refit_every
    assert quick.archetypes == "routed"


@pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")
def test_routed_mode_runs_only_the_routed_archetype_under_one_name(goog: PriceSeries, config) -> None:
    settings = SuiteSettings(experts=("archetype_equity_daily", "archetype_futures_trend"), archetypes="routed",
                             tf_refit_every=1920, tf_overrides={"epochs": 1, "max_train_rows": 300})
    routed = run_expert_suite(goog, config, settings=settings)
    assert routed.archetype == "equity_daily"
    assert "archetype_routed" in routed.metrics["trend"]
    assert "routes this series to equity_daily" in routed.skipped["archetype_futures_trend"]
    assert not any(name.startswith("archetype_") and name != "archetype_routed" for name in routed.outputs)
