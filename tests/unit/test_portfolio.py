"""The multi-asset book: its accounting matches the orchestrator's, per-symbol costs, calendars, settings and
the event table persisted through the risk log (SQLite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.cli import load_configs
from signal_engine.config import load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.evaluation.portfolio import bar_frequency, book_metrics, book_returns, orchestration_config
from signal_engine.orchestration import EVENT_COLUMNS, TIMEFRAME_NAMES, OrchestrationConfig, orchestrate
from signal_engine.pipeline import persist_events


def _closes(n: int, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2015-01-01", periods=n)
    return pd.Series(100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, n))), index=index)


def _streams(close: pd.Series, start: int) -> dict[str, pd.DataFrame]:
    vol = np.log(close).diff().ewm(alpha=0.06, min_periods=20).std()
    streams = {}
    for name, h in zip(TIMEFRAME_NAMES, (2, 5, 20, 60), strict=True):
        z = (np.log(close).diff(h) / (vol * np.sqrt(h))).clip(-3, 3)
        streams[name] = pd.DataFrame({
            "direction": np.where(z.abs() > 0.25, np.sign(z), 0.0), "size": (0.01 / vol).clip(0, 1),
            "confidence": (z.abs() / 3).clip(0, 1), "vol_forecast": vol, "score": (z / 3).clip(-1, 1),
        }, index=close.index).iloc[start:]
    return streams


@pytest.fixture(scope="module")
def market() -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]:
    closes = {"A": _closes(360, 1), "B": _closes(360, 2)}
    return {s: _streams(c, 80) for s, c in closes.items()}, closes


def test_book_returns_are_the_orchestrators_own_accounting_with_per_symbol_costs(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]
) -> None:
    signals, closes = market
    config = OrchestrationConfig(warmup_bars=20, allocation_update_every=10, correlation_window=30)
    costs = {"A": 2.0, "B": 40.0}
    result = orchestrate(signals, closes, config, 252.0, cost_bps=costs)
    mine = book_returns(result.positions, result.asset_returns, np.array([2.0, 40.0]))
    np.testing.assert_allclose(mine, result.returns["orchestrated"].to_numpy(), atol=1e-15)
    default = orchestrate(signals, closes, config, 252.0)  # every symbol pays config.cost_bps (5)
    same = book_returns(default.positions, default.asset_returns, np.array([5.0, 5.0]))
    np.testing.assert_allclose(same, default.returns["orchestrated"].to_numpy(), atol=1e-15)
    assert not np.allclose(same, book_returns(default.positions, default.asset_returns, np.array([2.0, 40.0])))


def test_book_metrics_count_every_symbols_trades_in_turnover() -> None:
    index = pd.bdate_range("2020-01-01", periods=5)
    positions = pd.DataFrame({"A": [0.5, 0.5, -0.5, -0.5, 0.0], "B": [-0.5, -0.5, 0.5, 0.5, 0.0]}, index=index)
    net = pd.Series([0.0, 0.01, -0.01, 0.02, 0.0], index=index)
    metrics = book_metrics(positions, net, 4.0)  # four realised returns: one year
    assert metrics["turnover"] == pytest.approx((1.0 + 2.0) / 1.0)  # one year of 4 returns: 1 to enter, 2 to flip
    assert metrics["exposure"] == pytest.approx(1.0)
    assert metrics["trades"] == 4
    assert metrics["total_return"] == pytest.approx(1.01 * 0.99 * 1.02 - 1.0)
    assert "cost_drag" not in metrics
    priced = book_metrics(positions, net, 4.0, np.array([10.0, 30.0]))
    assert priced["cost_drag"] == pytest.approx((0.5 * 10 + 0.5 * 30 + 1.0 * 10 + 1.0 * 30) / 1e4)
    assert {k: v for k, v in priced.items() if k not in ("gross_sharpe", "cost_drag")} == metrics


@pytest.mark.parametrize(("freq", "expected"), [("B", "daily"), ("h", "1h"), ("15min", "15min"), ("4h", "4h")])
def test_books_group_series_by_bar_frequency(freq: str, expected: str) -> None:
    index = pd.date_range("2021-01-04 09:00", periods=50, freq=freq)
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}, index=index.rename("timestamp"))
    assert bar_frequency(PriceSeries("X", "x.csv", bars)) == expected


def test_orchestration_settings_are_checked_and_named() -> None:
    config = load_config("quick")
    settings = orchestration_config(252.0, config, {"timeframes": ("short", "long"), "conflict_strategy": "hedge"})
    assert settings.timeframes == ("short", "long") and settings.conflict_strategy == "hedge"
    assert settings.target_vol_annual == config.trading.target_vol_annual
    with pytest.raises(ConfigError, match="unknown setting"):
        orchestration_config(252.0, config, {"max_leverage": 2.0})
    with pytest.raises(ConfigError, match="'timeframes'"):
        orchestration_config(252.0, config, {"timeframes": ("weekly",)})
    hourly = orchestration_config(24 * 252.0, config, {})
    assert hourly.timeframe_horizons == (1, 6, 24, 120) and hourly.warmup_bars == 63 * 24


def test_a_config_file_carries_an_orchestration_section(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("trading:\n  cost_bps: 3\norchestration:\n  timeframes: [short, long]\n  max_allocation: 0.6\n")
    config, orchestration = load_configs("quick", path)
    assert config.trading.cost_bps == 3.0
    assert orchestration == {"timeframes": ("short", "long"), "max_allocation": 0.6}
    path.write_text("orchestration: 3\n")
    with pytest.raises(ConfigError, match="'orchestration' must be a mapping"):
        load_configs("quick", path)
    path.write_text("trading:\n  costs: 3\norchestration: {}\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'trading\.costs'"):
        load_configs("quick", path)


def test_events_are_persisted_through_the_risk_log_on_sqlite(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], tmp_path: Path
) -> None:
    signals, closes = market
    config = OrchestrationConfig(warmup_bars=20, allocation_update_every=10, correlation_window=30,
                                 drawdown_start=0.01, drawdown_limit=0.02, emergency_drawdown=0.03)
    events = orchestrate(signals, closes, config, 252.0).events.assign(book="daily")
    assert tuple(events.columns[:-1]) == EVENT_COLUMNS and len(events) > 0
    assert {"conflict", "allocation_change", "risk_limit_activated"} <= set(events["kind"])
    storage = bootstrap(Settings.from_env(database_url=f"sqlite:///{tmp_path / 'store.db'}",
                                          object_store=str(tmp_path / "objects")))
    try:
        assert persist_events(storage.risk, events) == len(events)
        assert persist_events(storage.risk, events) == 0  # a re-run stores nothing twice
        storage.risk.record_risk_events([])
        stored = {s: storage.risk.risk_events(s) for s in ("", "A", "B")}
    finally:
        storage.close()
    assert sum(len(v) for v in stored.values()) == len(events)
    for symbol, rows in stored.items():
        expected = events[events["symbol"] == symbol]
        assert [r.kind for r in rows] == expected["kind"].tolist()
        assert [r.detail["component"] for r in rows] == expected["component"].tolist()
        assert [pd.Timestamp(r.occurred_at) for r in rows] == expected["timestamp"].tolist()
        values = [r.detail["value"] for r in rows]
        np.testing.assert_allclose(np.array(values, dtype=float), expected["value"].to_numpy(), equal_nan=True)
