"""The declared rule of benchmarks/bench_development.py, on hand-made tables (no walk-forward)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_development import BASE, STUDIES, cell_name, choose

from signal_engine.errors import ConfigError


def row(sharpe: float, max_drawdown: float, buy_and_hold_drawdown: float = -0.40) -> dict[str, Any]:
    return {"orchestrated": {"sharpe": sharpe, "max_drawdown": max_drawdown},
            "baseline_buy_and_hold": {"sharpe": 1.0, "max_drawdown": buy_and_hold_drawdown}}


def test_the_best_sharpe_within_the_drawdown_limit_wins() -> None:
    table = {cell_name(BASE, BASE): row(1.0, -0.10), "a": row(1.5, -0.30), "b": row(1.2, -0.20)}
    assert choose(table) == "b"  # a's 30% is past 60% of buy & hold's 40%


def test_the_limit_is_inclusive_and_measured_against_the_starting_cell() -> None:
    table = {cell_name(BASE, BASE): row(1.0, -0.10, buy_and_hold_drawdown=-0.50), "a": row(1.5, -0.30)}
    assert choose(table) == "a"


def test_without_a_passing_cell_the_best_sharpe_of_all_wins() -> None:
    table = {cell_name(BASE, BASE): row(1.0, -0.35), "a": row(0.8, -0.30), "b": row(1.1, -0.50)}
    assert choose(table) == "b"


def test_the_starting_cells_are_the_defaults_each_study_started_from_spelled_out() -> None:
    momentum = STUDIES["momentum"]
    assert momentum.run_configs[BASE] == {"momentum": False}
    assert momentum.orchestration[BASE] == {"harmony_amplification": 0.5}
    assert all("harmony_amplification" in overrides for overrides in momentum.orchestration.values())
    horizon = STUDIES["momentum_horizon"]
    assert horizon.run_configs[BASE] == momentum.run_configs["momentum"]
    assert horizon.orchestration == {BASE: momentum.orchestration["harmony_off"]}


def test_every_study_cell_is_a_valid_run_config() -> None:
    from bench_development import development_config

    from signal_engine.config import load_config
    from signal_engine.orchestration import OrchestrationConfig

    for study in STUDIES.values():
        assert BASE in study.run_configs and BASE in study.orchestration
        for overrides in study.run_configs.values():
            development_config(load_config("quick"), overrides)
        for overrides in study.orchestration.values():
            OrchestrationConfig.for_periods_per_year(252.0, **overrides)


def test_the_session_6_studies_start_from_the_defaults_on_their_frequencys_development_series() -> None:
    from signal_engine.data.datasets import DEVELOPMENT_DATASETS
    from signal_engine.orchestration import OrchestrationConfig

    expected = {"hourly_band": "1h", "holding_hourly": "1h", "holding_daily": "1d", "band_hourly": "1h",
                "band_daily": "1d"}
    for name, timeframe in expected.items():
        study = STUDIES[name]
        assert DEVELOPMENT_DATASETS[study.symbol].timeframe == timeframe
        assert study.run_configs == {BASE: {}}
        ppy = 8766.0 if timeframe == "1h" else 252.0
        start = OrchestrationConfig.for_periods_per_year(ppy, **study.orchestration[BASE])
        before_band_hourly = {"no_trade_band": 0.0, "no_trade_band_cuts": False} if timeframe == "1h" else {}
        assert start == OrchestrationConfig.for_periods_per_year(ppy, **before_band_hourly)


def test_the_band_studies_leave_out_books_that_stop_trading() -> None:
    def cell(sharpe: float, exposure: float) -> dict[str, Any]:
        return {"orchestrated": {"sharpe": sharpe, "max_drawdown": -0.05, "exposure": exposure},
                "baseline_buy_and_hold": {"sharpe": 0.2, "max_drawdown": -0.60}}

    table = {cell_name(BASE, BASE): cell(-2.3, 0.054), "a": cell(-2.1, 0.042), "b": cell(-1.7, 0.017)}
    assert choose(table) == "b"
    assert choose(table, exposure_floor=0.5) == "a"  # b holds under half the starting book's exposure
    assert STUDIES["band_hourly"].exposure_floor == STUDIES["hourly_band"].exposure_floor == 0.5
    assert STUDIES["momentum"].exposure_floor == 0.0


def test_the_intraday_defaults_are_the_band_hourly_winner() -> None:
    from signal_engine.orchestration import OrchestrationConfig

    hourly, daily = OrchestrationConfig.for_periods_per_year(8766.0), OrchestrationConfig.for_periods_per_year(252.0)
    winner = STUDIES["band_hourly"].orchestration["sym_5"]
    assert {k: getattr(hourly, k) for k in winner} == winner
    assert (daily.no_trade_band, daily.no_trade_band_cuts) == (0.0, False)


def test_the_linear_trend_studies_change_only_the_moes_trend_expert() -> None:
    from bench_development import EXPERT, development_config

    from signal_engine.config import for_bars, load_config

    base = load_config("quick")
    for name in ("daily", "hourly", "check_aapl"):
        study = STUDIES[f"linear_trend_{name}"]
        for cell, expert in ((BASE, "trend_calibrated"), ("linear", "trend_linear")):
            config = development_config(base, study.run_configs[cell])
            assert study.run_configs[cell][EXPERT] == expert
            for intraday in (False, True):
                assert for_bars(config, intraday).moe.experts.trend == expert
            assert config.trend == base.trend and config.moe.experts.levels == base.moe.experts.levels
    with pytest.raises(ConfigError, match="trend_linear"):
        development_config(base, {EXPERT: "trend_linearr"})


def test_the_shorts_study_caps_the_book_short_side_on_the_two_equity_series_from_uncapped() -> None:
    from signal_engine.data.datasets import DEVELOPMENT_DATASETS
    from signal_engine.orchestration import OrchestrationConfig

    daily, check = STUDIES["shorts_daily"], STUDIES["shorts_check_aapl"]
    assert (daily.symbol, check.symbol) == ("MSFT", "AAPL")
    assert DEVELOPMENT_DATASETS["MSFT"].timeframe == "1d" and DEVELOPMENT_DATASETS["AAPL"].timeframe == "1h"
    for study in (daily, check):
        assert study.run_configs == {BASE: {}}
        caps = {cell: overrides["max_short_exposure"] for cell, overrides in study.orchestration.items()}
        assert caps == {BASE: 1.0, "short_cap_25": 0.25, "long_only": 0.0}
        start = OrchestrationConfig.for_periods_per_year(252.0, **study.orchestration[BASE])
        assert start == OrchestrationConfig.for_periods_per_year(252.0)  # no per-symbol limit in the start


def test_the_shipped_daily_equity_series_are_long_or_flat_and_the_rest_keep_their_shorts() -> None:
    from signal_engine.cli import with_dataset_limits
    from signal_engine.data.datasets import EQUITY_MAX_SHORT, dataset_short_limits

    assert EQUITY_MAX_SHORT == 0.0
    equities = {"SPX": 0.0, "IXIC": 0.0, "GOOG": 0.0, "MSFT": 0.0, "NDX": 0.0, "N225": 0.0, "JKSE": 0.0}
    assert dataset_short_limits() == equities
    mine = with_dataset_limits({"max_asset_short_exposure": {"spx": 0.5, "EURUSD": 0.2}, "timeframes": ("long",)})
    assert mine == {"timeframes": ("long",), "max_asset_short_exposure": {**equities, "SPX": 0.5, "EURUSD": 0.2}}
    with pytest.raises(ConfigError, match="'max_asset_short_exposure' must map symbols to limits"):
        with_dataset_limits({"max_asset_short_exposure": 0.0})
