"""The parts of a book's step worked out by hand (issue 25's mutation pass of ``orchestration/step.py``).

``test_orchestration_step_by_hand.py`` books the returns, the risk manager and the band; this file pins the rest
of a step: the initial state, the checks of a bar's inputs and their messages, how calls are read per model and
symbol, the coordination of the timeframe models' calls, the regime, the reallocation schedule, the holding
discipline, the feedback given once a bar is realised, and what is written back to the new state. Expected values
are binary fractions worked out by hand (compared exactly) unless said otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.orchestration import OrchestrationConfig, TimeframeSignal
from signal_engine.orchestration.events import OrchestrationEvent
from signal_engine.orchestration.inputs import Inputs
from signal_engine.orchestration.regime import Regime
from signal_engine.orchestration.state import BookStateError
from signal_engine.orchestration.step import (
    BarInputs,
    StaleBarError,
    StepResult,
    bar_inputs_at,
    initial_state,
    realise,
    step,
)
from signal_engine.orchestration.timeframes import TimeframeSpec

SPECS = (TimeframeSpec.from_horizon("short", 0, 5), TimeframeSpec.from_horizon("medium", 1, 20))
MODELS, SYMBOLS = ("short", "medium"), ("A", "B")
TIMES = pd.date_range("2024-01-02", periods=6, freq="D")
T0, T1, T2, T3 = TIMES[:4]
NO_FEATURES = np.full((2, 4), np.nan)
BOTH = np.array([True, True])


def quiet(**settings: Any) -> OrchestrationConfig:
    """No costs, no volatility or correlation scaling unless given."""
    return OrchestrationConfig(**{"cost_bps": 0.0, "target_vol_annual": 1.0, "correlation_threshold": 1.0, **settings})


def signal(model: int, symbol: str, when: pd.Timestamp, direction: int, size: float = 1.0, confidence: float = 1.0,
           vol: float = 0.01, score: float = 0.0) -> TimeframeSignal:
    spec = SPECS[model]
    return TimeframeSignal(spec.name, symbol, when, direction, size, confidence, spec.expected_holding,
                           spec.min_holding, spec.max_holding, vol_forecast=vol, score=score)


def bar(when: pd.Timestamp, calls: Any, returns: Any = (0.0, 0.0), has_bar: np.ndarray = BOTH,
        features: np.ndarray = NO_FEATURES, **extra: Any) -> BarInputs:
    return BarInputs(when, SYMBOLS, MODELS, has_bar, np.array(returns, dtype=float), features, calls, **extra)


def flat(when: pd.Timestamp, returns: Any = (0.0, 0.0)) -> BarInputs:
    return bar(when, ((None, None), (None, None)), returns)


def arrays_of(value: object, path: str = "state") -> dict[str, np.ndarray]:
    """Every array in a state (its dataclasses and dicts walked), by path."""
    if isinstance(value, np.ndarray):
        return {path: value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        return {}
    return {k: v for name, item in items for k, v in arrays_of(item, f"{path}.{name}").items()}


def events_of(result: StepResult, component: str) -> list[OrchestrationEvent]:
    return [event for event in result.events if event.component == component]


# -- the initial state -------------------------------------------------------------------------------------


def test_the_initial_state_is_flat_with_equal_shares_empty_windows_and_the_given_settings() -> None:
    config = OrchestrationConfig(cost_bps=10.0, correlation_window=8)
    symbols = ("A", "B", "C")  # 2 models x 3 symbols, so a transposed array has the wrong shape
    state = initial_state(symbols, MODELS, SPECS, config, 252, {"B": 2.5})
    assert (state.symbols, state.models, state.specs, state.config) == (symbols, MODELS, SPECS, config)
    assert type(state.periods_per_year) is float and state.periods_per_year == 252.0
    assert state.cost_bps == (10.0, 2.5, 10.0)
    assert (state.bar_time, state.bars, state.last_update, state.regime, state.active_limits) == (None, 0, None, None,
                                                                                                    ())
    np.testing.assert_array_equal(state.allocation, [0.5, 0.5])
    np.testing.assert_array_equal(state.target, [0.5, 0.5])
    assert not np.shares_memory(state.allocation, state.target)
    for name in ("scheduled", "final", "undefended", "unmanaged", "pending_models"):
        np.testing.assert_array_equal(getattr(state, name), np.zeros((2, 3)), err_msg=name)
    np.testing.assert_array_equal(state.scores, np.full((2, 3), np.nan))
    for name in ("harmony", "pending_account", "pending_undefended", "pending_coordinated"):
        np.testing.assert_array_equal(getattr(state, name), np.zeros(3), err_msg=name)
    np.testing.assert_array_equal(state.vol, np.full(3, np.nan))
    tracker = state.tracker
    np.testing.assert_array_equal(tracker.returns.count, [0, 0])
    np.testing.assert_array_equal(tracker.returns.weight, [0.0, 0.0])
    assert tracker.by_regime == {}
    np.testing.assert_array_equal(tracker.equity, [1.0, 1.0])
    np.testing.assert_array_equal(tracker.ic, np.zeros((6, 2)))
    np.testing.assert_array_equal(state.correlation.models.rows, np.full((8, 2), np.nan))  # window x models
    np.testing.assert_array_equal(state.correlation.assets.rows, np.full((8, 3), np.nan))  # window x symbols
    assert (state.correlation.models.filled, state.correlation.assets.filled) == (0, 0)
    assert (state.defender.equity, state.defender.peak) == (1.0, 1.0)
    np.testing.assert_array_equal(state.holding.direction, np.zeros((2, 3)))
    np.testing.assert_array_equal(state.holding.age, np.zeros((2, 3), dtype=np.int64))
    assert state.model_state == {}


def test_the_initial_state_refuses_specs_of_other_models_and_symbols_that_are_not_distinct() -> None:
    config = OrchestrationConfig()
    with pytest.raises(BookStateError, match=re.escape(
            "book state: specs ['short', 'medium'] do not match models ['medium', 'short']")):
        initial_state(SYMBOLS, ("medium", "short"), SPECS, config, 252.0)
    with pytest.raises(BookStateError, match=re.escape("book state: expected distinct symbols, got ['A', 'A']")):
        initial_state(("A", "A"), MODELS, SPECS, config, 252.0)
    with pytest.raises(BookStateError, match=re.escape("book state: expected distinct symbols, got []")):
        initial_state((), MODELS, SPECS, config, 252.0)


# -- a bar's inputs and their checks -----------------------------------------------------------------------


class Stream:
    """A model that calls long at every bar it is asked for, and records when it was asked."""

    def __init__(self, model: int, symbol: str) -> None:
        self.model, self.symbol = model, symbol
        self.asked: list[pd.Timestamp] = []

    def signal(self, timestamp: pd.Timestamp) -> TimeframeSignal:
        self.asked.append(timestamp)
        return signal(self.model, self.symbol, timestamp, 1)


def test_a_bar_of_prepared_inputs_asks_only_the_models_of_symbols_with_a_bar_and_copies_the_arrays() -> None:
    a_short, a_medium, b_short = Stream(0, "A"), Stream(1, "A"), Stream(0, "B")
    features = np.arange(16, dtype=float).reshape(2, 2, 4)
    inputs = Inputs(symbols=SYMBOLS, models=MODELS, specs=SPECS, streams=((a_short, a_medium), (b_short, None)),
                    timeline=pd.DatetimeIndex([T0, T1]), has_bar=np.array([[True, True], [False, True]]),
                    asset_returns=np.array([[np.nan, np.nan], [np.nan, 0.5]]), features=features)
    got = bar_inputs_at(inputs, 1)
    assert (got.timestamp, got.symbols, got.models, got.model_state) == (T1, SYMBOLS, MODELS, None)
    assert got.calls == ((None, None), (signal(0, "B", T1, 1), None))
    assert (a_short.asked, a_medium.asked, b_short.asked) == ([], [], [T1])
    np.testing.assert_array_equal(got.has_bar, [False, True])
    np.testing.assert_array_equal(got.asset_returns, [np.nan, 0.5])
    np.testing.assert_array_equal(got.features, features[1])
    for name in ("has_bar", "asset_returns", "features"):
        assert not np.shares_memory(getattr(got, name), getattr(inputs, name)), name


def long_a_short_b(when: pd.Timestamp) -> tuple[tuple[TimeframeSignal, TimeframeSignal], ...]:
    return ((signal(0, "A", when, 1), signal(1, "A", when, 1)), (signal(0, "B", when, -1), signal(1, "B", when, -1)))


def refused(error: type[Exception], message: str) -> Any:
    return pytest.raises(error, match="^" + re.escape(message) + "$")


def test_a_step_refuses_a_stale_bar_or_returns_of_the_wrong_shape_and_says_which() -> None:
    config, costs = quiet(), {"B": 2.5}
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0, costs), bar(T1, long_a_short_b(T1)),
                 config, 252.0, costs)
    assert first.state.cost_bps == (0.0, 2.5)
    stale = f"book step: bar {T1} is not after the book's latest bar {T1}; bars are stepped once, in time order"
    with refused(StaleBarError, stale):
        step(first.state, bar(T1, long_a_short_b(T1)), config, 252.0, costs)
    with refused(StaleBarError, stale):  # realising alone, before any decision
        realise(first.state, T1, np.zeros(2), config, 252.0, costs)
    with refused(StaleBarError, stale.replace(f"bar {T1} is", f"bar {T0} is")):
        realise(first.state, T0, np.zeros(2), config, 252.0, costs)
    with refused(BookStateError, f"book step at {T2}: asset_returns has shape (3,), expected (2,)"):
        realise(first.state, T2, np.zeros(3), config, 252.0, costs)
    with refused(BookStateError, f"book step at {T2}: asset_returns has shape (2, 1), expected (2,)"):
        realise(first.state, T2, np.zeros((2, 1)), config, 252.0, costs)
    # the realised bar's inputs are checked before it is decided, and it is decided once
    with refused(StaleBarError, stale):
        realise(first.state, T2, np.zeros(2), config, 252.0, costs).decide(bar(T1, long_a_short_b(T1)))
    other = f"book step: realised bar {T2}, but given inputs of bar {T3} (or other returns) to decide"
    with refused(BookStateError, other):
        realise(first.state, T2, np.zeros(2), config, 252.0, costs).decide(bar(T3, long_a_short_b(T3)))
    with refused(BookStateError, other.replace(str(T3), str(T2))):
        realise(first.state, T2, np.zeros(2), config, 252.0, costs).decide(bar(T2, long_a_short_b(T2), (0.0, 0.5)))
    realised = realise(first.state, T2, np.array([0.0, np.nan]), config, 252.0, costs)
    assert realised.timestamp == T2
    decided = realised.decide(bar(T2, long_a_short_b(T2), (0.0, np.nan)))  # NaN is the same return as NaN
    assert decided.state.bar_time == T2
    with refused(BookStateError, f"book step at {T2}: this bar was already decided"):
        realised.decide(bar(T2, long_a_short_b(T2), (0.0, np.nan)))


def test_a_step_refuses_inputs_for_another_book_and_names_the_field() -> None:
    config = quiet()
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, long_a_short_b(T0)), config, 252.0)

    def decide(inputs: BarInputs) -> StepResult:
        return realise(first.state, T1, np.zeros(2), config, 252.0).decide(inputs)

    calls = long_a_short_b(T1)
    with refused(BookStateError, f"book step at {T1}: inputs for symbols ['B', 'A'], but the book holds ['A', 'B']"):
        decide(BarInputs(T1, ("B", "A"), MODELS, BOTH, np.zeros(2), NO_FEATURES, calls))
    with refused(BookStateError, f"book step at {T1}: inputs for models ['medium', 'short'], but the book was built "
                                 "for ['short', 'medium']"):
        decide(BarInputs(T1, SYMBOLS, ("medium", "short"), BOTH, np.zeros(2), NO_FEATURES, calls))
    with refused(BookStateError, f"book step at {T1}: has_bar has shape (3,), expected (2,)"):
        decide(bar(T1, calls, has_bar=np.array([True, True, True])))
    with refused(BookStateError, f"book step at {T1}: asset_returns has shape (3,), expected (2,)"):
        decide(bar(T1, calls, (0.0, 0.0, 0.0)))
    with refused(BookStateError, f"book step at {T1}: features has shape (2, 3), expected (2, 4)"):
        decide(bar(T1, calls, features=np.zeros((2, 3))))
    with refused(BookStateError, f"book step at {T1}: calls must be 2 symbols x 2 models"):
        decide(bar(T1, calls[:1]))
    with refused(BookStateError, f"book step at {T1}: calls must be 2 symbols x 2 models"):
        decide(bar(T1, (calls[0], calls[1][:1])))


def test_a_step_refuses_a_call_without_a_bar_from_the_future_or_of_another_symbol_or_model() -> None:
    config = quiet()
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, long_a_short_b(T0)), config, 252.0)

    def decide(calls: Any, has_bar: np.ndarray = BOTH) -> StepResult:
        returns = np.where(has_bar, 0.0, np.nan)
        return realise(first.state, T1, returns, config, 252.0).decide(bar(T1, calls, returns, has_bar))

    a_calls = (signal(0, "A", T1, 1), signal(1, "A", T1, 1))
    where = f"book step at {T1}: call for B/medium"
    with refused(BookStateError, f"{where} given, but B has no bar then"):
        decide((a_calls, (None, signal(1, "B", T1, -1))), np.array([True, False]))
    with refused(BookStateError, f"{where} is dated {T2}, after the bar (look-ahead)"):
        decide((a_calls, (signal(0, "B", T1, -1), signal(1, "B", T2, -1))))
    with refused(BookStateError, f"{where} is A/medium's"):
        decide((a_calls, (signal(0, "B", T1, -1), signal(1, "A", T1, -1))))
    with refused(BookStateError, f"{where} is B/short's"):
        decide((a_calls, (signal(0, "B", T1, -1), signal(0, "B", T1, -1))))
    # a call made before the bar (a model that has not called since) is taken
    earlier = decide((a_calls, (signal(0, "B", T0, -1), signal(1, "B", T1, -1))))
    np.testing.assert_array_equal(earlier.decisions.positions, [0.5, -0.5])


# -- reading, coordinating and holding the calls -----------------------------------------------------------


def test_each_call_is_read_into_its_model_and_symbol() -> None:
    config = quiet()
    calls = ((signal(0, "A", T0, 1, 0.5, 0.75, vol=0.015625, score=0.25),
              signal(1, "A", T0, -1, 0.25, 0.25, vol=0.046875, score=-0.5)),
             (None, signal(1, "B", T0, 1, 1.0, 0.5, vol=0.0625, score=0.75)))
    result = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, calls), config, 252.0)
    st = result.state
    np.testing.assert_array_equal(st.unmanaged, [[0.5, 0.0], [-0.25, 1.0]])  # direction x size
    np.testing.assert_array_equal(result.decisions.unmanaged, st.unmanaged)
    np.testing.assert_array_equal(st.scores, [[0.25, np.nan], [-0.5, 0.75]])
    np.testing.assert_array_equal(st.vol, [0.03125, 0.0625])  # the median of the models' forecasts
    # harmony |sum a c d| / sum a c |d|: A (1/2 x 3/4 - 1/2 x 1/4) / (1/2) = 1/2; B one model: 1
    np.testing.assert_array_equal(result.decisions.harmony, [0.5, 1.0])
    # sleeve 1/2 x allocation 1/2 x direction x size; A's sides partly cancel: x |1/8 - 1/16| / (1/8 + 1/16) = 1/3
    np.testing.assert_allclose(st.scheduled, [[0.125 / 3, 0.0], [-0.0625 / 3, 0.25]], rtol=1e-15)


def test_the_calls_are_aligned_resolved_and_scheduled_within_each_symbols_budget() -> None:
    # budget: max_trade_per_bar 1/2 x sleeve 1/2 = 1/4 per symbol, half of it where liquidity is thin (B)
    config = quiet(harmony_amplification=0.5, max_trade_per_bar=0.5, conflict_strategy="confidence",
                   max_timeframe_exposure=1.0)
    features = np.array([[np.nan, np.nan, 0.25, np.nan], [np.nan, np.nan, 1.0, np.nan]])
    calls = ((signal(0, "A", T0, 1), signal(1, "A", T0, 1)),
             (signal(0, "B", T0, 1, 1.0, 0.125), signal(1, "B", T0, -1, 0.5, 1.0)))
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, calls, features=features),
                 config, 252.0)
    # A: both agree, harmony 1, breadth 1: each asks 1/4 x 1.5 = 3/8; the short model (rank 0) fills the thin budget
    # B: asks 1/4 and -1/8, harmony |1/16 - 1/2| / (9/16) = 7/9, no amplification (breadth 0); confidence: the
    # short side weighs 1/8 x 1 against 1/4 x 1/8 and keeps its -1/8 (at most the net 1/8), within B's budget
    np.testing.assert_array_equal(first.decisions.contributions, [[0.125, 0.0], [0.0, -0.125]])
    np.testing.assert_array_equal(first.state.scheduled, first.decisions.contributions)
    np.testing.assert_allclose(first.decisions.harmony, [1.0, 7 / 9], rtol=1e-15)
    assert events_of(first, "conflicts") == [OrchestrationEvent(
        timestamp=T0, component="conflicts", kind="conflict", rule="confidence", symbol="B", value=0.125,
        threshold=0.125, detail={"long": 0.25, "short": 0.125, "net_before": 0.125, "net_after": -0.125,
                                 "winner": -1.0})]
    deferred = [(e.timestamp, e.symbol, e.model, e.value, e.threshold, e.detail["requested"], e.detail["deferred"])
                for e in events_of(first, "scheduler")]
    assert deferred == [(T0, "A", "short", 0.125, 0.125, 0.375, 0.25), (T0, "A", "medium", 0.0, 0.125, 0.375, 0.375)]
    # the next bar continues from the scheduled legs: A's short model takes another 1/8
    second = step(first.state, bar(T1, tuple(tuple(replace_time(c, T1) for c in row) for row in calls),
                                   features=features), config, 252.0)
    np.testing.assert_array_equal(second.decisions.contributions, [[0.25, 0.0], [0.0, -0.125]])


def replace_time(call: TimeframeSignal, when: pd.Timestamp) -> TimeframeSignal:
    return TimeframeSignal(call.model, call.symbol, when, call.direction, call.size, call.confidence,
                           call.expected_holding, call.min_holding, call.max_holding, call.vol_forecast, call.score)


def test_the_holding_discipline_holds_a_young_call_and_records_it() -> None:
    config = quiet(holding_discipline=True, conflict_strategy="hedge")  # the medium model holds for 5 bars
    first_calls = ((signal(0, "A", T0, 1), signal(1, "A", T0, 1, 0.5, 0.75)), (None, None))
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, first_calls), config, 252.0)
    before = first.state.to_json()
    reversals = bar(T1, ((signal(0, "A", T1, -1), signal(1, "A", T1, -1, 1.0, 0.25)), (None, None)))
    second = step(first.state, reversals, config, 252.0)
    assert first.state.to_json() == before  # the step wrote A's new harmony, 1/7, into its own copy
    np.testing.assert_allclose(second.state.harmony, [1 / 7, 0.0], rtol=1e-15)
    # the short model (1 bar) reverses; the medium one's reversal after 1 bar is read as its long call of T0
    assert events_of(second, "holding") == [OrchestrationEvent(
        timestamp=T1, component="holding", kind="call_held", rule="min_holding", symbol="A", model="medium",
        value=1.0, threshold=-1.0, detail={"own_direction": -1.0, "held_direction": 1.0})]
    np.testing.assert_array_equal(second.state.unmanaged, [[-1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_array_equal(second.decisions.contributions, [[-0.25, 0.0], [0.125, 0.0]])  # hedged legs
    holding = second.state.holding
    np.testing.assert_array_equal(holding.direction, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(holding.age, [[1, 2], [2, 2]])  # B: flat for 2 bars
    np.testing.assert_array_equal(holding.size, [[1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_array_equal(holding.confidence, [[1.0, 0.0], [0.75, 0.0]])
    # without the discipline both reversals go through, and the clocks are not kept
    off = quiet(conflict_strategy="hedge")
    unheld = step(step(initial_state(SYMBOLS, MODELS, SPECS, off, 252.0), bar(T0, first_calls), off, 252.0).state,
                  reversals, off, 252.0)
    assert events_of(unheld, "holding") == []
    np.testing.assert_array_equal(unheld.state.unmanaged, [[-1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(unheld.state.holding.age, np.zeros((2, 2)))


# -- the regime, the reallocation, the feedback ------------------------------------------------------------


def test_the_regime_is_read_from_the_symbols_with_a_bar_and_a_change_is_recorded() -> None:
    config = quiet()
    state = initial_state(SYMBOLS, MODELS, SPECS, config, 252.0)
    # trend strength, volatility ratio, volume ratio: A and B's means give range, low, normal
    both = np.array([[2.0, 0.5, 1.0, np.nan], [0.0, 0.5, 1.0, np.nan]])
    first = step(state, bar(T0, ((None, None), (None, None)), features=both), config, 252.0)
    assert first.decisions.regime == first.state.regime == Regime("range", "low", "normal")
    assert events_of(first, "regime") == []
    # B has no bar: A's own features give trend, high, thin (with B's: range, low, normal again)
    a_alone = np.array([[2.0, 2.0, 0.25, np.nan], [0.0, 0.5, 1.0, np.nan]])
    second = step(first.state, bar(T1, ((None, None), (None, None)), (0.0, np.nan), np.array([True, False]),
                                   a_alone), config, 252.0)
    assert second.decisions.regime == second.state.regime == Regime("trend", "high", "thin")
    assert events_of(second, "regime") == [OrchestrationEvent(
        timestamp=T1, component="regime", kind="regime_change", rule="trend/high",
        detail={"from": "range/low/normal", "to": "trend/high/thin"})]


def test_capital_is_reallocated_after_the_warmup_and_then_every_few_bars() -> None:
    # one symbol: the short model long, the medium one short; A rises 1% or 2% a bar, so the short model's Sharpe
    # is far above the medium one's and the target is at the bounds, 3/4 and 1/4; each update moves 1/8
    config = quiet(warmup_bars=2, allocation_update_every=2, min_allocation=0.25, max_allocation=0.75,
                   max_allocation_change=0.125)
    state = initial_state(("A",), MODELS, SPECS, config, 252.0)
    last_update, allocation, target, changes = [], [], [], []
    for t, r in zip(TIMES, (np.nan, 0.01, 0.02, 0.01, 0.02, 0.01), strict=True):
        inputs = BarInputs(t, ("A",), MODELS, np.array([True]), np.array([r]), np.full((1, 4), np.nan),
                           ((signal(0, "A", t, 1), signal(1, "A", t, -1)),))
        result = step(state, inputs, config, 252.0)
        state = result.state
        last_update.append(state.last_update)
        allocation.append(result.decisions.allocation.tolist())
        target.append(result.decisions.target.tolist())
        changes += [(e.timestamp, e.model, e.value, e.threshold, e.detail["previous"], e.detail["target"])
                    for e in events_of(result, "allocation")]
    # bars of realised returns seen: 0, 1, 2 (warm: update), 3, 4 (2 bars later: update), 5
    assert last_update == [None, None, 2, 2, 4, 4]
    assert allocation == [[0.5, 0.5]] * 2 + [[0.625, 0.375]] * 2 + [[0.75, 0.25]] * 2
    assert target == [[0.5, 0.5]] * 2 + [[0.75, 0.25]] * 4
    t2, t4 = TIMES[2], TIMES[4]
    assert changes == [(t2, "short", 0.625, 0.125, 0.5, 0.75), (t2, "medium", 0.375, 0.125, 0.5, 0.25),
                       (t4, "short", 0.75, 0.125, 0.625, 0.75), (t4, "medium", 0.25, 0.125, 0.375, 0.25)]
    assert state.allocation.tolist() == [0.75, 0.25]


def test_each_model_is_told_its_position_return_share_harmony_and_sharpe_once_a_bar_is_realised() -> None:
    # half-life 1 bar (decay 1/2), 4 bars a year; hedged legs, so each model keeps its own contribution
    config = quiet(performance_half_life=1, conflict_strategy="hedge")
    calls = ((signal(0, "A", T0, 1, 1.0, 0.75), signal(1, "A", T0, -1, 0.5, 0.25)),
             (signal(0, "B", T0, 1, 0.5), signal(1, "B", T0, 1, 1.0)))
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 4.0), bar(T0, calls), config, 4.0)
    assert first.decisions.feedback == ()  # nothing was held before the first bar
    assert first.decisions.returns.tolist() == [0.0] * 6  # the four books' returns, then each model's
    later = tuple(tuple(replace_time(c, T1) for c in row) for row in calls)
    second = step(first.state, bar(T1, later, (0.0, 0.0)), config, 4.0)
    np.testing.assert_array_equal(second.state.final, [[0.25, 0.125], [-0.125, 0.25]])
    np.testing.assert_array_equal(second.state.harmony, [0.5, 1.0])
    assert [f.ew_sharpe for f in second.decisions.feedback] == [0.0] * 4  # one bar seen
    realised = realise(second.state, T2, np.array([0.5, -0.125]), config, 4.0)
    told = realised.feedback
    # (symbol, model, position taken, own position, return, pnl, allocation, harmony)
    assert [(f.timestamp, f.symbol, f.model, f.position_taken, f.standalone_position, f.realised_return, f.pnl,
             f.allocation, f.harmony) for f in told] == [
        (T2, "A", "short", 0.25, 1.0, 0.5, 0.125, 0.5, 0.5),
        (T2, "A", "medium", -0.125, -0.5, 0.5, -0.0625, 0.5, 0.5),
        (T2, "B", "short", 0.125, 0.5, -0.125, -0.015625, 0.5, 1.0),
        (T2, "B", "medium", 0.25, 1.0, -0.125, -0.03125, 0.5, 1.0),
    ]
    # each model's returns: 0, then sleeve 1/2 x (own position . returns): short +7/32, medium -3/16; with weights
    # 1/2, 1: mean x/1.5, variance x^2/1.5 - (x/1.5)^2 = 2x^2/9, so Sharpe sqrt(2) sign(x) x sqrt(4)
    sharpe = 2 * math.sqrt(2)
    assert [f.ew_sharpe for f in told] == pytest.approx([sharpe, -sharpe, sharpe, -sharpe], rel=1e-12)
    decided = realised.decide(bar(T2, tuple(tuple(replace_time(c, T2) for c in row) for row in calls),
                                  (0.5, -0.125)))
    assert decided.decisions.feedback == told
    np.testing.assert_array_equal(decided.decisions.returns[4:], [0.21875, -0.1875])
    # A without a bar: only B's return is told
    after = realise(decided.state, T3, np.array([np.nan, 0.25]), config, 4.0).feedback
    assert [(f.symbol, f.model, f.realised_return) for f in after] == [("B", "short", 0.25), ("B", "medium", 0.25)]


# -- the new state and the decisions -----------------------------------------------------------------------


def test_a_step_leaves_its_state_as_it_was_and_writes_the_bar_into_a_new_one() -> None:
    config = quiet(max_gross_exposure=0.25)
    start = initial_state(SYMBOLS, MODELS, SPECS, config, 252.0)
    given = {"online": [1, 2]}
    first = step(start, bar(T0, long_a_short_b(T0), model_state=given), config, 252.0)
    given["online"].append(3)  # the state holds its own copy
    before = first.state.to_json()
    second = step(first.state, bar(T1, (long_a_short_b(T1)[0], (None, None)), (0.25, np.nan),
                                   np.array([True, False]), model_state=None), config, 252.0)
    assert first.state.to_json() == before
    st = second.state
    # and shares no array with it (no reallocation and no holding discipline here: the target and the holding
    # clocks are carried over unchanged, as copies)
    old, new = arrays_of(first.state), arrays_of(st)
    assert len(old) > 25 and len(new) > 25
    assert [(a, b) for a, x in old.items() for b, y in new.items() if np.shares_memory(x, y)] == []
    assert (st.bar_time, st.bars, first.state.bars, second.decisions.timestamp) == (T1, 2, 1, T1)
    np.testing.assert_array_equal(st.vol, [0.01, 0.01])  # B, without a bar, keeps its forecast
    assert st.model_state == {"online": [1, 2]}  # None keeps the state's
    third = step(st, bar(T2, long_a_short_b(T2), model_state={"online": [3]}), config, 252.0)
    assert (third.state.model_state, st.model_state) == ({"online": [3]}, {"online": [1, 2]})
    # each model asks 1/4 per symbol; the gross limit 1/4 of 1 scales the book by 1/4 (then B, without a bar,
    # keeps its -1/8 and leaves A 1/8 of the limit)
    np.testing.assert_allclose(first.decisions.positions, [0.125, -0.125], rtol=1e-15)
    np.testing.assert_allclose(second.decisions.positions, [0.125, -0.125], rtol=1e-15)
    # the decisions are copies: harmony 0 for B (no bar) while the state keeps its harmony 1
    np.testing.assert_array_equal(second.decisions.harmony, [1.0, 0.0])
    np.testing.assert_array_equal(st.harmony, [1.0, 1.0])
    for name in ("contributions", "unmanaged", "allocation", "target"):
        assert not np.shares_memory(getattr(second.decisions, name), getattr(st, {"contributions": "final"}.get(
            name, name))), name
    # the gross limit binds from the first bar: activated once, and the new state carries it
    assert [(e.timestamp, e.kind, e.rule) for e in events_of(first, "exposure")] == [
        (T0, "risk_limit_activated", "gross")]
    assert events_of(second, "exposure") == []
    assert st.active_limits == (("exposure", "gross", "", ""),)
    # what the components hold after the bar: A returned 1/8 x 1/4 (B had no bar)
    assert st.tracker.returns.count.tolist() == [1, 1]
    assert (st.correlation.models.filled, st.correlation.assets.filled) == (1, 1)
    np.testing.assert_array_equal(st.correlation.assets.rows[0], [0.25, np.nan])
    assert st.defender.equity == 1.0 + 0.125 * 0.25


def test_a_symbol_s_own_short_limit_holds_in_the_step() -> None:
    config = quiet(max_asset_short_exposure={"B": 0.0})  # B long or flat
    result = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0), bar(T0, long_a_short_b(T0)), config, 252.0)
    np.testing.assert_array_equal(result.decisions.positions, [0.5, 0.0])


def test_the_allocation_reads_the_models_sharpe_in_the_current_regime_shrunk_towards_the_overall_one() -> None:
    # one symbol; the short model long, the medium one short; half-life 1 bar, 4 bars a year, a prior of 1 bar,
    # no bounds and no change limit: the allocation is the softmax of the scores
    config = quiet(performance_half_life=1, regime_prior_bars=1, warmup_bars=2, allocation_update_every=1,
                   min_allocation=0.0, max_allocation=1.0, max_allocation_change=1.0)
    state = initial_state(("A",), MODELS, SPECS, config, 4.0)
    regimes = []
    for t, r, trend in ((T0, np.nan, 0.0), (T1, 0.0, 2.0), (T2, 0.5, 2.0)):
        inputs = BarInputs(t, ("A",), MODELS, np.array([True]), np.array([r]), np.array([[trend, 1.0, 1.0, np.nan]]),
                           ((signal(0, "A", t, 1), signal(1, "A", t, -1)),))
        result = step(state, inputs, config, 4.0)
        state = result.state
        regimes.append(result.decisions.regime.key)
    assert regimes == ["range/medium", "trend/medium", "trend/medium"]
    # the returns 0 (taken in range) and +-1/2 (taken in the trend): overall Sharpe +-2 sqrt(2) (see the feedback
    # test); in the trend one bar, so its own Sharpe is 0, with weight 1 / (1 + 1): scores +-sqrt(2)
    up = 1.0 / (1.0 + math.exp(-2.0 * math.sqrt(2.0)))
    np.testing.assert_allclose(result.decisions.target, [up, 1.0 - up], rtol=1e-12)
    np.testing.assert_allclose(result.decisions.allocation, [up, 1.0 - up], rtol=1e-12)
    assert [e.detail["score"] for e in events_of(result, "allocation")] == pytest.approx(
        [math.sqrt(2.0), -math.sqrt(2.0)], rel=1e-12)


def test_the_allocation_scores_take_off_the_penalty_for_each_model_s_correlation_with_the_others() -> None:
    # the short model long A; the medium one long A and B: its returns 0, 1/8, 1/8 against the short model's 0, 0,
    # 1/8 (A: 0, 0, 1/4; B: 0, 1/4, 0; sleeve 1/2); half-life 1 bar, 4 bars a year, a 6-bar correlation window
    config = quiet(performance_half_life=1, warmup_bars=3, correlation_window=6,
                   min_allocation=0.0, max_allocation=1.0, max_allocation_change=1.0)
    state = initial_state(SYMBOLS, MODELS, SPECS, config, 4.0)
    for t, returns in zip(TIMES, ((np.nan, np.nan), (0.0, 0.0), (0.0, 0.25), (0.25, 0.0)), strict=False):
        calls = ((signal(0, "A", t, 1), signal(1, "A", t, 1)), (None, signal(1, "B", t, 1)))
        result = step(state, bar(t, calls, returns), config, 4.0)
        state = result.state
    # Sharpe with weights 1/4, 1/2, 1: (0, 0, 1) gives 2 / sqrt(3), (0, 1, 1) sqrt(6), times sqrt(4); their
    # correlation over the three bars is 1/2, so each score loses 0.5 x 1/2
    scores = [4 / math.sqrt(3) - 0.25, 2 * math.sqrt(6) - 0.25]
    assert [e.detail["score"] for e in events_of(result, "allocation")] == pytest.approx(scores, rel=1e-12)
