"""The unified risk manager and the drawdown defender against values worked out by hand (issue 25's mutation pass
of ``orchestration/risk.py`` and ``orchestration/drawdown.py``).

Values are binary fractions, so the scales, the limits met exactly and the tiers' boundaries are exact in floating
point; the few ratios that are not binary fractions are written as the fraction worked out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from signal_engine.orchestration import OrchestrationConfig
from signal_engine.orchestration.drawdown import DrawdownDefender, RollingMax, drawdown_scale
from signal_engine.orchestration.exposure import ExposureLimits
from signal_engine.orchestration.risk import (
    RISK_COMPONENTS,
    UnifiedRiskManager,
    book_vol_forecast,
    portfolio_volatility,
    volatility_scale,
)
from signal_engine.orchestration.state import DefenderState

# -- drawdown scale: 1 to 1/8, linear to 1/2 at 3/8, 1/2 up to 5/8, 1/4 beyond ---------------------------------
TIERS = {"start": 0.125, "limit": 0.375, "floor": 0.5, "emergency": 0.625, "emergency_scale": 0.25}


@pytest.mark.parametrize(("depth", "expected"), [
    (-0.25, 1.0),  # above the peak: 1 - 2 x (-3/8) = 7/4, capped at 1
    (0.0, 1.0),  # 1 - 2 x (0 - 1/8) = 5/4, capped at 1
    (0.125, 1.0),  # at the start: 1 - 0
    (0.1875, 0.875),  # 1 - (1 - 1/2) x (3/16 - 1/8) / (3/8 - 1/8) = 1 - 1/2 x 1/4
    (0.25, 0.75),  # 1 - 1/2 x 1/2
    (0.375, 0.5),  # at the limit: the floor
    (0.5, 0.5),  # 1 - 1/2 x 3/2 = 1/4, held at the floor
    (0.625, 0.5),  # at the emergency depth: still the floor
    (0.640625, 0.25),  # 5/8 + 1/64: beyond it, the emergency scale
    (1.0, 0.25),
])
def test_drawdown_scale_tiers_by_hand(depth: float, expected: float) -> None:
    assert drawdown_scale(depth, **TIERS) == expected


def test_drawdown_scale_of_an_array_is_per_depth() -> None:
    got = drawdown_scale(np.array([0.0, 0.25, 0.5, 1.0]), **TIERS)
    np.testing.assert_array_equal(got, [1.0, 0.75, 0.5, 0.25])


# -- rolling maximum -----------------------------------------------------------------------------------------------


def test_rolling_max_of_all_values_keeps_only_the_last_of_equal_highs() -> None:
    peaks = RollingMax(0)
    assert [peaks.push(v) for v in (1.0, 3.0, 2.0, 3.0)] == [1.0, 3.0, 3.0, 3.0]
    assert peaks.pushed == 4
    assert peaks.candidates == [(3, 3.0)]  # the later 3 replaces the earlier one (and the 2 below it)


def test_rolling_max_of_three_forgets_a_high_three_pushes_later() -> None:
    peaks = RollingMax(3)
    # windows: [4] [4 2] [4 2 1] [2 1 1] [1 1 .5]
    assert [peaks.push(v) for v in (4.0, 2.0, 1.0, 1.0, 0.5)] == [4.0, 4.0, 4.0, 2.0, 1.0]
    assert peaks.pushed == 5
    assert peaks.candidates == [(3, 1.0), (4, 0.5)]


def test_a_restored_rolling_max_continues_as_the_original() -> None:
    original = RollingMax(3)
    for v in (4.0, 2.0, 1.0, 1.0, 0.5):
        original.push(v)
    restored = RollingMax.restored(3, 5, [(3, 1), (4, 0.5)])  # as read back from JSON: a whole-number value
    assert restored.pushed == 5 and restored.candidates == [(3, 1.0), (4, 0.5)]
    assert [type(v) for _, v in restored.candidates] == [float, float]
    assert [type(i) for i, _ in RollingMax.restored(3, 5, [(3.0, 1.0)]).candidates] == [int]  # type: ignore[list-item]
    # windows: [1 .5 .25] keeps the 1 pushed third; [.5 .25 .25] forgets it
    assert [restored.push(v) for v in (0.25, 0.25)] == [original.push(v) for v in (0.25, 0.25)] == [1.0, 0.5]


# -- drawdown defender ---------------------------------------------------------------------------------------------


def defended(lookback: int = 0, **settings: Any) -> OrchestrationConfig:
    """The tiers above as a config (``emergency_scale`` 1/4 so the emergency is distinct from flat)."""
    return OrchestrationConfig(**{"drawdown_start": 0.125, "drawdown_limit": 0.375, "drawdown_floor": 0.5,
                                  "emergency_drawdown": 0.625, "emergency_scale": 0.25,
                                  "drawdown_lookback": lookback, **settings})


def test_a_new_defender_is_at_its_peak_of_the_starting_capital() -> None:
    defender = DrawdownDefender(defended())
    assert (defender.equity, defender.peak, defender.depth, defender.scale()) == (1.0, 1.0, 0.0, 1.0)
    assert not defender.in_emergency
    assert defender.to_state() == DefenderState(equity=1.0, peak=1.0, pushed=1, candidates=[(0, 1.0)])


def test_the_defender_scales_down_through_its_tiers_and_back_up_as_the_drawdown_recovers() -> None:
    defender = DrawdownDefender(defended())
    seen = []
    for r in (-0.25, -0.5, -0.5, 1.0, 1.0, 0.25, 0.5):
        defender.update(r)
        seen.append((defender.equity, defender.peak, defender.depth, defender.scale(), defender.in_emergency))
    assert seen == [
        (0.75, 1.0, 0.25, 0.75, False),  # 1 x 3/4: linear tier, 1 - 1/2 x (1/4 - 1/8) / (1/4)
        (0.375, 1.0, 0.625, 0.5, False),  # 3/4 x 1/2: exactly the emergency depth is not beyond it, the floor
        (0.1875, 1.0, 0.8125, 0.25, True),  # 3/8 x 1/2: beyond it, the emergency scale
        (0.375, 1.0, 0.625, 0.5, False),  # doubled: back to the floor
        (0.75, 1.0, 0.25, 0.75, False),
        (0.9375, 1.0, 0.0625, 1.0, False),  # 3/4 x 5/4: above the start
        (1.40625, 1.40625, 0.0, 1.0, False),  # 15/16 x 3/2: a new peak
    ]


def test_the_defender_measures_from_the_highest_equity_of_the_lookback_and_the_one_before_it() -> None:
    defender = DrawdownDefender(defended(lookback=2))  # the last 3 equities: this bar's and the 2 before
    peaks = []
    for r in (1.0, -0.5, 0.0, 0.0):
        defender.update(r)
        peaks.append((defender.equity, defender.peak, defender.depth))
    # equities 1, 2, 1, 1, 1: windows [1 2] [1 2 1] [2 1 1] [1 1 1]
    assert peaks == [(2.0, 2.0, 0.0), (1.0, 2.0, 0.5), (1.0, 2.0, 0.5), (1.0, 1.0, 0.0)]
    forever = DrawdownDefender(defended())
    for r in (1.0, -0.5, 0.0, 0.0):
        forever.update(r)
    assert (forever.peak, forever.depth) == (2.0, 0.5)


def test_the_starting_capital_is_in_the_defenders_window_until_it_leaves() -> None:
    defender = DrawdownDefender(defended(lookback=1))  # the last 2 equities
    defender.update(-0.5)
    assert (defender.peak, defender.depth) == (1.0, 0.5)  # window [1 1/2]
    defender.update(0.0)
    assert (defender.peak, defender.depth) == (0.5, 0.0)  # window [1/2 1/2]


def test_a_wiped_out_book_is_fully_drawn_down_even_without_a_positive_peak() -> None:
    defender = DrawdownDefender(defended(lookback=1))
    defender.update(-1.0)
    assert (defender.equity, defender.peak, defender.depth) == (0.0, 1.0, 1.0)  # 1 - 0 / 1
    defender.update(0.5)
    assert (defender.equity, defender.peak, defender.depth) == (0.0, 0.0, 1.0)  # peak 0: depth 1 by definition
    assert defender.in_emergency and defender.scale() == 0.25
    beyond = DrawdownDefender(defended())
    beyond.update(-1.5)  # a loss beyond the capital
    assert (beyond.equity, beyond.depth, beyond.scale()) == (-0.5, 1.5, 0.25)


@pytest.mark.parametrize(("lookback", "depths"), [
    (2, [0.5, 0.0]),  # windows [2 1 1] then [1 1 1]
    (0, [0.5, 0.5]),  # the peak of 2 is kept for ever
])
def test_a_defender_restored_from_its_state_continues_as_the_original(lookback: int, depths: list[float]) -> None:
    original = DrawdownDefender(defended(lookback))
    for r in (1.0, -0.5):  # equities 1, 2, 1
        original.update(r)
    state = original.to_state()
    assert state == DefenderState(equity=1.0, peak=2.0, pushed=3, candidates=[(1, 2.0), (2, 1.0)])
    restored = DrawdownDefender.from_state(defended(lookback), state)
    assert (restored.equity, restored.peak, restored.depth) == (1.0, 2.0, 0.5)
    for r in (0.0, 0.0):
        original.update(r)
        restored.update(r)
        assert restored.to_state() == original.to_state()
    assert [original.depth, restored.depth] == [depths[-1]] * 2
    twice = DrawdownDefender.from_state(defended(lookback), state)
    got = []
    for r in (0.0, 0.0):
        twice.update(r)
        got.append(twice.depth)
    assert got == depths


# -- book volatility --------------------------------------------------------------------------------------------------


def test_portfolio_volatility_by_hand() -> None:
    correlated = np.array([[1.0, 0.5], [0.5, 1.0]])
    # risk per symbol: 1/2 x 1/2, -1/4 x 1 = 1/4, -1/4; 1/16 + 1/16 - 2 x 1/2 x 1/16 = 1/16
    assert portfolio_volatility(np.array([0.5, -0.25]), np.array([0.5, 1.0]), correlated) == 0.25
    # 3 symbols, no correlation: risk 3/16, 1/4, 0 (no forecast: none): sqrt(9/256 + 16/256) = 5/16
    assert portfolio_volatility(np.array([0.375, 0.5, 1.0]), np.array([0.5, 0.5, np.nan]), np.eye(3)) == 0.3125
    # a correlation that is not positive semi-definite: 1/16 + 1/16 - 2 x 2 x 1/16 < 0, read as 0
    assert portfolio_volatility(np.array([0.25, -0.25]), np.ones(2), np.array([[1.0, 2.0], [2.0, 1.0]])) == 0.0


def test_volatility_scale_by_hand() -> None:
    positions, vol = np.array([0.5, -0.25]), np.array([0.5, 1.0])
    correlated = np.array([[1.0, 0.5], [0.5, 1.0]])  # forecast book volatility 1/4 (above)
    assert volatility_scale(positions, vol, correlated, 0.125) == 0.5  # 1/8 over 1/4
    assert volatility_scale(positions, vol, correlated, 0.25) == 1.0  # at the target
    assert volatility_scale(positions, vol, correlated, 0.5) == 1.0  # never levers up
    assert volatility_scale(np.zeros(2), vol, correlated, 0.125) == 1.0  # no risk


def test_book_vol_forecast_is_the_models_median_then_the_realised_then_the_previous() -> None:
    nan = np.nan
    forecasts = np.array([
        # 4 known, 3 known, 2 known, 1 known, none, none, not tradable
        [0.125, 0.5, nan, nan, nan, nan, 0.5],
        [0.375, nan, 0.75, nan, nan, nan, 0.5],
        [0.25, 0.125, nan, 0.0625, nan, nan, nan],
        [0.5, 0.25, 0.25, nan, nan, nan, nan],
    ])
    realised = np.array([8.0, 8.0, 8.0, 8.0, 0.03125, nan, 8.0])
    previous = np.full(7, 0.015625)
    tradable = np.array([True, True, True, True, True, True, False])
    got = book_vol_forecast(forecasts, realised, previous, tradable)
    # medians: (1/4 + 3/8) / 2 = 5/16; 1/4 of (1/8, 1/4, 1/2); (1/4 + 3/4) / 2; 1/16;
    # then the realised 1/32; no realised: the previous 1/64; no bar: the previous
    np.testing.assert_array_equal(got, [0.3125, 0.25, 0.5, 0.0625, 0.03125, 0.015625, 0.015625])
    one_model = book_vol_forecast(np.array([[0.25, nan]]), np.array([8.0, 0.03125]), np.full(2, 0.015625),
                                  np.array([True, True]))
    np.testing.assert_array_equal(one_model, [0.25, 0.03125])  # its forecast, else the realised


# -- unified risk manager ----------------------------------------------------------------------------------------------
PER_YEAR = 64.0  # the annual target over sqrt(64) = 8 is the per-bar target


def loose(**settings: Any) -> OrchestrationConfig:
    """Limits of 8 (none binds) and a per-bar volatility target of 1 unless given."""
    return OrchestrationConfig(**{"max_gross_exposure": 8.0, "max_net_exposure": 8.0, "max_asset_exposure": 8.0,
                                  "max_long_exposure": 8.0, "max_short_exposure": 8.0,
                                  "max_timeframe_exposure": 8.0, "target_vol_annual": 8.0, **settings})


def apply(config: OrchestrationConfig, contributions: list[list[float]], *, drawdown: float = 1.0,
          correlation: tuple[float, ...] = (1.0, 1.0), vol: tuple[float, ...] = (0.0, 0.0),
          **where: Any) -> Any:
    """The manager's decision on 2 symbols, uncorrelated."""
    manager = UnifiedRiskManager(config, PER_YEAR, ("A", "B"))
    return manager.apply(np.array(contributions), drawdown_scale=drawdown, correlation_scales=np.array(correlation),
                         vol_forecast=np.array(vol), asset_correlation=np.eye(2), **where)


def test_the_manager_reads_its_limits_and_a_per_bar_target_from_the_config() -> None:
    config = loose(target_vol_annual=1.25, max_asset_short_exposure={"B": 0.25})
    manager = UnifiedRiskManager(config, PER_YEAR, ("A", "B"))
    assert manager.target_per_bar == 0.15625  # 5/4 / 8
    assert manager.limits == ExposureLimits(8.0, 8.0, 8.0, 8.0, 8.0, 8.0, (8.0, 0.25))
    assert UnifiedRiskManager(config, PER_YEAR).limits.asset_short is None  # no symbols: no per-symbol limit


def test_the_components_are_named_in_order() -> None:
    assert RISK_COMPONENTS == ("drawdown", "volatility", "correlation", "timeframe", "exposure", "final")
    assert tuple(apply(loose(), [[0.25, 0.0], [0.0, 0.25]]).components) == RISK_COMPONENTS


def test_nothing_binds_within_every_limit() -> None:
    decision = apply(loose(), [[0.25, -0.5], [0.5, 0.0]], vol=(0.5, 0.5))  # book volatility 5/16 < 1
    np.testing.assert_array_equal(decision.contributions, [[0.25, -0.5], [0.5, 0.0]])
    np.testing.assert_array_equal(decision.positions, [0.75, -0.5])
    assert decision.components == dict.fromkeys(RISK_COMPONENTS, 1.0)


def test_the_volatility_target_scales_every_model_by_the_whole_books_forecast() -> None:
    # book 3/8, 1/2 (per model 3/4, 1/8) at 1/2 volatility each: risk 3/16, 1/4, book volatility 5/16
    decision = apply(loose(target_vol_annual=1.25), [[0.25, 0.5], [0.125, 0.0]], vol=(0.5, 0.5))
    # target 5/32 over 5/16
    np.testing.assert_array_equal(decision.model_scale, [0.5, 0.5])
    np.testing.assert_array_equal(decision.contributions, [[0.125, 0.25], [0.0625, 0.0]])
    np.testing.assert_array_equal(decision.positions, [0.1875, 0.25])
    assert decision.components == {"drawdown": 1.0, "volatility": 0.5, "correlation": 1.0, "timeframe": 1.0,
                                   "exposure": 1.0, "final": 0.5}


@pytest.mark.parametrize(("drawdown", "scale"), [(0.25, 0.25), (0.75, 0.5)])
def test_each_model_takes_the_lower_of_the_drawdown_and_volatility_scales(drawdown: float, scale: float) -> None:
    decision = apply(loose(target_vol_annual=1.25), [[0.25, 0.5], [0.125, 0.0]], drawdown=drawdown, vol=(0.5, 0.5))
    np.testing.assert_array_equal(decision.model_scale, [scale, scale])  # volatility 1/2 (above)
    np.testing.assert_array_equal(decision.contributions, np.array([[0.25, 0.5], [0.125, 0.0]]) * scale)
    assert (decision.components["drawdown"], decision.components["volatility"]) == (drawdown, 0.5)
    assert decision.components["final"] == scale


def test_the_correlation_and_timeframe_scales_act_per_model() -> None:
    # model 0: gross 1 against a timeframe limit of 1/2: 1/2; model 1: gross 3/8, within it, correlation 1/4
    decision = apply(loose(max_timeframe_exposure=0.5), [[0.5, -0.5], [0.25, 0.125]], correlation=(1.0, 0.25))
    np.testing.assert_array_equal(decision.timeframe, [0.5, 1.0])
    np.testing.assert_array_equal(decision.correlation, [1.0, 0.25])
    np.testing.assert_array_equal(decision.model_scale, [0.5, 0.25])
    np.testing.assert_array_equal(decision.contributions, [[0.25, -0.25], [0.0625, 0.03125]])
    components = decision.components
    assert (components["correlation"], components["timeframe"], components["exposure"]) == (0.25, 0.5, 1.0)
    assert components["final"] == pytest.approx(19 / 44)  # (1/2 + 3/32) / (1 + 3/8)


def test_the_asset_limit_scales_only_its_symbol_after_the_model_scales() -> None:
    # drawdown 1/2: positions 1/2, 0 against an asset limit of 1/4: A's legs halved
    decision = apply(loose(max_asset_exposure=0.25), [[0.5, -0.5], [0.5, 0.5]], drawdown=0.5)
    np.testing.assert_array_equal(decision.book.per_symbol, [0.5, 1.0])
    assert decision.book.binding == {"asset": True, "long": False, "short": False, "gross": False, "net": False}
    np.testing.assert_array_equal(decision.contributions, [[0.125, -0.25], [0.125, 0.25]])
    assert decision.components["exposure"] == 0.75  # gross 3/4 of the model-scaled 1
    assert decision.components["final"] == 0.375  # of the proposed 2


@pytest.mark.parametrize("limit", ["max_gross_exposure", "max_net_exposure"])
def test_the_gross_or_net_limit_scales_the_whole_book(limit: str) -> None:
    # positions 3/4, -1/4: gross 1 and net 1/2 against a limit of 1/2 and 1/4: both halve the book
    decision = apply(loose(**{limit: 0.5 if limit == "max_gross_exposure" else 0.25}), [[0.5, -0.25], [0.25, 0.0]])
    np.testing.assert_array_equal(decision.contributions, [[0.25, -0.125], [0.125, 0.0]])
    assert decision.book.binding[limit.split("_")[1]]
    assert (decision.components["exposure"], decision.components["final"]) == (0.5, 0.5)


def test_a_symbol_that_cannot_trade_keeps_its_legs_and_its_risk_counts_in_the_volatility_target() -> None:
    # A trades, B keeps its legs 1/2 and -1/4 (the proposed 8s are not read): book 3/4, 1/4;
    # forecasts 1/4, 1: risk 3/16, 1/4, book volatility 5/16 against 5/32
    decision = apply(loose(target_vol_annual=1.25), [[0.5, 8.0], [0.25, -8.0]], vol=(0.25, 1.0),
                     tradable=np.array([True, False]), held=np.array([[0.0, 0.5], [0.0, -0.25]]))
    np.testing.assert_array_equal(decision.contributions, [[0.25, 0.5], [0.125, -0.25]])
    np.testing.assert_array_equal(decision.positions, [0.375, 0.25])
    assert decision.components["volatility"] == 0.5
    assert decision.components["final"] == 0.5  # over A's legs only: 3/8 of 3/4


def test_a_symbol_that_cannot_trade_uses_up_its_share_of_the_book_limits() -> None:
    # B held at 1/2 + 1/4 = 3/4 leaves 1/4 of the gross limit 1 to A's proposed 1/2: A's legs halved
    # (A's held legs are replaced by the proposal: they take no share)
    decision = apply(loose(max_gross_exposure=1.0), [[0.25, 8.0], [0.25, 8.0]],
                     tradable=np.array([True, False]), held=np.array([[0.25, 0.5], [0.25, 0.25]]))
    np.testing.assert_array_equal(decision.contributions, [[0.125, 0.5], [0.125, 0.25]])
    np.testing.assert_array_equal(decision.book.per_symbol, [0.5, 1.0])
    assert (decision.components["exposure"], decision.components["final"]) == (0.5, 0.5)


def test_a_symbol_that_cannot_trade_uses_up_its_share_of_each_models_timeframe_limit() -> None:
    # timeframe limit 3/4: model 0 holds 1/2 of B, room 1/4 for its 1/2 of A; model 1 holds 1/4, room 1/2 for 1/2
    decision = apply(loose(max_timeframe_exposure=0.75), [[0.5, 8.0], [0.5, 8.0]],
                     tradable=np.array([True, False]), held=np.array([[0.0, 0.5], [0.0, 0.25]]))
    np.testing.assert_array_equal(decision.timeframe, [0.5, 1.0])
    np.testing.assert_array_equal(decision.contributions, [[0.25, 0.5], [0.5, 0.25]])
    assert decision.components["timeframe"] == 0.5
    assert decision.components["final"] == 0.75  # 1/4 + 1/2 of A's 1/2 + 1/2 proposed


def test_a_mask_of_ones_and_zeros_reads_as_tradable_or_not() -> None:
    held = np.array([[0.0, 0.5], [0.0, 0.25]])
    as_bool = apply(loose(max_gross_exposure=1.0), [[0.25, 8.0], [0.25, 8.0]], tradable=np.array([True, False]),
                    held=held)
    as_int = apply(loose(max_gross_exposure=1.0), [[0.25, 8.0], [0.25, 8.0]], tradable=np.array([1, 0]), held=held)
    np.testing.assert_array_equal(as_int.contributions, [[0.125, 0.5], [0.125, 0.25]])  # as above
    assert as_int.components == as_bool.components


def test_every_symbol_trades_and_nothing_is_held_unless_given() -> None:
    contributions = [[0.5, -0.25], [0.25, 0.0]]
    given = apply(loose(max_gross_exposure=0.5), contributions, tradable=np.array([True, True]),
                  held=np.zeros((2, 2)))
    default = apply(loose(max_gross_exposure=0.5), contributions)
    np.testing.assert_array_equal(default.contributions, given.contributions)
    np.testing.assert_array_equal(default.contributions, [[0.25, -0.125], [0.125, 0.0]])
    assert default.components == given.components


def test_a_book_with_nothing_proposed_or_no_model_is_scaled_by_1() -> None:
    nothing = apply(loose(), [[0.0, 0.0], [0.0, 0.0]], drawdown=0.5)
    assert nothing.components == {"drawdown": 0.5, "volatility": 1.0, "correlation": 1.0, "timeframe": 1.0,
                                  "exposure": 1.0, "final": 1.0}
    no_model = UnifiedRiskManager(loose(), PER_YEAR).apply(
        np.zeros((0, 2)), drawdown_scale=1.0, correlation_scales=np.zeros(0), vol_forecast=np.ones(2),
        asset_correlation=np.eye(2))
    assert no_model.contributions.shape == (0, 2)
    np.testing.assert_array_equal(no_model.positions, [0.0, 0.0])
    assert no_model.components == dict.fromkeys(RISK_COMPONENTS, 1.0)
