"""Holding discipline (seed 004 section 4): a model's call stands for its minimum holding period."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signal_engine.errors import ConfigError
from signal_engine.orchestration import OrchestrationConfig, orchestrate
from signal_engine.orchestration.holding import HoldingDiscipline
from tests.unit.test_orchestration_runner import _config, _market, assert_book_limits


def _walk(directions: list[int], min_holding: int, bars: list[bool] | None = None) -> tuple[list[float], list[bool]]:
    """One model on one symbol: the directions after the discipline, and where it overruled the model."""
    discipline = HoldingDiscipline(np.array([min_holding]), 1)
    out, held = [], []
    for t, d in enumerate(directions):
        calls = {"direction": np.array([[float(d)]]), "size": np.array([[0.1 * (t + 1)]]),
                 "confidence": np.array([[0.5]])}
        bar = np.array([True if bars is None else bars[t]])
        result = discipline.apply(calls, bar)
        out.append(float(result.calls["direction"][0, 0]))
        held.append(bool(result.held[0, 0]))
    return out, held


def test_an_exit_or_reversal_waits_for_the_minimum_holding_period() -> None:
    out, held = _walk([1, -1, 0, 0, -1, 1, 1, 0], min_holding=3)
    assert out == [1, 1, 1, 0, -1, -1, -1, 0]
    assert held == [False, True, True, False, False, True, True, False]


def test_a_held_call_keeps_the_size_of_its_last_own_call() -> None:
    discipline = HoldingDiscipline(np.array([4]), 1)
    discipline.apply({"direction": np.array([[1.0]]), "size": np.array([[0.3]]), "confidence": np.array([[0.7]])},
                     np.array([True]))
    after = discipline.apply({"direction": np.array([[0.0]]), "size": np.array([[0.0]]),
                              "confidence": np.array([[0.1]])}, np.array([True]))
    assert after.calls["direction"][0, 0] == 1.0
    assert after.calls["size"][0, 0] == pytest.approx(0.3)
    assert after.calls["confidence"][0, 0] == pytest.approx(0.7)


def test_bars_a_symbol_does_not_have_do_not_count_towards_the_holding_period() -> None:
    # rows without a bar are not the symbol's calls (the runner never reads them) and pass untouched
    out, held = _walk([1, -1, -1, -1, -1], min_holding=2, bars=[True, False, False, True, True])
    assert out == [1, -1, -1, 1, -1]  # bar 3 is only its 2nd own bar: still held; bar 4 lets it go
    assert held == [False, False, False, True, False]


def test_the_minimum_holding_period_must_be_whole_bars() -> None:
    with pytest.raises(ValueError, match="min_holding"):
        HoldingDiscipline(np.array([0, 3]), 2)
    with pytest.raises(ConfigError, match="'holding_discipline' must be true or false"):
        OrchestrationConfig(holding_discipline="yes")  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=60), st.integers(min_value=1, max_value=8))
def test_no_direction_is_left_sooner_than_its_minimum_and_entries_are_never_delayed(
    directions: list[int], min_holding: int
) -> None:
    out, held = _walk(directions, min_holding)
    if min_holding == 1:
        assert out == [float(d) for d in directions] and not any(held)
    runs: list[tuple[float, int]] = []
    for value in out:
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    for value, length in runs[:-1]:
        assert value == 0.0 or length >= min_holding
    previous = 0.0
    for own, kept in zip(directions, out, strict=True):
        if previous == 0.0:
            assert kept == own  # from flat, the model's call goes through at once
        assert kept == own or kept == previous  # the discipline only ever keeps what was held
        previous = kept


def test_the_orchestrator_holds_calls_keeps_every_limit_and_records_each_hold() -> None:
    signals, closes = _market()
    config = _config(holding_discipline=True)
    held = orchestrate(signals, closes, config, 252.0)
    free = orchestrate(signals, closes, _config(), 252.0)
    assert_book_limits(held, config)
    events = held.events[held.events["kind"] == "call_held"]
    assert len(events) > 0 and set(events["model"]) <= {"medium", "long"}  # 1- and 5-bar models: no minimum
    assert set(events["component"]) == {"holding"}
    for symbol in held.symbols:
        for model in ("medium", "long"):
            flips_held = np.count_nonzero(np.diff(np.sign(held.unmanaged[symbol][model].to_numpy())))
            flips_free = np.count_nonzero(np.diff(np.sign(free.unmanaged[symbol][model].to_numpy())))
            assert flips_held <= flips_free
        for model in ("scalping", "short"):
            pd.testing.assert_series_equal(held.unmanaged[symbol][model], free.unmanaged[symbol][model])
    assert not (free.events["kind"] == "call_held").any()
