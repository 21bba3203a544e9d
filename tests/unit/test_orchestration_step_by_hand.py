"""Small books stepped over two or three bars by hand (issue 25's mutation pass of ``orchestration/step.py``).

The other step tests compare the step with the batch run, which is its fold: a bug in the step is in both. Here the
returns, positions and costs the step books are worked out by hand, on binary fractions where they are compared
exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.orchestration import OrchestrationConfig, TimeframeSignal
from signal_engine.orchestration.risk import RISK_COMPONENTS
from signal_engine.orchestration.step import BarInputs, initial_state, step
from signal_engine.orchestration.timeframes import TimeframeSpec

SPECS = (TimeframeSpec.from_horizon("short", 0, 5), TimeframeSpec.from_horizon("medium", 1, 20))
MODELS, SYMBOLS = ("short", "medium"), ("A", "B")
T0, T1, T2 = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-04")
NO_FEATURES = np.full((2, 4), np.nan)


def quiet(**settings: Any) -> OrchestrationConfig:
    """No costs, no volatility or correlation scaling unless given: each leg is sleeve x allocation 1/2 x size."""
    return OrchestrationConfig(**{"cost_bps": 0.0, "target_vol_annual": 1.0, "correlation_threshold": 1.0, **settings})


def call(model: int, symbol: str, when: pd.Timestamp, direction: int) -> TimeframeSignal:
    spec = SPECS[model]
    return TimeframeSignal(spec.name, symbol, when, direction, 1.0, 1.0, spec.expected_holding, spec.min_holding,
                           spec.max_holding, vol_forecast=0.01, score=0.5 * direction)


def test_a_symbol_without_a_bar_earns_nothing_on_its_position_and_its_last_trade_is_still_charged() -> None:
    config = OrchestrationConfig(cost_bps=10.0)
    state = initial_state(SYMBOLS, MODELS, SPECS, config, 252.0)
    first = step(state, BarInputs(T0, SYMBOLS, MODELS, np.array([True, True]), np.array([np.nan, np.nan]),
                                  NO_FEATURES, ((call(0, "A", T0, 1), call(1, "A", T0, 1)),
                                                (call(0, "B", T0, -1), call(1, "B", T0, -1)))), config, 252.0)
    # each model: sleeve 1/2 x allocation 1/2 x size 1 per symbol; both agree on each symbol
    np.testing.assert_allclose(first.decisions.contributions, [[0.25, -0.25], [0.25, -0.25]])
    np.testing.assert_array_equal(first.decisions.returns, 0.0)  # nothing held before the first bar
    second = step(first.state, BarInputs(T1, SYMBOLS, MODELS, np.array([True, False]), np.array([0.01, np.nan]),
                                         NO_FEATURES, ((call(0, "A", T1, 1), call(1, "A", T1, 1)), (None, None))),
                  config, 252.0)
    # book: 0.5 x 1% on A, nothing on B (no bar), less 10 bp on the 0.5 + 0.5 traded at T0
    # each model on its own: sleeve 1/2 x (1 x 1% - 10 bp x (1 + 1) traded)
    np.testing.assert_allclose(second.decisions.returns, [0.004] * 6, rtol=0, atol=1e-15)
    np.testing.assert_allclose(second.decisions.positions, [0.5, -0.5])  # B keeps its position
    taken = {(f.symbol, f.model): f for f in second.decisions.feedback}
    assert set(taken) == {("A", "short"), ("A", "medium")}  # only A realised a return
    assert taken["A", "short"].pnl == pytest.approx(0.25 * 0.01)
    np.testing.assert_array_equal(second.state.scores, [[0.5, -0.5], [0.5, -0.5]])  # B keeps its last scores


def test_a_symbol_without_a_bar_keeps_its_position_and_its_share_of_the_gross_limit() -> None:
    config = OrchestrationConfig(max_gross_exposure=0.75)
    state = initial_state(SYMBOLS, MODELS, SPECS, config, 252.0)
    first = step(state, BarInputs(T0, SYMBOLS, MODELS, np.array([True, True]), np.array([np.nan, np.nan]),
                                  NO_FEATURES, ((sized(0, "A", T0, 1, 0.5), sized(1, "A", T0, 1, 0.5)),
                                                (sized(0, "B", T0, -1, 1.0), sized(1, "B", T0, -1, 1.0)))),
                 config, 252.0)
    np.testing.assert_allclose(first.decisions.positions, [0.25, -0.5])  # gross 0.75: at the limit
    second = step(first.state, BarInputs(T1, SYMBOLS, MODELS, np.array([True, False]), np.array([0.01, np.nan]),
                                         NO_FEATURES, ((sized(0, "A", T1, 1, 1.0), sized(1, "A", T1, 1, 1.0)),
                                                       (None, None))), config, 252.0)
    # A asks for 0.5, but B's held -0.5 leaves it 0.75 - 0.5 = 0.25 of the gross limit
    np.testing.assert_allclose(second.decisions.positions, [0.25, -0.5])


def sized(model: int, symbol: str, when: pd.Timestamp, direction: int, size: float) -> TimeframeSignal:
    spec = SPECS[model]
    return TimeframeSignal(spec.name, symbol, when, direction, size, 1.0, spec.expected_holding, spec.min_holding,
                           spec.max_holding, vol_forecast=0.01, score=0.5 * direction)


def test_while_the_defender_scales_the_book_the_undefended_book_keeps_a_symbol_without_a_bar() -> None:
    # drawdown scale 1 - depth (1 at 0, 0.5 at a 50% drawdown)
    config = quiet(drawdown_start=0.0, drawdown_limit=0.5, drawdown_floor=0.5, emergency_drawdown=0.5)
    drawdown = RISK_COMPONENTS.index("drawdown")
    state = initial_state(SYMBOLS, MODELS, SPECS, config, 252.0)
    first = step(state, BarInputs(T0, SYMBOLS, MODELS, np.array([True, True]), np.array([np.nan, np.nan]),
                                  NO_FEATURES, ((call(0, "A", T0, 1), call(1, "A", T0, 1)),
                                                (call(0, "B", T0, -1), call(1, "B", T0, -1)))), config, 252.0)
    np.testing.assert_allclose(first.decisions.positions, [0.5, -0.5])
    second = step(first.state, BarInputs(T1, SYMBOLS, MODELS, np.array([True, False]), np.array([-0.25, np.nan]),
                                         NO_FEATURES, ((call(0, "A", T1, 1), call(1, "A", T1, 1)), (None, None))),
                  config, 252.0)
    # both books lose 0.5 x 25% on A: equity 0.875, a 12.5% drawdown, so the managed book is scaled by 0.875
    np.testing.assert_allclose(second.decisions.returns[:2], [-0.125, -0.125])
    assert second.decisions.risk_scales[drawdown] == 0.875
    np.testing.assert_allclose(second.decisions.positions, [0.5 * 0.875, -0.5])  # B, without a bar, is kept
    third = step(second.state, BarInputs(T2, SYMBOLS, MODELS, np.array([True, True]), np.array([0.0, -0.25]),
                                         NO_FEATURES, ((call(0, "A", T2, 1), call(1, "A", T2, 1)),
                                                       (call(0, "B", T2, -1), call(1, "B", T2, -1)))),
                 config, 252.0)
    # every book, and each model, held B at -0.5 (per model: sleeve 1/2 x -1) through its fall of 25%: +0.125
    np.testing.assert_allclose(third.decisions.returns, [0.125] * 6, rtol=0, atol=1e-15)
    # the undefended equity, 0.875 x 1.125 = 0.984375, is 1.5625% below its peak: scale 0.984375
    assert third.decisions.risk_scales[drawdown] == 0.984375


FLAT = np.array([0.0, 0.0])


def bar_of(when: pd.Timestamp, sizes: tuple[tuple[float, float], tuple[float, float]],
           returns: np.ndarray = FLAT) -> BarInputs:
    """Both symbols have a bar; each model calls A long and B short with the sizes given (per symbol, per model)."""
    return BarInputs(when, SYMBOLS, MODELS, np.array([True, True]), returns, NO_FEATURES,
                     tuple(tuple(sized(k, symbol, when, direction, sizes[j][k]) for k in range(2))
                           for j, (symbol, direction) in enumerate((("A", 1), ("B", -1)))))


def test_the_band_keeps_a_small_top_up_but_trades_one_of_the_band_a_cut_and_a_change_of_legs() -> None:
    config = quiet(no_trade_band=0.5)  # band 0.5 x sleeve 1/2 = 0.25 per symbol
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0),
                 bar_of(T0, ((0.5, 0.5), (0.5, 0.5))), config, 252.0)
    np.testing.assert_array_equal(first.decisions.positions, [0.25, -0.25])
    np.testing.assert_array_equal(first.decisions.unmanaged, [[0.5, -0.5], [0.5, -0.5]])  # direction x size
    second = step(first.state, bar_of(T1, ((0.75, 0.75), (1.0, 1.0))), config, 252.0)
    # A asks for 0.375: a top-up of 0.125 < 0.25, kept at 0.25; B asks for -0.5: 0.25 is not below the band
    np.testing.assert_array_equal(second.decisions.contributions, [[0.125, -0.25], [0.125, -0.25]])
    third = step(second.state, bar_of(T2, ((0.25, 0.75), (0.75, 0.75))), config, 252.0)
    # A: the same 0.25 on other legs (0.0625 + 0.1875) is no top-up; B: the one-sided band trades a cut to -0.375
    np.testing.assert_array_equal(third.decisions.contributions, [[0.0625, -0.1875], [0.1875, -0.1875]])


def test_the_symmetric_band_keeps_a_small_cut_while_the_defender_is_idle_and_trades_it_while_it_acts() -> None:
    # drawdown scale 1 - depth, as above
    config = quiet(no_trade_band=0.5, no_trade_band_cuts=True, drawdown_start=0.0, drawdown_limit=0.5,
                   drawdown_floor=0.5, emergency_drawdown=0.5)
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0),
                 bar_of(T0, ((1.0, 1.0), (1.0, 1.0))), config, 252.0)
    np.testing.assert_array_equal(first.decisions.positions, [0.5, -0.5])
    second = step(first.state, bar_of(T1, ((0.5, 0.5), (0.75, 0.75))), config, 252.0)
    # A: the cut to 0.25 is 0.25, not below the band, and traded; B: the cut to -0.375 (0.125) is kept
    np.testing.assert_array_equal(second.decisions.positions, [0.25, -0.5])
    third = step(second.state, bar_of(T2, ((0.5, 0.5), (0.75, 0.75)), np.array([0.0, 0.125])), config, 252.0)
    # B rose 12.5%: the undefended book (the proposal, B at -0.375, no band) lost 0.375 x 12.5% = 3/64, a drawdown
    # scale of 61/64; B's proposal, -0.375 x 61/64, is a small cut from -0.5, traded since the defender acts
    assert third.decisions.returns[1] == -3 / 64
    np.testing.assert_array_equal(third.decisions.positions, [0.25 * 61 / 64, -0.375 * 61 / 64])


def test_the_band_trades_the_proposal_when_keeping_the_held_legs_would_break_the_net_limit() -> None:
    config = quiet(no_trade_band=0.5, max_net_exposure=0.125)
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0),
                 bar_of(T0, ((0.5, 0.5), (0.5, 0.5))), config, 252.0)
    np.testing.assert_array_equal(first.decisions.positions, [0.25, -0.25])
    second = step(first.state, bar_of(T1, ((1.0, 1.0), (0.75, 0.75))), config, 252.0)
    # proposal A 0.5, B -0.375: net 0.125, at the limit; keeping B's held -0.25 (a top-up of 0.125) gives a net of
    # 0.25, so the band falls back to the proposal
    np.testing.assert_array_equal(second.decisions.positions, [0.5, -0.375])


def test_the_symmetric_band_keeps_a_small_cut_of_a_book_held_at_its_gross_limit() -> None:
    config = quiet(no_trade_band=0.25, no_trade_band_cuts=True)  # one symbol: band 0.25

    def alone(when: pd.Timestamp, size: float) -> BarInputs:
        return BarInputs(when, ("A",), MODELS, np.array([True]), np.array([0.0]), np.full((1, 4), np.nan),
                         ((sized(0, "A", when, 1, size), sized(1, "A", when, 1, size)),))

    first = step(initial_state(("A",), MODELS, SPECS, config, 252.0), alone(T0, 1.0), config, 252.0)
    np.testing.assert_array_equal(first.decisions.positions, [1.0])  # sleeve 1 x (1/2 + 1/2)
    second = step(first.state, alone(T1, 0.875), config, 252.0)
    np.testing.assert_array_equal(second.decisions.positions, [1.0])  # the cut to 0.875 is below the band


def test_each_book_is_charged_the_cost_of_its_own_change_of_position() -> None:
    config = quiet(cost_bps=10.0)
    first = step(initial_state(SYMBOLS, MODELS, SPECS, config, 252.0),
                 bar_of(T0, ((1.0, 1.0), (0.5, 0.5))), config, 252.0)
    second = step(first.state, bar_of(T1, ((0.5, 0.5), (0.5, 0.5))), config, 252.0)
    # 10 bp on the 0.5 + 0.25 bought from flat; each model: sleeve 1/2 x 10 bp x (1 + 0.5)
    np.testing.assert_allclose(second.decisions.returns, [-0.00075] * 6, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(second.decisions.positions, [0.25, -0.25])
    third = step(second.state, bar_of(T2, ((0.5, 0.5), (0.5, 0.5))), config, 252.0)
    # every book cut A from 0.5 to 0.25 and kept B: 10 bp x 0.25; each model: 1/2 x 10 bp x 0.5
    np.testing.assert_allclose(third.decisions.returns, [-0.00025] * 6, rtol=0, atol=1e-15)
