"""The orchestrator as a step over a serialisable book state: the batch run is the fold of the step (also with
the state written to JSON and read back at every bar), the step is pure and reads nothing after its bar, and a
bad state or bar is refused with an error that names what is wrong."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.orchestration import OrchestrationConfig, OrchestrationResult, TimeframeSignal, orchestrate
from signal_engine.orchestration.events import EventLog
from signal_engine.orchestration.inputs import prepare
from signal_engine.orchestration.runner import assemble
from signal_engine.orchestration.state import (
    SCHEMA_VERSION,
    BookState,
    BookStateError,
    config_from_json,
    config_to_json,
    spec_from_json,
)
from signal_engine.orchestration.step import (
    BarDecisions,
    BarInputs,
    StaleBarError,
    bar_inputs_at,
    initial_state,
    realise,
    step,
)
from signal_engine.orchestration.timeframes import TimeframeSpec
from tests.fixtures import orchestration_golden as golden
from tests.fixtures.orchestration_golden import REAL_CONFIGS, Market, real_market
from tests.unit.test_orchestration_runner import HISTORY, _config, _market
from tests.unit.test_orchestration_step_parts_by_hand import arrays_of

TOL = 1e-12


def fold(market: Market, config: OrchestrationConfig, *, through_json: bool = True,
         cost_bps: dict[str, float] | None = None) -> tuple[OrchestrationResult, list[BookState]]:
    """The step folded over ``prepare``'s timeline, the state written to JSON and read back before every bar."""
    signals, closes, volumes = market
    inputs = prepare(signals, closes, config, volumes)
    state = initial_state(inputs.symbols, inputs.models, inputs.specs, config, 252.0, cost_bps)
    decided: list[BarDecisions] = []
    states: list[BookState] = []
    log = EventLog()
    for i in range(len(inputs.timeline)):
        if through_json:
            state = BookState.from_json(state.to_json())
        result = step(state, bar_inputs_at(inputs, i), config, 252.0, cost_bps)
        state = result.state
        states.append(state)
        decided.append(result.decisions)
        for event in result.events:
            log.record(event)
    return assemble(inputs, decided, log, state), states


def assert_same_detail(now: object, then: object) -> None:
    """An event's detail as recorded: the same keys and texts, numbers within TOL (their last bits depend on the
    NumPy and SciPy builds, as the frames' numbers do)."""
    if isinstance(then, dict):
        assert isinstance(now, dict) and sorted(now) == sorted(then)
        for key in then:
            assert_same_detail(now[key], then[key])
    elif isinstance(then, list):
        assert isinstance(now, list) and len(now) == len(then)
        for a, b in zip(now, then, strict=True):
            assert_same_detail(a, b)
    elif isinstance(then, float):
        assert isinstance(now, (int, float)) and now == pytest.approx(then, rel=0, abs=TOL)
    else:
        assert now == then


def assert_same_book(a: OrchestrationResult, b: OrchestrationResult, tol: float = TOL) -> None:
    for name in ("positions", "allocations", "target_allocations", "risk_scales", "harmony", "returns"):
        np.testing.assert_allclose(getattr(a, name).to_numpy(), getattr(b, name).to_numpy(), rtol=0, atol=tol,
                                   err_msg=name)
        assert getattr(a, name).index.equals(getattr(b, name).index)
    for symbol in a.symbols:
        np.testing.assert_allclose(a.contributions[symbol].to_numpy(), b.contributions[symbol].to_numpy(), rtol=0,
                                   atol=tol)
        np.testing.assert_allclose(a.unmanaged[symbol].to_numpy(), b.unmanaged[symbol].to_numpy(), rtol=0, atol=tol)
    pd.testing.assert_frame_equal(a.regimes, b.regimes)
    text = ["timestamp", "component", "kind", "rule", "symbol", "model", "detail"]
    pd.testing.assert_frame_equal(a.events[text], b.events[text])
    for column in ("value", "threshold"):
        np.testing.assert_allclose(a.events[column].to_numpy(), b.events[column].to_numpy(), rtol=0, atol=tol)
    assert a.event_counts == b.event_counts
    pd.testing.assert_frame_equal(a.performance, b.performance, rtol=0, atol=tol)


@pytest.fixture(scope="module")
def market(goog_csv: Path, spx_csv: Path) -> Market:
    return real_market(goog_csv, spx_csv)


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_the_batch_run_gives_the_book_of_the_runner_before_the_step(market: Market, name: str) -> None:
    """Against frames the pre-step runner (``_Walk``, commit 0c4e32b) wrote: ``tests/fixtures/orchestration_golden``."""
    bars, events, performance = golden.read(name)
    result = golden.run(market, REAL_CONFIGS[name])
    now = golden.bar_frame(result)
    assert list(now.columns) == list(bars.columns) and now.index.equals(bars.index)
    numbers = bars.select_dtypes("number").columns
    np.testing.assert_allclose(now[numbers].to_numpy(dtype=float), bars[numbers].to_numpy(), rtol=0, atol=TOL)
    pd.testing.assert_frame_equal(now.drop(columns=numbers), bars.drop(columns=numbers), check_dtype=False)
    text = ["timestamp", "component", "kind", "rule", "symbol", "model"]
    pd.testing.assert_frame_equal(result.events[text], events[text], check_dtype=False)
    for column in ("value", "threshold"):
        np.testing.assert_allclose(result.events[column].to_numpy(), events[column].to_numpy(), rtol=0, atol=TOL)
    for now_detail, then_detail in zip(result.events["detail"], events["detail"], strict=True):
        assert_same_detail(json.loads(now_detail), json.loads(then_detail))
    pd.testing.assert_frame_equal(result.performance, performance, rtol=0, atol=TOL, check_dtype=False,
                                  check_names=False)


@pytest.mark.parametrize("name", list(REAL_CONFIGS))
def test_the_batch_run_is_the_fold_of_the_step_with_the_state_through_json_at_every_bar(
    market: Market, name: str
) -> None:
    config = REAL_CONFIGS[name]
    signals, closes, volumes = market
    costs = {"GOOG": 7.0}
    batch = orchestrate(signals, closes, config, 252.0, volumes=volumes, cost_bps=costs)
    folded, states = fold(market, config, cost_bps=costs)
    assert len(batch.positions) == 700 - HISTORY and batch.positions.abs().to_numpy().max() > 0.05
    assert_same_book(folded, batch)
    np.testing.assert_allclose(states[-1].positions, batch.positions.iloc[-1].to_numpy(), rtol=0, atol=TOL)
    # the run exercised the state that has to survive the round trip
    final = states[-1]
    assert final.tracker.by_regime and final.defender.candidates and final.correlation.models.filled > 0
    assert sum(len(s.active_limits) > 0 for s in states) > 0
    if config.holding_discipline:
        assert (batch.events["kind"] == "call_held").any() and (final.holding.age > 0).any()


def test_a_synthetic_book_with_a_gappy_calendar_folds_the_same_and_the_json_is_stable() -> None:
    signals, closes = _market()
    config = _config(conflict_strategy="hedge", max_net_exposure=0.3, max_short_exposure=0.2, cost_bps=5.0)
    batch = orchestrate(signals, closes, config, 252.0)
    folded, states = fold((signals, closes, {}), config)
    assert_same_book(folded, batch)
    for state in states[::40]:
        text = state.to_json()
        assert BookState.from_json(text).to_json() == text


def test_the_fold_through_json_equals_the_fold_in_memory_bit_for_bit(
    market: Market, full_fold: tuple[OrchestrationResult, list[BookState]]
) -> None:
    _, through = fold(market, REAL_CONFIGS["holding_band_lookback"])
    _, direct = full_fold
    assert [s.to_json() for s in through] == [s.to_json() for s in direct]


@pytest.fixture(scope="module")
def full_fold(market: Market) -> tuple[OrchestrationResult, list[BookState]]:
    return fold(market, REAL_CONFIGS["holding_band_lookback"], through_json=False)


@pytest.mark.parametrize("cut", [0, 37, 250, 439])
def test_truncating_the_bar_inputs_after_t_changes_nothing_at_or_before_t(
    market: Market, full_fold: tuple[OrchestrationResult, list[BookState]], cut: int
) -> None:
    config = REAL_CONFIGS["holding_band_lookback"]
    signals, closes, volumes = market
    full_inputs = prepare(signals, closes, config, volumes)
    when = full_inputs.timeline[cut]
    short_market = ({s: {m: f.loc[:when] for m, f in streams.items()} for s, streams in signals.items()},
                    {s: c.loc[:when] for s, c in closes.items()}, {s: v.loc[:when] for s, v in volumes.items()})
    short_inputs = prepare(*short_market[:2], config, short_market[2])
    assert short_inputs.timeline[-1] == when and len(short_inputs.timeline) == cut + 1
    np.testing.assert_array_equal(short_inputs.features, full_inputs.features[:cut + 1])
    np.testing.assert_array_equal(short_inputs.asset_returns, full_inputs.asset_returns[:cut + 1])
    np.testing.assert_array_equal(short_inputs.has_bar, full_inputs.has_bar[:cut + 1])
    full, full_states = full_fold
    short_fold, short_states = fold(short_market, config, through_json=False)
    assert [s.to_json() for s in short_states] == [s.to_json() for s in full_states[:cut + 1]]
    # (the tracker's final statistics are the state's, compared above)
    assert_same_book(short_fold, replace(_head(full, cut + 1), performance=short_fold.performance), tol=0.0)


def _head(result: OrchestrationResult, n: int) -> OrchestrationResult:
    last = result.positions.index[n - 1]
    return replace(
        result, positions=result.positions.iloc[:n], allocations=result.allocations.iloc[:n],
        target_allocations=result.target_allocations.iloc[:n], risk_scales=result.risk_scales.iloc[:n],
        harmony=result.harmony.iloc[:n], returns=result.returns.iloc[:n], regimes=result.regimes.iloc[:n],
        contributions={s: f.iloc[:n] for s, f in result.contributions.items()},
        unmanaged={s: f.iloc[:n] for s, f in result.unmanaged.items()},
        events=result.events[result.events["timestamp"] <= last].reset_index(drop=True),
        event_counts=_counts(result.events[result.events["timestamp"] <= last]),
    )


def _counts(events: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(events["kind"].value_counts().items())}


def _midway(market: Market, config: OrchestrationConfig, bars: int = 300) -> tuple[BookState, list[BarInputs]]:
    signals, closes, volumes = market
    inputs = prepare(signals, closes, config, volumes)
    bar_list = [bar_inputs_at(inputs, i) for i in range(bars + 2)]
    state = initial_state(inputs.symbols, inputs.models, inputs.specs, config, 252.0)
    for bar in bar_list[:bars]:
        state = step(state, bar, config, 252.0).state
    return state, bar_list[bars:]


def test_step_leaves_the_state_it_is_given_unchanged(market: Market) -> None:
    config = REAL_CONFIGS["holding_band_lookback"]
    state, (bar, _) = _midway(market, config)
    before = state.to_json()
    result = step(state, bar, config, 252.0)
    assert state.to_json() == before
    assert result.state.to_json() != before and result.state.bar_time == bar.timestamp
    again = step(state, bar, config, 252.0)  # the same bar on the same state: the same result
    assert again.state.to_json() == result.state.to_json() and again.events == result.events
    old_arrays, new_arrays = arrays_of(state), arrays_of(result.state)
    assert len(old_arrays) == len(new_arrays) > 40
    shared = [(a, b) for a, x in old_arrays.items() for b, y in new_arrays.items() if np.shares_memory(x, y)]
    assert not shared, f"the new state shares arrays with the old one: {shared}"


def test_a_copy_of_the_state_is_equal_and_shares_no_array_list_or_dict_with_it(market: Market) -> None:
    state, _ = _midway(market, REAL_CONFIGS["holding_band_lookback"], bars=80)
    state.model_state = {"online": {"weights": [[0.5, 0.25], [0.125, 1.0]], "steps": 3}}  # a model's own state
    copy = state.copy()
    assert copy.to_json() == state.to_json()
    assert copy.model_state == state.model_state and copy.model_state is not state.model_state
    assert copy.model_state["online"]["weights"][0] is not state.model_state["online"]["weights"][0]
    old_arrays, new_arrays = arrays_of(state), arrays_of(copy)
    assert len(old_arrays) == len(new_arrays) > 40 and state.tracker.by_regime  # regimes seen: their sums copied too
    shared = [(a, b) for a, x in old_arrays.items() for b, y in new_arrays.items() if np.shares_memory(x, y)]
    assert not shared, f"the copy shares arrays with the state: {shared}"
    assert copy.defender.candidates is not state.defender.candidates
    assert copy.tracker.by_regime is not state.tracker.by_regime


def test_realise_tells_the_models_what_the_step_reports_and_decides_once(market: Market) -> None:
    config = REAL_CONFIGS["defaults"]
    state, (bar, later) = _midway(market, config)
    realised = realise(state, bar.timestamp, bar.asset_returns, config, 252.0)
    result = realised.decide(bar)
    assert realised.feedback == result.decisions.feedback and len(result.decisions.feedback) == 2 * 4
    told = {(f.symbol, f.model): f for f in result.decisions.feedback}
    m = state.models.index("long")
    assert told["SPX", "long"].position_taken == state.final[m, 1]
    assert told["SPX", "long"].realised_return == bar.asset_returns[1]
    with pytest.raises(BookStateError, match="already decided"):
        realised.decide(bar)
    with pytest.raises(BookStateError, match=f"realised bar {bar.timestamp}, but given inputs of bar"):
        realise(state, bar.timestamp, bar.asset_returns, config, 252.0).decide(later)


def test_a_step_is_refused_for_an_old_bar_or_other_settings_or_inputs(market: Market) -> None:
    config = REAL_CONFIGS["defaults"]
    state, (bar, _) = _midway(market, config)
    assert state.bar_time is not None
    old = replace(bar, timestamp=state.bar_time)
    with pytest.raises(StaleBarError, match=f"bar {state.bar_time} is not after the book's latest bar"):
        step(state, old, config, 252.0)
    with pytest.raises(BookStateError, match=r"config.correlation_window=63, given 30; a book keeps its settings "
                                              r"\(start a new book to change them\)"):
        step(state, bar, replace(config, correlation_window=30), 252.0)
    with pytest.raises(BookStateError, match=r"periods_per_year=252\.0, given 365"):
        step(state, bar, config, 365)
    with pytest.raises(BookStateError, match=r"built with cost_bps=\{'GOOG': [\d.]+, 'SPX': [\d.]+\}, given "
                                              r"\{'GOOG': 1\.0, 'SPX': [\d.]+\}"):
        step(state, bar, config, 252.0, {"GOOG": 1.0})
    with pytest.raises(BookStateError, match=r"symbols \['SPX', 'GOOG'\], but the book holds \['GOOG', 'SPX'\]"):
        step(state, replace(bar, symbols=("SPX", "GOOG")), config, 252.0)
    with pytest.raises(BookStateError, match="models"):
        step(state, replace(bar, models=("a", "b", "c", "d")), config, 252.0)
    call = next(c for c in bar.calls[0] if c is not None)
    late = replace(call, timestamp=bar.timestamp + pd.Timedelta(days=1))
    calls = ((late, *bar.calls[0][1:]), bar.calls[1])
    with pytest.raises(BookStateError, match="after the bar \\(look-ahead\\)"):
        step(state, replace(bar, calls=calls), config, 252.0)
    foreign = replace(call, symbol="SPX")
    with pytest.raises(BookStateError, match=f"call for GOOG/{call.model} is SPX/{call.model}'s"):
        step(state, replace(bar, calls=((foreign, *bar.calls[0][1:]), bar.calls[1])), config, 252.0)
    closed = np.array([False, True])
    with pytest.raises(BookStateError, match="GOOG has no bar then"):
        step(state, replace(bar, has_bar=closed), config, 252.0)
    assert isinstance(call, TimeframeSignal)


def test_the_state_json_has_no_nan_tokens_and_keeps_non_finite_numbers(market: Market) -> None:
    config = REAL_CONFIGS["defaults"]
    state, _ = _midway(market, config, bars=0)  # before the first bar: no scores, empty windows
    text = state.to_json()

    def refuse(token: str) -> float:
        raise AssertionError(f"bare {token} in the state JSON")

    document = json.loads(text, parse_constant=refuse)
    assert document["schema_version"] == SCHEMA_VERSION
    assert set(document["scores"]["values"]) == {"NaN"} and "NaN" in document["correlation"]["models"]["rows"]["values"]
    state.tracker.losses[0] = np.inf
    state.defender.equity = -np.inf
    back = BookState.from_json(state.to_json())
    assert back.tracker.losses[0] == np.inf and back.defender.equity == -np.inf
    np.testing.assert_array_equal(back.scores, state.scores)


def test_the_models_own_state_rides_with_the_bar_and_round_trips_through_json(market: Market) -> None:
    config = REAL_CONFIGS["defaults"]
    state, (bar, following) = _midway(market, config, bars=80)
    assert "model_state" not in json.loads(state.to_json())  # written only when a model keeps state
    learner = {"version": "v1", "updates": 3, "pending": [{"close": 1.5, "sigma": "NaN"}]}
    stepped = step(state, dataclasses.replace(bar, model_state={"short/GOOG": learner}), config, 252.0).state
    assert stepped.model_state == {"short/GOOG": learner} and state.model_state == {}
    learner["updates"] = 4  # the state holds its own copy
    assert stepped.model_state["short/GOOG"]["updates"] == 3
    back = BookState.from_json(stepped.to_json())
    assert back.model_state == stepped.model_state and back.to_json() == stepped.to_json()
    assert step(back, following, config, 252.0).state.model_state == back.model_state  # None keeps the state's
    with pytest.raises(BookStateError, match="field 'model_state': expected a JSON object, got list"):
        BookState.from_json(_edited(state, lambda d: d.update(model_state=[1])))


def test_the_state_json_is_one_compact_line_with_sorted_keys(market: Market) -> None:
    state, _ = _midway(market, REAL_CONFIGS["defaults"], bars=5)
    text = state.to_json()
    # docs/book-state.md: one JSON object with sorted keys (at every level), written without spaces
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_a_config_and_a_spec_round_trip_through_their_json_objects_and_a_bad_field_is_named() -> None:
    config = OrchestrationConfig(max_asset_short_exposure=(("GOOG", 0.25),), no_trade_band=0.05,
                                 no_trade_band_cuts=True, cost_bps=7.5)
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config
    spec = TimeframeSpec.from_horizon("medium", 1, 20)
    assert spec_from_json(json.loads(json.dumps(dataclasses.asdict(spec)))) == spec
    bad_config, bad_spec = {**config_to_json(config), "cost_bps": "7.5"}, {**dataclasses.asdict(spec), "horizon": 1.5}
    with pytest.raises(BookStateError, match=r"field 'config\.cost_bps': expected a number"):
        config_from_json(bad_config)
    with pytest.raises(BookStateError, match=r"field 'bundle\.orchestration\.cost_bps': expected a number"):
        config_from_json(bad_config, "bundle.orchestration")
    with pytest.raises(BookStateError, match=r"field 'spec\.horizon': expected a whole number"):
        spec_from_json(bad_spec)
    with pytest.raises(BookStateError, match=r"field 'bundle\.spec\.horizon': expected a whole number"):
        spec_from_json(bad_spec, "bundle.spec")


def _edited(state: BookState, edit: object) -> str:
    document = json.loads(state.to_json())
    assert callable(edit)
    edit(document)
    return json.dumps(document)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(schema_version=2), "field 'schema_version': unknown version 2; this release reads 1"),
    (lambda d: d.pop("schema_version"), "field 'schema_version': missing"),
    (lambda d: d.pop("final"), "field 'final': missing"),
    (lambda d: d.update(extra=1), "field 'extra': unknown field"),
    (lambda d: d["final"].update(shape=[3, 2]), "field 'final': expected shape 4x2, got 3x2"),
    (lambda d: d["vol"]["values"].__setitem__(0, "nan"), r"field 'vol.values\[0\]': expected a number"),
    (lambda d: d["tracker"]["returns"]["count"]["values"].__setitem__(1, 1.5),
     r"field 'tracker.returns.count.values\[1\]': expected a whole number"),
    (lambda d: d["config"].update(correlation_window="63"), "field 'config.correlation_window': expected a whole"),
    (lambda d: d["config"].update(min_allocation=0.9), "field 'config': .*min_allocation"),
    (lambda d: d["regime"].update(trend="up"), "field 'regime.trend': expected one of trend, range, got 'up'"),
    (lambda d: d.update(bar_time="yesterday"), "field 'bar_time': expected an ISO 8601 time"),
    (lambda d: d["specs"][0].update(name="weekly"), r"field 'specs\[0\].name': expected 'scalping'"),
    (lambda d: d["correlation"]["models"].update(next=99), "field 'correlation.models': next=99"),
    (lambda d: d["defender"]["candidates"].append([1]), r"field 'defender.candidates\[\d+\]': expected 2 entries"),
    (lambda d: d.update(symbols=["GOOG", "GOOG"]), "field 'symbols': expected distinct names"),
])
def test_a_bad_state_document_is_refused_naming_the_field(market: Market, edit: object, message: str) -> None:
    state, _ = _midway(market, REAL_CONFIGS["defaults"], bars=80)
    with pytest.raises(BookStateError, match=message):
        BookState.from_json(_edited(state, edit))


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(BookStateError, match="book state: not JSON"):
        BookState.from_json("{not json")
    with pytest.raises(BookStateError, match=r"field '\(document\)': expected a JSON object, got list"):
        BookState.from_json("[]")


def test_initial_state_refuses_specs_that_do_not_match_the_models() -> None:
    signals, closes = _market()
    inputs = prepare(signals, closes, _config())
    with pytest.raises(BookStateError, match="do not match models"):
        initial_state(inputs.symbols, inputs.models[::-1], inputs.specs, _config(), 252.0)
