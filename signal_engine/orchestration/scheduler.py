"""Trade scheduler of seed 004 section 2: a per-bar trade budget, filled in priority order.

Each model's trade on a symbol is split into a reducing leg (towards flat) and an adding leg (new
exposure). Reducing legs go first, since deferring an exit adds risk; then, within each kind, shorter
timeframes first, stronger signals first, shorter expected holding first, then model order. Legs fill
until the budget is used; what does not fit is deferred (the target is asked for again next bar), which
staggers large simultaneous trades over several bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """The positions after this bar's trades, and what each model asked for and got."""

    positions: np.ndarray
    requested: np.ndarray
    filled: np.ndarray

    @property
    def deferred(self) -> np.ndarray:
        return self.requested - self.filled


def schedule_trades(
    current: np.ndarray,
    target: np.ndarray,
    *,
    rank: np.ndarray,
    strength: np.ndarray,
    expected_holding: np.ndarray,
    budget: float,
) -> Schedule:
    """Move each model's position from ``current`` towards ``target`` within ``budget`` of total |trade|."""
    current = np.asarray(current, dtype=float)
    target = np.asarray(target, dtype=float)
    delta = target - current
    opposing = np.sign(delta) == -np.sign(current)
    reduce = np.where(opposing, np.minimum(np.abs(delta), np.abs(current)), 0.0)
    add = np.abs(delta) - reduce
    legs = np.concatenate([reduce, add])
    n = len(current)

    def twice(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values, values])

    kind = np.repeat([0, 1], n)
    order = np.lexsort((twice(np.arange(n)), twice(expected_holding), -twice(strength), twice(rank), kind))
    before = np.cumsum(legs[order]) - legs[order]
    fill = np.empty_like(legs)
    fill[order] = np.clip(budget - before, 0.0, legs[order])
    complete = (fill[:n] >= reduce) & (fill[n:] >= add)
    filled = np.where(complete, delta, np.sign(delta) * (fill[:n] + fill[n:]))
    return Schedule(positions=np.where(complete, target, current + filled), requested=delta, filled=filled)
