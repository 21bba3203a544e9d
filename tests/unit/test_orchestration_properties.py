"""Property-based tests of the orchestration layer's invariants (seed 004).

1. Allocations lie within [min, max] and sum to 1.
2. No allocation moves by more than the change limit between consecutive updates.
3. After the unified risk manager, no exposure is above its limit, whatever the positions proposed (per-symbol
   short limits included).
4. Drawdown scaling is non-increasing in the drawdown and reaches the emergency level past the limit.
5. Resolving a conflict never increases |net exposure|.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from signal_engine.orchestration.allocation import CapitalAllocator, project_to_capped_simplex
from signal_engine.orchestration.config import CONFLICT_STRATEGIES, OrchestrationConfig
from signal_engine.orchestration.conflicts import resolve_conflict
from signal_engine.orchestration.drawdown import drawdown_scale
from signal_engine.orchestration.risk import UnifiedRiskManager

FAST = settings(max_examples=60, deadline=None)
TOL = 1e-9

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
unit = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def allocation_settings(draw: st.DrawFn) -> tuple[int, OrchestrationConfig]:
    n = draw(st.integers(min_value=1, max_value=8))
    lower = draw(st.floats(min_value=0.0, max_value=1.0 / n))
    upper = draw(st.floats(min_value=1.0 / n, max_value=1.0))
    change = draw(st.floats(min_value=0.0, max_value=1.0))
    temperature = draw(st.floats(min_value=0.05, max_value=5.0))
    config = OrchestrationConfig(min_allocation=lower, max_allocation=upper, max_allocation_change=change,
                                 allocation_temperature=temperature)
    return n, config


@FAST
@given(allocation_settings(), st.data())
def test_allocations_stay_within_bounds_sum_to_one_and_respect_the_change_limit(
    setting: tuple[int, OrchestrationConfig], data: st.DataObject
) -> None:
    n, config = setting
    allocator = CapitalAllocator([f"m{i}" for i in range(n)], config)
    previous = allocator.allocation.copy()
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        scores = data.draw(arrays(float, n, elements=st.floats(-50, 50) | st.just(np.nan)))
        allocation = allocator.update(scores).allocation
        assert np.all(allocation >= config.min_allocation - TOL)
        assert np.all(allocation <= config.max_allocation + TOL)
        assert abs(allocation.sum() - 1.0) <= TOL
        assert np.all(np.abs(allocation - previous) <= config.max_allocation_change + TOL)
        previous = allocation.copy()


@FAST
@given(st.data())
def test_projection_is_feasible_and_is_the_euclidean_projection(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=8))
    lower = data.draw(arrays(float, n, elements=st.floats(0.0, 0.3)))
    upper = lower + data.draw(arrays(float, n, elements=st.floats(0.0, 0.6)))
    total = data.draw(st.floats(min_value=float(lower.sum()), max_value=float(upper.sum())))
    target = data.draw(arrays(float, n, elements=st.floats(-10, 10)))
    x = project_to_capped_simplex(target, lower, upper, total)
    assert np.all(x >= lower - TOL) and np.all(x <= upper + TOL)
    assert abs(x.sum() - total) <= 1e-8
    free = (x > lower + 1e-9) & (x < upper - 1e-9)
    if free.sum() > 1:  # KKT: every coordinate strictly inside its bounds is shifted by the same amount
        shift = target[free] - x[free]
        assert np.ptp(shift) <= 1e-7


Limits = dict[str, Any]  # the book limits by name, and "asset_short": per symbol a short limit or None


@st.composite
def book(draw: st.DrawFn) -> tuple[np.ndarray, Limits]:
    m = draw(st.integers(min_value=1, max_value=5))
    s = draw(st.integers(min_value=1, max_value=4))
    contributions = draw(arrays(float, (m, s), elements=st.floats(-3.0, 3.0)))
    limit = st.floats(min_value=0.0, max_value=2.0)
    limits: Limits = {name: draw(limit) for name in ("gross", "net", "asset", "long", "short", "timeframe")}
    limits["asset_short"] = draw(st.lists(st.none() | limit, min_size=s, max_size=s))
    return contributions, limits


def _symbols(n: int) -> list[str]:
    return [f"S{i}" for i in range(n)]


def _manager(limits: Limits) -> UnifiedRiskManager:
    symbols = _symbols(len(limits["asset_short"]))
    config = OrchestrationConfig(
        max_gross_exposure=limits["gross"], max_net_exposure=limits["net"], max_asset_exposure=limits["asset"],
        max_long_exposure=limits["long"], max_short_exposure=limits["short"],
        max_timeframe_exposure=limits["timeframe"],
        max_asset_short_exposure={s: v for s, v in zip(symbols, limits["asset_short"], strict=True)  # type: ignore[arg-type]
                                  if v is not None},  # a mapping, as a config file gives it
    )
    return UnifiedRiskManager(config, periods_per_year=252.0, symbols=symbols)


def _assert_within_limits(contributions: np.ndarray, limits: Limits) -> None:
    positions = contributions.sum(axis=0)
    assert np.all(np.abs(positions) <= limits["asset"] + TOL)
    for position, short_limit in zip(positions, limits["asset_short"], strict=True):
        assert short_limit is None or -position <= short_limit + TOL
    assert np.abs(positions).sum() <= limits["gross"] + TOL
    assert abs(positions.sum()) <= limits["net"] + TOL
    assert positions[positions > 0].sum() <= limits["long"] + TOL
    assert -positions[positions < 0].sum() <= limits["short"] + TOL
    assert np.all(np.abs(contributions).sum(axis=1) <= limits["timeframe"] + TOL)


@FAST
@given(book(), st.data())
def test_exposure_never_exceeds_its_limits_after_the_risk_manager(
    proposal: tuple[np.ndarray, Limits], data: st.DataObject
) -> None:
    contributions, limits = proposal
    m, s = contributions.shape
    decision = _manager(limits).apply(
        contributions,
        drawdown_scale=data.draw(unit),
        correlation_scales=data.draw(arrays(float, m, elements=unit)),
        vol_forecast=data.draw(arrays(float, s, elements=st.floats(0.0, 0.1) | st.just(np.nan))),
        asset_correlation=np.eye(s),
    )
    _assert_within_limits(decision.contributions, limits)
    assert np.all(np.abs(decision.contributions) <= np.abs(contributions) + TOL)


@FAST
@given(book(), st.data())
def test_limits_hold_when_some_symbols_cannot_trade(
    proposal: tuple[np.ndarray, Limits], data: st.DataObject
) -> None:
    contributions, limits = proposal
    limits["net"] = max(limits["net"], limits["gross"])  # a held book within gross is then within net
    m, s = contributions.shape
    manager = _manager(limits)

    def apply(proposed: np.ndarray, tradable: np.ndarray | None = None, held: np.ndarray | None = None) -> np.ndarray:
        return manager.apply(proposed, drawdown_scale=1.0, correlation_scales=np.ones(m),
                             vol_forecast=np.full(s, np.nan), asset_correlation=np.eye(s), tradable=tradable,
                             held=held).contributions

    held = apply(data.draw(arrays(float, (m, s), elements=st.floats(-3.0, 3.0))))
    tradable = data.draw(arrays(bool, s))
    after = apply(contributions, tradable, held)
    _assert_within_limits(after, limits)
    np.testing.assert_array_equal(after[:, ~tradable], held[:, ~tradable])


@st.composite
def defender_settings(draw: st.DrawFn) -> dict[str, float]:
    start = draw(st.floats(min_value=0.0, max_value=0.5))
    limit = draw(st.floats(min_value=start + 1e-3, max_value=0.8))
    emergency = draw(st.floats(min_value=limit, max_value=0.95))
    floor = draw(unit)
    emergency_scale = draw(st.floats(min_value=0.0, max_value=floor))
    return {"start": start, "limit": limit, "floor": floor, "emergency": emergency,
            "emergency_scale": emergency_scale}


@FAST
@given(defender_settings(), arrays(float, st.integers(2, 40), elements=unit))
def test_drawdown_scaling_is_monotone_and_hits_the_emergency_level_past_the_limit(
    setting: dict[str, float], depths: np.ndarray
) -> None:
    depths = np.sort(depths)
    scales = drawdown_scale(depths, **setting)
    assert np.all(np.diff(scales) <= TOL)
    assert np.all((scales >= 0.0) & (scales <= 1.0))
    np.testing.assert_array_equal(scales[depths > setting["emergency"]], setting["emergency_scale"])
    np.testing.assert_array_equal(scales[depths <= setting["start"]], 1.0)


@FAST
@given(
    arrays(float, st.integers(1, 6), elements=st.floats(-2.0, 2.0)),
    st.data(),
    st.sampled_from(CONFLICT_STRATEGIES),
)
def test_resolving_a_conflict_never_increases_net_exposure(
    contributions: np.ndarray, data: st.DataObject, strategy: str
) -> None:
    confidence = data.draw(arrays(float, len(contributions), elements=unit))
    resolution = resolve_conflict(contributions, confidence, strategy)
    after = resolution.contributions
    assert abs(after.sum()) <= abs(contributions.sum()) + TOL
    assert np.all(np.abs(after) <= np.abs(contributions) + TOL)  # no leg grows ...
    assert np.all(after * contributions >= 0.0)  # ... or changes side
