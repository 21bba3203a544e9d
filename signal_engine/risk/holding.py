"""Holding rule: when a position is entered and when it is let go."""

from __future__ import annotations

import numpy as np


def held_direction(score: np.ndarray, *, enter_long: float, enter_short: float, exit_level: float = 0.0) -> np.ndarray:
    """Direction held at each bar: enter on a buy/sell signal, keep it while the signal says hold.

    A long is entered when the score rises above ``enter_long`` and kept until the score falls below
    ``exit_level``; a short mirrors this with ``enter_short``. This hysteresis stops a score that
    hovers near a threshold from trading every bar. The first bar starts flat; NaN scores exit.
    """
    direction = np.zeros(len(score), dtype=np.int64)
    state = 0
    for t, value in enumerate(np.asarray(score, dtype=float)):
        if not np.isfinite(value):
            state = 0
        elif value > enter_long:
            state = 1
        elif value < enter_short:
            state = -1
        elif (state == 1 and value < exit_level) or (state == -1 and value > exit_level):
            state = 0
        direction[t] = state
    return direction
