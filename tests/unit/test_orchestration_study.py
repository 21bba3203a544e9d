"""The declared rule of benchmarks/bench_orchestration.py, on hand-made study tables (no walk-forward)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import load_config
from signal_engine.data.loader import PriceSeries

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_orchestration import (
    BASE,
    CURRENT,
    STUDIES,
    cache_key,
    choose,
    combined,
    decide,
    drawdown_limit,
)


def half(sharpe: float, max_drawdown: float) -> dict[str, float]:
    return {"sharpe": sharpe, "max_drawdown": max_drawdown}


def row(first: tuple[float, float], second: tuple[float, float]) -> dict[str, Any]:
    return {"daily": {"orchestrated": {"first": half(*first), "second": half(*second), "full": half(0.0, 0.0)}}}


@pytest.fixture
def table() -> dict[str, Any]:
    t = {
        BASE: row((-0.05, -0.21), (0.71, -0.10)),
        "deep_but_best": row((0.50, -0.40), (0.90, -0.10)),  # first-half max DD past 60% of B&H's 50%
        "better_first_worse_second": row((0.05, -0.18), (0.70, -0.10)),
        "better_both": row((0.02, -0.20), (0.72, -0.10)),
    }
    t[BASE]["daily"]["baseline_buy_and_hold"] = {"first": half(0.09, -0.50)}
    t[CURRENT] = t[BASE]
    return t


def test_the_drawdown_limit_is_60_percent_of_buy_and_holds_first_half(table: dict[str, Any]) -> None:
    assert drawdown_limit(table) == pytest.approx(-0.30)


def test_choose_skips_variants_past_the_drawdown_limit_and_takes_the_best_first_half(table: dict[str, Any]) -> None:
    assert choose(table) == "better_first_worse_second"
    assert choose(table, [BASE, "better_both"]) == "better_both"
    assert choose(table, ["deep_but_best"]) is None


def test_decide_adopts_only_when_the_second_half_is_not_worse(table: dict[str, Any]) -> None:
    assert not decide(table, "better_first_worse_second", BASE)
    assert decide(table, "better_both", BASE)
    assert not decide(table, BASE, BASE)
    assert not decide(table, None, BASE)


def test_combined_variants_apply_the_second_overrides_last() -> None:
    both = combined(lambda ppy: {"a": 1, "b": round(ppy)}, lambda ppy: {"b": 2})
    assert both(252.0) == {"a": 1, "b": 2}


@pytest.mark.parametrize("study", list(STUDIES))
def test_every_study_has_the_base_row_and_valid_overrides(study: str) -> None:
    from signal_engine.orchestration import OrchestrationConfig

    variants = STUDIES[study].variants
    assert BASE in variants and variants[BASE](252.0) == {}
    for make in variants.values():
        for ppy in (252.0, 6300.0):
            OrchestrationConfig.for_periods_per_year(ppy, **{**STUDIES[study].base, **make(ppy)})


def test_the_walk_forward_cache_key_follows_the_bars_and_the_config() -> None:
    index = pd.bdate_range("2020-01-01", periods=50)
    close = np.linspace(100.0, 110.0, 50)
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 1e6},
                        index=index)
    config = load_config("quick")
    key = cache_key(PriceSeries("X", "test", bars), config)
    assert key == cache_key(PriceSeries("X", "test", bars.copy()), config)
    assert key != cache_key(PriceSeries("X", "test", bars.assign(close=close * 1.01)), config)
    assert key != cache_key(PriceSeries("X", "test", bars), dataclasses.replace(config, seed=config.seed + 1))


def test_the_decided_studies_start_from_the_defaults_before_the_development_study() -> None:
    from bench_orchestration import BEFORE_DEVELOPMENT, BEFORE_DEVELOPMENT_TREND, run_config

    for name in ("drawdown", "allocation"):
        study = STUDIES[name]
        assert study.trend == BEFORE_DEVELOPMENT_TREND
        assert study.base.items() >= BEFORE_DEVELOPMENT.items()
    config = run_config(load_config("quick"), STUDIES["drawdown"].trend)
    assert config.trend.momentum is False and load_config("quick").trend.momentum is True
    assert config.trend.n_estimators == load_config("quick").trend.n_estimators
    assert STUDIES["ablation"].trend == {}
    # long or flat on every daily equity series the project ships (the development panel's indices among them)
    assert STUDIES["ablation"].base == {"max_asset_short_exposure": {
        "SPX": 0.0, "IXIC": 0.0, "GOOG": 0.0, "MSFT": 0.0, "NDX": 0.0, "N225": 0.0, "JKSE": 0.0}}
    for name in ("drawdown", "allocation"):  # decided before the per-symbol short limits existed
        assert "max_asset_short_exposure" not in STUDIES[name].base


def test_the_ablation_turns_alignment_on_and_all_off_is_the_sum_of_parts_settings() -> None:
    variants = STUDIES["ablation"].variants
    assert variants["+alignment"](252.0) == {"harmony_amplification": 0.5}
    assert "harmony_amplification" not in variants["all off"](252.0)
    assert variants["all off"](252.0)["max_allocation_change"] == 0.0
    assert variants["all off"](252.0)["max_asset_short_exposure"] == {}  # the parts may go short
