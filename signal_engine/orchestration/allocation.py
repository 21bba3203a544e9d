"""Risk allocation optimiser and capital allocation manager of seed 004 section 1.

Allocations always lie in ``[min_allocation, max_allocation]``, sum to 1, and move by at most
``max_allocation_change`` per update. All three hold by construction: the target and then the step
towards it are Euclidean projections onto a box intersected with the simplex.

Departure from seed 004: its ``_smooth_allocation_change`` clips each change and then divides by the
sum, which can push a share past its bound or its change limit (e.g. 0.5 + 0.1 clipped, then scaled up).
Here the step is the projection of the target onto ``{max(min, a - d) <= x <= min(max, a + d), sum x = 1}``,
a non-empty set because the previous allocation ``a`` lies in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from signal_engine.errors import SignalEngineError
from signal_engine.orchestration.config import OrchestrationConfig


def project_to_capped_simplex(
    target: np.ndarray, lower: np.ndarray | float, upper: np.ndarray | float, total: float = 1.0
) -> np.ndarray:
    """Euclidean projection of ``target`` onto ``{lower <= x <= upper, sum x = total}``.

    The solution is ``x_i = clip(target_i - nu, lower_i, upper_i)`` where ``nu`` solves ``g(nu) = total``;
    g is piecewise linear and non-increasing with breakpoints ``target - lower`` and ``target - upper``,
    so nu is found exactly by locating the segment that crosses ``total`` and interpolating.

    Raises
    ------
    SignalEngineError
        When ``sum(lower) > total`` or ``sum(upper) < total`` (no such x exists).
    """
    target = np.asarray(target, dtype=float)
    lo = np.broadcast_to(np.asarray(lower, dtype=float), target.shape)
    hi = np.broadcast_to(np.asarray(upper, dtype=float), target.shape)
    tol = 1e-12 * max(1.0, abs(total))
    if np.any(lo > hi + tol) or lo.sum() > total + tol or hi.sum() < total - tol:
        raise SignalEngineError(
            f"no allocation within the bounds sums to {total}: bounds sum to [{lo.sum():g}, {hi.sum():g}]"
        )
    nu = _level(target, lo, hi, total)
    return np.clip(target - nu, lo, hi)


def _level(target: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> float:
    breaks = np.unique(np.concatenate([target - lo, target - hi]))
    sums = np.array([np.clip(target - b, lo, hi).sum() for b in breaks])  # non-increasing in b
    if total >= sums[0]:
        return float(breaks[0])
    if total <= sums[-1]:
        return float(breaks[-1])
    k = int(np.flatnonzero(sums >= total)[-1])
    drop = sums[k] - sums[k + 1]
    step = (sums[k] - total) / drop if drop > 0 else 0.0
    return float(breaks[k] + step * (breaks[k + 1] - breaks[k]))


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``exp(s / T) / sum exp(s / T)``, computed stably; NaN scores count as 0."""
    z = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0) / temperature
    z = np.exp(z - z.max())
    return np.asarray(z / z.sum())


def allocation_scores(performance: np.ndarray, mean_correlation: np.ndarray, penalty: float) -> np.ndarray:
    """Performance score less ``penalty x`` the model's positive mean correlation with the others."""
    correlation = np.clip(np.nan_to_num(np.asarray(mean_correlation, dtype=float), nan=0.0), 0.0, None)
    return np.asarray(performance, dtype=float) - penalty * correlation


def target_allocation(scores: np.ndarray, *, temperature: float, lower: float, upper: float) -> np.ndarray:
    """The optimiser's target: softmax of the scores, projected onto the bounded simplex."""
    return project_to_capped_simplex(softmax(scores, temperature), lower, upper)


def limit_change(
    previous: np.ndarray, target: np.ndarray, *, max_change: float, lower: float, upper: float
) -> np.ndarray:
    """The feasible allocation closest to ``target`` within ``max_change`` of ``previous`` for every model."""
    previous = np.asarray(previous, dtype=float)
    lo = np.maximum(lower, previous - max_change)
    hi = np.minimum(upper, previous + max_change)
    return project_to_capped_simplex(target, lo, np.maximum(hi, lo))


@dataclass(frozen=True)
class AllocationUpdate:
    """One reallocation: the shares before, the optimiser's target, and the shares after the change limit."""

    previous: np.ndarray
    target: np.ndarray
    allocation: np.ndarray

    @property
    def changed(self) -> bool:
        return bool(np.any(np.abs(self.allocation - self.previous) > 1e-12))


class CapitalAllocator:
    """Capital allocation manager: equal shares at first, then bounded, smoothed moves towards the target.

    Parameters
    ----------
    models : sequence of str
        The timeframe models sharing the capital.
    config : OrchestrationConfig
        ``min_allocation``, ``max_allocation``, ``max_allocation_change``, ``allocation_temperature``.
    allocation : numpy.ndarray, optional
        The shares to continue from (a book state's); equal shares by default.

    Raises
    ------
    ConfigError
        When ``min_allocation x n > 1`` or ``max_allocation x n < 1`` (names the settings).
    """

    def __init__(
        self, models: Sequence[str], config: OrchestrationConfig, allocation: np.ndarray | None = None
    ) -> None:
        self.models = tuple(models)
        self.lower, self.upper = config.allocation_bounds_for(len(self.models))
        self.max_change = config.max_allocation_change
        self.temperature = config.allocation_temperature
        self.allocation = (np.full(len(self.models), 1.0 / len(self.models)) if allocation is None
                           else np.array(allocation, dtype=float))

    def update(self, scores: np.ndarray) -> AllocationUpdate:
        """Move towards the allocation the scores call for, within the bounds and the change limit."""
        previous = self.allocation
        target = target_allocation(scores, temperature=self.temperature, lower=self.lower, upper=self.upper)
        self.allocation = limit_change(previous, target, max_change=self.max_change, lower=self.lower,
                                       upper=self.upper)
        return AllocationUpdate(previous=previous, target=target, allocation=self.allocation)
