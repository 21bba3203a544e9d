"""Profiles and the overrides a config file may give; mistakes name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from signal_engine.config import PROFILES, apply_overrides, load_config
from signal_engine.errors import ConfigError


def test_profiles_exist_and_full_refits_more_often() -> None:
    assert PROFILES["full"].walk_forward.refit_every < PROFILES["quick"].walk_forward.refit_every


def test_yaml_overrides_apply_on_top_of_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("trading:\n  cost_bps: 2\nwalk_forward:\n  refit_every: 21\nlevels:\n  windows: [10, 30]\n")
    config = load_config("quick", path)
    assert config.trading.cost_bps == 2.0
    assert config.walk_forward.refit_every == 21
    assert config.levels.windows == (10, 30)
    assert config.walk_forward.initial_window == PROFILES["quick"].walk_forward.initial_window


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trading:\n  cost_bsp: 2\n", "unknown setting 'trading.cost_bsp'"),
        ("trading:\n  cost_bps: cheap\n", "'trading.cost_bps' must be a float"),
        ("walk_forward:\n  refit_every: 0\n", "'walk_forward.refit_every' must be at least 1"),
        ("trading:\n  buy_threshold: -0.5\n", "expected 'trading.sell_threshold' <= 'trading.exit_level'"),
        ("- a\n- b\n", "config must be a mapping"),
        ("trading: [1\n", "cannot parse config"),
    ],
)
def test_bad_config_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("quick", path)


def test_costs_can_differ_by_symbol(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("trading:\n  cost_bps: 5\n  symbol_cost_bps: {eurusd: 1, SPX: 2.5}\n")
    trading = load_config("quick", path).trading
    assert trading.cost_for("EURUSD") == 1.0
    assert trading.cost_for("spx") == 2.5
    assert trading.cost_for("GOOG") == 5.0
    path.write_text("trading:\n  symbol_cost_bps: {EURUSD: -1}\n")
    with pytest.raises(ConfigError, match=r"'trading\.symbol_cost_bps' must map symbols to costs in bps >= 0"):
        load_config("quick", path)


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        load_config("fast")


def test_moe_section_picks_experts_gate_combiner_and_top_k(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("moe:\n  enabled: false\n  k: 2\n  gate: mlp\n  combiner: meta\n  multistage: false\n"
                    "  experts: {trend: trend_calibrated, levels: levels_regression, volatility: vol_har}\n")
    moe = load_config("quick", path).moe
    assert (moe.enabled, moe.k, moe.gate, moe.combiner, moe.multistage) == (False, 2, "mlp", "meta", False)
    assert (moe.experts.trend, moe.experts.levels, moe.experts.volatility) == (
        "trend_calibrated", "levels_regression", "vol_har")
    defaults = PROFILES["quick"].moe
    assert defaults.enabled and defaults.gate in {"softmax", "rule", "mlp"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("moe:\n  gate: attention\n", "'moe.gate' is 'attention'; expected one of softmax, rule, mlp"),
        ("moe:\n  combiner: vote\n", "'moe.combiner' is 'vote'; expected one of weighted, rule, meta"),
        ("moe:\n  experts: {volatility: garch}\n",
         "'moe.experts.volatility' is 'garch'; expected one of volatility_blend, vol_har"),
        ("moe:\n  experts: {trend: lstm}\n", "'moe.experts.trend' is 'lstm'; expected one of trend_lightgbm"),
        ("moe:\n  experts: {levels: fib}\n", "'moe.experts.levels' is 'fib'; expected one of levels_swing"),
        ("moe:\n  experts: [crypto_hft, equity_daily]\n", "'moe.experts' must be a mapping of its settings "
         "(trend, intraday_trend, levels, volatility, sizing_volatility)"),
        ("moe:\n  k: 0\n", "'moe.k' must be at least 1"),
        ("moe:\n  enabled: 'no'\n", "'moe.enabled' must be a bool"),
        ("moe:\n  experts: {sentiment: x}\n", "unknown setting 'moe.experts.sentiment'"),
    ],
)
def test_bad_moe_settings_name_the_setting_and_the_allowed_values(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config("quick", path)


def test_trend_momentum_adds_the_long_look_back_features_from_the_20_bar_horizon(tmp_path: Path) -> None:
    from dataclasses import replace

    from signal_engine.components import trend_expert
    from signal_engine.config import RunConfig
    from signal_engine.experts.trend import TREND_FEATURES
    from signal_engine.features import MOMENTUM_NAMES

    def at_horizon(config: RunConfig, horizon: int) -> RunConfig:
        return replace(config, labels=replace(config.labels, horizon=horizon))

    quick = load_config("quick")
    assert trend_expert(quick).features == TREND_FEATURES  # the MoE's 5-bar labels
    assert trend_expert(at_horizon(quick, 20)).features == (*TREND_FEATURES, *MOMENTUM_NAMES)
    assert trend_expert(at_horizon(quick, 60)).features == (*TREND_FEATURES, *MOMENTUM_NAMES)
    path = tmp_path / "c.yaml"
    path.write_text("trend:\n  momentum: false\n")
    assert trend_expert(at_horizon(load_config("quick", path), 60)).features == TREND_FEATURES
    path.write_text("trend:\n  momentum: yes please\n")
    with pytest.raises(ConfigError, match=r"'trend\.momentum' must be a bool"):
        load_config("quick", path)


def test_momentum_min_horizon_keeps_the_short_look_backs_for_short_label_horizons(tmp_path: Path) -> None:
    from dataclasses import replace

    from signal_engine.components import trend_features
    from signal_engine.experts.trend import TREND_FEATURES
    from signal_engine.features import MOMENTUM_NAMES

    path = tmp_path / "c.yaml"
    path.write_text("trend:\n  momentum_min_horizon: 5\n")
    config = load_config("quick", path)
    with_horizon = {h: trend_features(replace(config, labels=replace(config.labels, horizon=h))) for h in (1, 4, 5, 60)}
    assert with_horizon[1] == with_horizon[4] == TREND_FEATURES
    assert with_horizon[5] == with_horizon[60] == (*TREND_FEATURES, *MOMENTUM_NAMES)
    path.write_text("trend:\n  momentum_min_horizon: 0\n")
    with pytest.raises(ConfigError, match=r"'trend\.momentum_min_horizon' must be at least 1"):
        load_config("quick", path)


def test_intraday_series_run_the_intraday_trend_expert() -> None:
    from signal_engine.config import for_bars

    config = load_config("quick")
    assert config.moe.experts.trend == "trend_calibrated" and config.moe.experts.intraday_trend == "trend_linear"
    assert for_bars(config, intraday=False) is config
    intraday = for_bars(config, intraday=True)
    assert intraday.moe.experts.trend == "trend_linear"
    assert intraday.moe.experts.levels == config.moe.experts.levels and intraday.trend == config.trend
    same = apply_overrides(config, {"moe": {"experts": {"intraday_trend": "trend_calibrated"}}})
    assert for_bars(same, intraday=True) is same
    with pytest.raises(ConfigError, match="intraday_trend"):
        apply_overrides(config, {"moe": {"experts": {"intraday_trend": "linear"}}})
