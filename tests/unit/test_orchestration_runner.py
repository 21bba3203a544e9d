"""The orchestrator end to end on small synthetic streams (and one real series): no look-ahead, determinism,
calendars, limits on every bar, returns and costs, emergency deleveraging and the event table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data.loader import load_prices
from signal_engine.errors import SignalEngineError
from signal_engine.evaluation.metrics import strategy_returns
from signal_engine.orchestration import (
    EVENT_COLUMNS,
    RISK_COMPONENTS,
    TIMEFRAME_NAMES,
    OrchestrationConfig,
    OrchestrationResult,
    PrecomputedTimeframeModel,
    orchestrate,
    timeframe_specs,
)
from signal_engine.orchestration import step as step_module
from signal_engine.orchestration.drawdown import DrawdownDefender
from signal_engine.orchestration.exposure import within_limits

HISTORY = 260  # bars of closes before the first signal (regime windows look back)
TOL = 1e-9


def _closes(n: int, seed: int, drift: float = 0.0003) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2012-01-02", periods=n)
    return pd.Series(100 * np.exp(np.cumsum(rng.normal(drift, 0.012, n))), index=index)


def _rule_streams(close: pd.Series, horizons: tuple[int, ...] = (1, 5, 20, 60)) -> dict[str, pd.DataFrame]:
    """Point-in-time momentum calls of four horizons, volatility-targeted, from the first HISTORY bars on."""
    log_return = np.log(close).diff()
    vol = log_return.ewm(alpha=0.06, min_periods=20).std()
    streams = {}
    for name, h in zip(TIMEFRAME_NAMES, horizons, strict=True):
        z = (np.log(close).diff(max(h, 2)) / (vol * np.sqrt(max(h, 2)))).clip(-3, 3)
        frame = pd.DataFrame({
            "direction": np.where(z.abs() > 0.25, np.sign(z), 0.0),
            "size": (0.15 / np.sqrt(252) / vol).clip(0, 1),
            "confidence": (z.abs() / 3).clip(0, 1),
            "vol_forecast": vol,
            "score": (z / 3).clip(-1, 1),
        }, index=close.index)
        streams[name] = frame.iloc[HISTORY:]
    return streams


def _market(n: int = 420) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]:
    """Two symbols; B trades on a different calendar (every 7th bar missing)."""
    a = _closes(n, seed=1)
    b = _closes(n, seed=2, drift=-0.0002)
    b = b[np.arange(n) % 7 != 3]
    closes = {"A": a, "B": b}
    return {s: _rule_streams(c) for s, c in closes.items()}, closes


def _config(**overrides: object) -> OrchestrationConfig:
    base = {"warmup_bars": 20, "allocation_update_every": 10, "correlation_window": 30}
    return OrchestrationConfig(**{**base, **overrides})  # type: ignore[arg-type]


def assert_book_limits(result: OrchestrationResult, config: OrchestrationConfig) -> None:
    """Gross, net and per-timeframe exposure within the config's limits on every bar."""
    positions = result.positions.to_numpy()
    assert np.all(np.abs(positions).sum(axis=1) <= config.max_gross_exposure + TOL)
    assert np.all(np.abs(positions.sum(axis=1)) <= config.max_net_exposure + TOL)
    per_model = sum(np.abs(f.to_numpy()) for f in result.contributions.values())
    assert np.all(per_model <= config.max_timeframe_exposure + TOL)


@pytest.fixture(scope="module")
def market() -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]:
    return _market()


@pytest.fixture(scope="module")
def result(market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]) -> OrchestrationResult:
    signals, closes = market
    return orchestrate(signals, closes, _config(), 252.0)


def _frames(result: OrchestrationResult) -> dict[str, pd.DataFrame]:
    frames = {
        "positions": result.positions, "allocations": result.allocations, "targets": result.target_allocations,
        "risk_scales": result.risk_scales, "harmony": result.harmony, "regimes": result.regimes,
        "returns": result.returns, "bars": result.bars,
    }
    frames.update({f"contributions_{s}": f for s, f in result.contributions.items()})
    frames.update({f"unmanaged_{s}": f for s, f in result.unmanaged.items()})
    return frames


@pytest.mark.parametrize("bar", [0, 45, 90, 159])
def test_truncating_the_inputs_after_a_bar_changes_nothing_up_to_it(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], result: OrchestrationResult, bar: int
) -> None:
    signals, closes = market
    cut = result.positions.index[bar]
    short = orchestrate({s: {m: f.loc[:cut] for m, f in streams.items()} for s, streams in signals.items()},
                        {s: c.loc[:cut] for s, c in closes.items()}, _config(), 252.0)
    assert short.positions.index[-1] == cut
    for name, frame in _frames(result).items():
        pd.testing.assert_frame_equal(_frames(short)[name], frame.loc[:cut], obj=name)
    events = result.events[result.events["timestamp"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.events, events)


def test_the_same_inputs_give_identical_outputs(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], result: OrchestrationResult
) -> None:
    signals, closes = market
    again = orchestrate(signals, closes, _config(), 252.0)
    for name, frame in _frames(result).items():
        pd.testing.assert_frame_equal(_frames(again)[name], frame, obj=name)
    pd.testing.assert_frame_equal(again.events, result.events)
    pd.testing.assert_frame_equal(again.performance, result.performance)


def test_every_bar_respects_the_allocation_and_exposure_limits(result: OrchestrationResult) -> None:
    config = _config()
    allocations = result.allocations.to_numpy()
    assert np.all(allocations >= config.min_allocation - TOL) and np.all(allocations <= config.max_allocation + TOL)
    np.testing.assert_allclose(allocations.sum(axis=1), 1.0)
    assert np.all(np.abs(np.diff(allocations, axis=0)) <= config.max_allocation_change + TOL)
    assert result.event_counts.get("allocation_change", 0) > 0
    positions = result.positions.to_numpy()
    assert np.all(np.abs(positions).sum(axis=1) <= config.max_gross_exposure + TOL)
    assert np.all(np.abs(positions) <= config.max_asset_exposure + TOL)
    per_model = sum(np.abs(f.to_numpy()) for f in result.contributions.values())
    assert np.all(per_model <= config.max_timeframe_exposure + TOL)
    for symbol, contributions in result.contributions.items():
        np.testing.assert_allclose(contributions.sum(axis=1), result.positions[symbol], atol=1e-12)
    scales = result.risk_scales.to_numpy()
    assert list(result.risk_scales.columns) == list(RISK_COMPONENTS)
    assert np.all((scales >= 0.0) & (scales <= 1.0 + TOL))


def test_a_symbol_without_a_bar_keeps_its_position_and_gets_no_new_signal(result: OrchestrationResult) -> None:
    missing = ~result.bars["B"]
    assert missing.sum() > 10 and result.bars["A"].all()
    previous = result.positions["B"].shift(1)
    np.testing.assert_array_equal(result.positions.loc[missing, "B"], previous[missing])
    np.testing.assert_array_equal(result.unmanaged["B"][missing], result.unmanaged["B"].shift(1)[missing])
    assert (result.harmony.loc[missing, "B"] == 0).all()
    assert result.asset_returns.loc[missing, "B"].isna().all()
    assert len(result.symbol_positions("B")) == int(result.bars["B"].sum())


def test_returns_are_the_positions_net_of_costs_one_bar_later() -> None:
    close = _closes(HISTORY + 150, seed=5)
    config = _config(cost_bps=10.0)
    result = orchestrate({"A": _rule_streams(close)}, {"A": close}, config, 252.0)
    position = result.positions["A"].to_numpy()
    next_return = result.asset_returns["A"].shift(-1).to_numpy()
    expected = strategy_returns(position[:-1], next_return[:-1], cost_bps=10.0)
    np.testing.assert_allclose(result.returns["orchestrated"].to_numpy()[1:], expected, atol=1e-15)
    model_columns = [f"model_{m}" for m in result.models]
    np.testing.assert_allclose(result.returns["sum_of_parts"], result.returns[model_columns].mean(axis=1))
    unmanaged = result.unmanaged["A"]["long"].to_numpy()
    np.testing.assert_allclose(result.returns["model_long"].to_numpy()[1:],
                               strategy_returns(unmanaged[:-1], next_return[:-1], cost_bps=10.0), atol=1e-15)
    assert result.symbol_positions("A", per_sleeve=True).equals(result.positions["A"])


def test_models_hear_back_only_after_the_bar_is_realised() -> None:
    close = _closes(HISTORY + 60, seed=6)
    specs = timeframe_specs(_config())
    models = {name: PrecomputedTimeframeModel(frame, spec=specs[name], symbol="A")
              for name, frame in _rule_streams(close).items()}
    result = orchestrate({"A": models}, {"A": close}, _config(), 252.0)
    feedback = models["medium"].feedback_
    assert [f.timestamp for f in feedback] == list(result.positions.index[1:])
    held = result.contributions["A"]["medium"].to_numpy()
    np.testing.assert_allclose([f.position_taken for f in feedback], held[:-1])
    realised = result.asset_returns["A"].to_numpy()[1:]
    np.testing.assert_allclose([f.pnl for f in feedback], held[:-1] * realised)


def test_a_crash_triggers_emergency_deleveraging_and_the_event_is_kept() -> None:
    index = pd.bdate_range("2020-01-01", periods=HISTORY + 40)
    steps = np.r_[np.zeros(HISTORY + 5), np.full(35, np.log(0.97))]
    close = pd.Series(100 * np.exp(np.cumsum(steps)), index=index)
    always_long = pd.DataFrame({"direction": 1.0, "size": 1.0, "confidence": 1.0, "vol_forecast": 0.01,
                                "score": 1.0}, index=index[HISTORY:])
    result = orchestrate({"A": dict.fromkeys(TIMEFRAME_NAMES, always_long)}, {"A": close}, _config(), 252.0)
    drawdown = result.risk_scales["drawdown"].to_numpy()
    assert np.all(np.diff(drawdown) <= TOL)  # the strategy only loses: scaling only tightens
    emergency = result.events[result.events["kind"] == "emergency_deleveraging"]
    assert len(emergency) == 1
    after = result.positions.loc[emergency["timestamp"].iloc[0]:, "A"]
    assert (after == 0.0).all() and result.positions["A"].iloc[5] > 0
    assert (result.events["kind"] == "risk_limit_activated").any()


def _crash(cost_bps: float, **overrides: object) -> tuple[OrchestrationResult, OrchestrationConfig]:
    """An always-long book through a 35-bar slide: the defender acts; costs make turnover visible."""
    index = pd.bdate_range("2020-01-01", periods=HISTORY + 60)
    rng = np.random.default_rng(11)
    steps = np.r_[np.zeros(HISTORY + 5), np.full(35, np.log(0.985)), rng.normal(0.002, 0.01, 20)]
    close = pd.Series(100 * np.exp(np.cumsum(steps)), index=index)
    config = _config(cost_bps=cost_bps, **overrides)
    streams = dict.fromkeys(TIMEFRAME_NAMES, _always_long(index[HISTORY:]))
    return orchestrate({"A": streams}, {"A": close}, config, 252.0), config


@pytest.mark.parametrize("basis", ["undefended", "account"])
def test_the_defender_scales_by_the_drawdown_of_its_configured_book(basis: str) -> None:
    result, config = _crash(cost_bps=10.0, drawdown_basis=basis, emergency_scale=0.2)
    column = {"undefended": "undefended", "account": "orchestrated"}[basis]
    assert not np.allclose(result.returns["undefended"], result.returns["orchestrated"]), "the books must differ"
    replay = DrawdownDefender(config)
    expected = []
    for realised in result.returns[column].to_numpy():  # realised at the bar's close, before it decides
        replay.update(float(realised))
        expected.append(replay.scale())
    np.testing.assert_allclose(result.risk_scales["drawdown"].to_numpy(), expected, atol=1e-12)
    assert min(expected) < 1.0


def test_the_undefended_book_pays_its_own_turnover() -> None:
    defended, _ = _crash(cost_bps=25.0)
    idle, _ = _crash(cost_bps=25.0, drawdown_start=0.9, drawdown_limit=0.95, emergency_drawdown=0.99)
    assert (defended.risk_scales["drawdown"] < 1.0).any() and (idle.risk_scales["drawdown"] == 1.0).all()
    # Without the defender the book is what an idle defender would hold, with its own trades and costs.
    np.testing.assert_allclose(defended.returns["undefended"], idle.returns["orchestrated"], atol=1e-15)
    assert not np.allclose(defended.returns["orchestrated"], idle.returns["orchestrated"])


def test_event_table_has_the_storage_columns(result: OrchestrationResult) -> None:
    assert tuple(result.events.columns) == EVENT_COLUMNS
    assert result.events["timestamp"].is_monotonic_increasing
    assert set(result.events["kind"]) >= {"conflict", "allocation_change"}
    assert sum(result.event_counts.values()) == len(result.events)


def test_bad_inputs_are_named() -> None:
    close = _closes(HISTORY + 10, seed=7)
    streams = _rule_streams(close)
    with pytest.raises(SignalEngineError, match="no closes for symbol 'B'"):
        orchestrate({"B": streams}, {"A": close}, _config(), 252.0)
    with pytest.raises(SignalEngineError, match="unknown timeframe model 'weekly'"):
        orchestrate({"A": {"weekly": streams["long"]}}, {"A": close}, _config(), 252.0)


def test_real_series_runs_within_its_limits(goog_csv: Path) -> None:
    close = load_prices(goog_csv).bars["close"]
    config = OrchestrationConfig()
    result = orchestrate({"GOOG": _rule_streams(close.iloc[-1000:])}, {"GOOG": close}, config, 252.0)
    assert len(result.positions) == 1000 - HISTORY
    assert np.all(np.abs(result.positions["GOOG"]) <= config.max_asset_exposure + TOL)
    np.testing.assert_allclose(result.allocations.sum(axis=1), 1.0)
    assert np.isfinite(result.returns.to_numpy()).all()
    assert list(result.performance.index) == list(TIMEFRAME_NAMES)
    assert result.model_correlation().shape == (4, 4)


def _always_long(index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"direction": 1.0, "size": 1.0, "confidence": 1.0, "vol_forecast": 0.01, "score": 1.0},
                        index=index)


def test_the_undefended_book_is_the_managed_one_while_the_defender_is_idle(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]
) -> None:
    signals, closes = market
    idle = _config(drawdown_start=0.9, drawdown_limit=0.95, emergency_drawdown=0.99)
    result = orchestrate(signals, closes, idle, 252.0)
    assert (result.risk_scales["drawdown"] == 1.0).all()
    np.testing.assert_array_equal(result.returns["undefended"], result.returns["orchestrated"])


@pytest.mark.parametrize("settings", [
    {"conflict_strategy": "confidence"},
    {"conflict_strategy": "hedge", "max_net_exposure": 0.3, "max_short_exposure": 0.2},
    {"drawdown_basis": "account", "emergency_scale": 0.1, "max_trade_per_bar": 0.2},
])
def test_every_strategy_and_basis_keeps_the_limits(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], settings: dict[str, object]
) -> None:
    signals, closes = market
    config = _config(**settings)
    result = orchestrate(signals, closes, config, 252.0)
    positions = result.positions.to_numpy()
    assert np.all(np.abs(positions.sum(axis=1)) <= config.max_net_exposure + TOL)
    assert np.all(-np.clip(positions, None, 0.0).sum(axis=1) <= config.max_short_exposure + TOL)
    conflicts = result.events[result.events["kind"] == "conflict"]
    assert len(conflicts) > 0 and (conflicts["value"] <= conflicts["threshold"] + TOL).all()
    assert (conflicts["rule"] == config.conflict_strategy).all()


def test_a_symbol_with_a_short_limit_of_zero_is_long_or_flat_and_the_other_still_goes_short(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]
) -> None:
    signals, closes = market
    both = orchestrate(signals, closes, _config(), 252.0)
    assert (both.positions["A"] < -0.01).any() and (both.positions["B"] < -0.01).any()  # both go short freely
    config = _config(max_asset_short_exposure={"a": 0.0})
    limited = orchestrate(signals, closes, config, 252.0)
    assert (limited.positions["A"] >= -TOL).all()
    assert (limited.positions["B"] < -0.01).any()
    assert_book_limits(limited, config)
    events = limited.events[limited.events["component"] == "exposure"]
    capped = events[(events["rule"] == "asset_short") & (events["symbol"] == "A")]
    assert len(capped) > 0 and (capped["threshold"] == 0.0).all() and (capped["value"] < 1.0).any()
    assert set(capped["kind"]) == {"risk_limit_activated", "risk_limit_released"}
    assert not ((events["rule"] == "asset_short") & (events["symbol"] == "B")).any()


def test_one_symbols_short_limit_is_the_book_short_limit_for_that_symbol_alone(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]]
) -> None:
    signals, closes = market
    alone = {"A": signals["A"]}, {"A": closes["A"]}
    per_symbol = orchestrate(*alone, _config(max_asset_short_exposure={"A": 0.2}), 252.0)
    book_wide = orchestrate(*alone, _config(max_short_exposure=0.2), 252.0)
    assert per_symbol.positions["A"].min() == pytest.approx(-0.2)
    np.testing.assert_allclose(per_symbol.positions.to_numpy(), book_wide.positions.to_numpy(), atol=1e-12)


def test_thin_liquidity_halves_the_trade_budget() -> None:
    index = pd.bdate_range("2020-01-01", periods=HISTORY + 20)
    close = pd.Series(100 * np.exp(np.linspace(0.0, 0.1, len(index))), index=index)
    volume = pd.Series(np.where(np.arange(len(index)) < HISTORY - 30, 1e6, 1e5), index=index)
    signals = {"A": dict.fromkeys(TIMEFRAME_NAMES, _always_long(index[HISTORY:]))}
    thin = orchestrate(signals, {"A": close}, _config(), 252.0, volumes={"A": volume})
    normal = orchestrate(signals, {"A": close}, _config(), 252.0)
    assert (thin.regimes["liquidity"] == "thin").all() and (normal.regimes["liquidity"] == "normal").all()
    deferrals = thin.events[thin.events["kind"] == "schedule_deferral"]
    assert (deferrals["threshold"] == 0.5).all() and len(deferrals) > 0
    assert thin.positions["A"].iloc[0] < normal.positions["A"].iloc[0]


def test_the_no_trade_band_skips_small_top_ups_and_keeps_every_limit(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], result: OrchestrationResult
) -> None:
    signals, closes = market
    config = _config(no_trade_band=0.2)
    banded = orchestrate(signals, closes, config, 252.0)
    assert_book_limits(banded, config)
    positions, bars = banded.positions.to_numpy(), banded.bars.to_numpy()
    before, after = positions[:-1], positions[1:]
    top_up = (np.sign(after) == np.sign(before)) & (np.abs(after) > np.abs(before)) & bars[1:]
    small = np.abs(after - before) < config.no_trade_band / len(banded.symbols) - 1e-12
    assert not np.any(top_up & small & (before != 0))  # no small same-side top-up is ever traded
    turnover = np.abs(np.diff(positions, axis=0)).sum()
    assert turnover < np.abs(np.diff(result.positions.to_numpy(), axis=0)).sum()
    off = orchestrate(signals, closes, _config(no_trade_band=0.0), 252.0)
    pd.testing.assert_frame_equal(off.positions, result.positions)


def test_the_band_falls_back_to_the_proposal_when_keeping_the_held_legs_would_break_a_limit(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rising A and a falling B on one calendar: keeping one symbol's smaller held leg beside the other's new one
    # tips the book's net exposure past a tight limit, so the band must trade the proposal instead.
    closes = {"A": _closes(420, seed=1), "B": _closes(420, seed=2, drift=-0.0002)}
    signals = {symbol: _rule_streams(close) for symbol, close in closes.items()}
    config = _config(no_trade_band=0.4, max_net_exposure=0.02)
    checks: list[bool] = []

    def recorded(*args: object, **kwargs: object) -> bool:
        checks.append(within_limits(*args, **kwargs))  # type: ignore[arg-type]
        return checks[-1]

    monkeypatch.setattr(step_module, "within_limits", recorded)
    banded = orchestrate(signals, closes, config, 252.0)
    assert_book_limits(banded, config)  # fails when the band keeps the held legs without the check (planted mutant)
    assert checks.count(False) >= 1, "no bar exercised the fallback"


def test_the_symmetric_band_skips_small_cuts_too_unless_the_defender_acts(
    market: tuple[dict[str, dict[str, pd.DataFrame]], dict[str, pd.Series]], result: OrchestrationResult
) -> None:
    signals, closes = market
    config = _config(no_trade_band=0.2, no_trade_band_cuts=True)
    symmetric = orchestrate(signals, closes, config, 252.0)
    ratchet = orchestrate(signals, closes, _config(no_trade_band=0.2), 252.0)
    assert_book_limits(symmetric, config)
    positions, bars = symmetric.positions.to_numpy(), symmetric.bars.to_numpy()
    before, after = positions[:-1], positions[1:]
    idle = (symmetric.risk_scales["drawdown"].to_numpy()[1:] == 1.0)[:, None]
    same_side = (np.sign(after) == np.sign(before)) & (before != 0) & bars[1:]
    small = (np.abs(after - before) < config.no_trade_band / len(symmetric.symbols) - 1e-12) & (after != before)
    assert not np.any(same_side & small & idle)  # no small resize either way while the defender is idle
    turnover = np.abs(np.diff(positions, axis=0)).sum()
    assert turnover < np.abs(np.diff(result.positions.to_numpy(), axis=0)).sum()
    # the one-sided band ratchets positions down between entries; the symmetric one holds more exposure
    assert np.abs(positions).mean() > np.abs(ratchet.positions.to_numpy()).mean()
