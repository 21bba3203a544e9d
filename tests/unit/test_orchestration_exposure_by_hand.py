"""The exposure monitor's limits, scales and checks against values worked out by hand (issue 25's mutation pass).

Values are binary fractions where a limit is met exactly, so "at the limit" is exact in floating point.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from signal_engine.orchestration import OrchestrationConfig
from signal_engine.orchestration.exposure import (
    ExposureLimits,
    book_scales,
    capped_ratio,
    timeframe_scales,
    within_limits,
)

# every limit met exactly by POSITIONS = [0.5, 0.25, -0.25] from two models
AT_LIMITS = ExposureLimits(gross=1.0, net=0.5, asset=0.5, long=0.75, short=0.25, timeframe=0.5)
CONTRIBUTIONS = np.array([[0.25, 0.25, 0.0], [0.25, 0.0, -0.25]])
OVER = 1.0 / 64  # beyond any tolerance


def test_contributions_exactly_at_every_limit_are_within_them() -> None:
    assert within_limits(CONTRIBUTIONS, AT_LIMITS)
    assert within_limits(CONTRIBUTIONS, AT_LIMITS, tolerance=0.0)  # at a limit is within it
    assert within_limits(np.zeros((0, 3)), AT_LIMITS)  # no model: nothing to break


@pytest.mark.parametrize(("contributions", "changes"), [
    (CONTRIBUTIONS, {"timeframe": 0.5 - OVER}),
    (CONTRIBUTIONS, {"asset": 0.5 - OVER}),
    (CONTRIBUTIONS, {"long": 0.75 - OVER}),
    (CONTRIBUTIONS, {"short": 0.25 - OVER}),
    (CONTRIBUTIONS, {"gross": 1.0 - OVER}),
    (CONTRIBUTIONS, {"net": 0.5 - OVER}),
    (CONTRIBUTIONS, {"asset_short": (0.5, 0.25, 0.25 - OVER)}),  # the third symbol's short side
    (np.array([[0.75, -0.75]]), {"timeframe": 2.0, "long": 1.0, "short": 1.0, "gross": 2.0}),  # per symbol; net 0
    (np.array([[0.5, 0.5]]), {"timeframe": 1.0, "gross": 1.0, "net": 1.0}),  # long 1 > 0.75 from positions < 1
    (np.array([[-0.5, 0.25]]), {"timeframe": 1.0}),  # short 0.5 > 0.25, net -0.25
])
def test_contributions_beyond_one_limit_are_not_within_them(contributions: np.ndarray,
                                                            changes: dict[str, object]) -> None:
    limits = replace(AT_LIMITS, **changes)  # type: ignore[arg-type]
    assert not within_limits(contributions, limits)
    assert within_limits(contributions, limits, tolerance=1.0)


def test_limits_per_side_and_symbol() -> None:
    limits = ExposureLimits(asset=0.5, asset_short=(0.75, 0.25))
    np.testing.assert_array_equal(limits.asset_limits(np.array([-0.6, -0.6])), [0.5, 0.25])  # at most ``asset``
    np.testing.assert_array_equal(limits.asset_limits(np.array([0.6, 0.0])), [0.5, 0.5])  # flat is not short
    np.testing.assert_array_equal(ExposureLimits(asset=0.5).asset_limits(np.array([-0.6, 0.6])), [0.5, 0.5])


def test_limits_from_the_config_map_every_setting() -> None:
    config = OrchestrationConfig(max_gross_exposure=1.5, max_net_exposure=0.875, max_asset_exposure=0.75,
                                 max_long_exposure=1.25, max_short_exposure=0.625, max_timeframe_exposure=0.375,
                                 max_asset_short_exposure={"B": 0.25, "C": 0.75})  # type: ignore[arg-type]
    assert ExposureLimits.from_config(config, ["A", "B"]) == ExposureLimits(1.5, 0.875, 0.75, 1.25, 0.625, 0.375,
                                                                           (0.75, 0.25))
    assert ExposureLimits.from_config(config, ["A", "C"]).asset_short is None  # equal to the asset limit: not tighter
    assert ExposureLimits.from_config(config).asset_short is None


def test_capped_ratio_by_hand() -> None:
    got = capped_ratio(np.array([0.25, -0.1, 2.0, 0.3, 0.3]), np.array([1.0, 1.0, 1.0, 0.0, 1e-301]))
    np.testing.assert_array_equal(got, [0.25, 0.0, 1.0, 1.0, 1.0])


def test_timeframe_scales_count_the_held_contributions_of_symbols_that_cannot_trade() -> None:
    c = np.array([[0.5, -0.25, 0.125], [0.125, 0.0, 0.375]])
    tradable = np.array([True, True, False])
    held = np.array([[9.0, 9.0, -0.125], [9.0, 9.0, 0.375]])  # only the untradable column counts
    # model 0: room 0.5 - 0.125 over 0.75; model 1: room 0.5 - 0.375 over 0.125
    np.testing.assert_allclose(timeframe_scales(c, 0.5, tradable, held), [0.5, 1.0])
    np.testing.assert_allclose(timeframe_scales(c, 0.5, tradable), [2 / 3, 1.0])  # nothing held
    np.testing.assert_allclose(timeframe_scales(c, 0.5), [0.5 / 0.875, 1.0])


def test_book_scales_with_a_held_symbol_by_hand() -> None:
    limits = ExposureLimits(gross=1.25, net=0.25, asset=0.5, long=0.75, short=0.375, asset_short=(0.5, 0.25, 0.5, 0.5))
    x = np.array([0.625, -0.5, 0.25, 7.0])
    scales = book_scales(x, limits, tradable=np.array([True, True, True, False]), held=np.array([0, 0, 0, -0.125]))
    # asset: 0.5/0.625 = 0.8, 0.25/0.5 = 0.5 (its short limit), 1; long (0.75 - 0) / 0.875;
    # short (0.375 - 0.125) / 0.5 = 0.5; gross (1.25 - 0.125) / 1.375
    long, gross = 0.75 / 0.875, 1.125 / 1.375
    np.testing.assert_allclose(scales.asset_cap, [0.8, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(scales.asset_limit, [0.5, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(scales.asset, [min(0.8, gross, long), 0.5, min(gross, long), 1.0])
    # net: held -0.125 + free 0.875 x 0.8 x ... : scaled to the net limit +0.25
    free_net = 0.625 * scales.asset[0] - 0.5 * 0.5 + 0.25 * scales.asset[2]
    assert scales.net == pytest.approx((0.25 + 0.125) / free_net)
    np.testing.assert_allclose(scales.per_symbol, [*(scales.asset[:3] * scales.net), 1.0])
    assert scales.binding == {"asset": True, "long": True, "short": True, "gross": True, "net": True}


def test_book_scales_count_a_held_long_and_bind_only_what_binds() -> None:
    limits = ExposureLimits(gross=2.0, net=2.0, asset=1.0, long=0.625, short=1.0)
    scales = book_scales(np.array([0.5, -0.5, 0.0]), limits, tradable=np.array([True, True, False]),
                         held=np.array([0.0, 0.0, 0.375]))
    np.testing.assert_allclose(scales.per_symbol, [0.5, 1.0, 1.0])  # long room 0.625 - 0.375 over 0.5
    assert scales.binding == {"asset": False, "long": True, "short": False, "gross": False, "net": False}
    unlimited = book_scales(np.array([0.5, -0.5]), ExposureLimits(gross=2.0, long=2.0, short=2.0))
    np.testing.assert_array_equal(unlimited.per_symbol, [1.0, 1.0])
    assert not any(unlimited.binding.values())


@pytest.mark.parametrize(("x", "held", "net", "expected"), [
    ([-0.75, 0.25, 0.0], 0.0, 0.25, 0.5),  # net -0.5 scaled to the limit's negative side, -0.25
    ([0.25, 0.0, 0.0], 0.5, 0.25, 0.0),  # the held long alone is over: no room at all
    ([0.25, 0.0, 0.0], -0.5, 0.125, 1.0),  # the held short is over; scaling the long down would not help
    ([0.25, -0.25, 0.0], 0.5, 0.25, 1.0),  # nothing free in net: nothing to scale
])
def test_the_net_factor_by_hand(x: list[float], held: float, net: float, expected: float) -> None:
    limits = ExposureLimits(gross=5.0, net=net, asset=1.0, long=5.0, short=5.0)
    scales = book_scales(np.array(x), limits, tradable=np.array([True, True, False]), held=np.array([0, 0, held]))
    assert scales.net == pytest.approx(expected)
    assert scales.binding["net"] == (expected < 1.0)


def test_a_symbol_that_cannot_trade_without_a_held_position_counts_as_flat() -> None:
    limits = ExposureLimits(gross=1.0, net=1.0, asset=1.0, long=0.5, short=1.0)
    scales = book_scales(np.array([0.5, 0.75]), limits, tradable=np.array([True, False]))
    np.testing.assert_allclose(scales.per_symbol, [1.0, 1.0])  # the long room 0.5 is all the first symbol's
    assert not any(scales.binding.values())
