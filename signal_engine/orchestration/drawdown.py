"""Drawdown defender of seed 004 section 3: smaller positions as the drawdown deepens, flat in an emergency."""

from __future__ import annotations

from collections import deque

import numpy as np

from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.state import DefenderState


def drawdown_scale(
    depth: float | np.ndarray,
    *,
    start: float,
    limit: float,
    floor: float,
    emergency: float,
    emergency_scale: float,
) -> np.ndarray:
    """Exposure scale for a drawdown ``depth`` (a positive fraction: 0.1 is 10% below the peak).

    1 up to ``start``; linear from 1 down to ``floor`` between ``start`` and ``limit``; ``floor`` up to
    ``emergency``; ``emergency_scale`` beyond it (emergency deleveraging). Non-increasing in depth whenever
    ``start < limit <= emergency`` and ``emergency_scale <= floor <= 1``.
    """
    depth = np.asarray(depth, dtype=float)
    slope = (depth - start) / (limit - start)
    scale = np.clip(1.0 - (1.0 - floor) * slope, floor, 1.0)
    return np.where(depth > emergency, emergency_scale, scale)


class RollingMax:
    """The maximum of the last ``length`` values pushed (of all of them when ``length`` is 0), in O(1) amortised."""

    def __init__(self, length: int) -> None:
        self._length = length
        self._count = 0
        self._candidates: deque[tuple[int, float]] = deque()

    def push(self, value: float) -> float:
        """Add a value; return the maximum of the window that ends with it."""
        while self._candidates and self._candidates[-1][1] <= value:
            self._candidates.pop()
        self._candidates.append((self._count, value))
        if self._length and self._candidates[0][0] <= self._count - self._length:
            self._candidates.popleft()
        self._count += 1
        return self._candidates[0][1]

    @property
    def pushed(self) -> int:
        return self._count

    @property
    def candidates(self) -> list[tuple[int, float]]:
        """(push index, value) of the values that may still become the window's maximum, oldest first."""
        return list(self._candidates)

    @classmethod
    def restored(cls, length: int, pushed: int, candidates: list[tuple[int, float]]) -> RollingMax:
        rolling = cls(length)
        rolling._count = pushed
        rolling._candidates = deque((int(i), float(v)) for i, v in candidates)
        return rolling


class DrawdownDefender:
    """Tracks an equity curve from its net returns and gives the drawdown scale for the next positions.

    The drawdown is measured from the highest equity of the last ``drawdown_lookback`` bars (including the
    starting capital while it is in the window), or of all bars when that is 0.

    Parameters
    ----------
    config : OrchestrationConfig
        ``drawdown_start``, ``drawdown_limit``, ``drawdown_floor``, ``emergency_drawdown``, ``emergency_scale``
        and ``drawdown_lookback``.
    """

    def __init__(self, config: OrchestrationConfig) -> None:
        self._config = config
        self._peaks = RollingMax(config.drawdown_lookback + 1 if config.drawdown_lookback else 0)
        self.equity = 1.0
        self.peak = self._peaks.push(self.equity)

    def to_state(self) -> DefenderState:
        return DefenderState(equity=self.equity, peak=self.peak, pushed=self._peaks.pushed,
                             candidates=self._peaks.candidates)

    @classmethod
    def from_state(cls, config: OrchestrationConfig, state: DefenderState) -> DrawdownDefender:
        """A defender that continues from ``state``."""
        defender = cls(config)
        defender._peaks = RollingMax.restored(config.drawdown_lookback + 1 if config.drawdown_lookback else 0,
                                              state.pushed, state.candidates)
        defender.equity, defender.peak = state.equity, state.peak
        return defender

    def update(self, net_return: float) -> None:
        """Add one realised net return to the equity curve."""
        self.equity *= 1.0 + net_return
        self.peak = self._peaks.push(self.equity)

    @property
    def depth(self) -> float:
        """Current drawdown as a positive fraction of the peak."""
        return 1.0 - self.equity / self.peak if self.peak > 0 else 1.0

    @property
    def in_emergency(self) -> bool:
        return self.depth > self._config.emergency_drawdown

    def scale(self) -> float:
        c = self._config
        return float(drawdown_scale(self.depth, start=c.drawdown_start, limit=c.drawdown_limit,
                                    floor=c.drawdown_floor, emergency=c.emergency_drawdown,
                                    emergency_scale=c.emergency_scale))
