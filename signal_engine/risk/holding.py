"""Holding rule: when a position is entered and when it is let go."""

from __future__ import annotations

import math

import numpy as np


def held_direction(score: np.ndarray, *, enter_long: float, enter_short: float, exit_level: float = 0.0) -> np.ndarray:
    """Direction held at each bar: enter on a buy/sell signal, keep it while the signal says hold.

    A long is entered when the score rises above ``enter_long`` and kept until the score falls below
    ``exit_level``; a short mirrors this with ``enter_short``. This hysteresis stops a score that
    hovers near a threshold from trading every bar. The first bar starts flat; NaN scores exit.
    """
    direction = np.zeros(len(score), dtype=np.int64)
    state = 0
    for t, value in enumerate(np.asarray(score, dtype=float).tolist()):
        state = next_held(value, state, enter_long=enter_long, enter_short=enter_short, exit_level=exit_level)
        direction[t] = state
    return direction


def next_held(score: float, held: int, *, enter_long: float, enter_short: float, exit_level: float = 0.0) -> int:
    """The direction held after a bar whose score is ``score``, when ``held`` was held before it (the one rule
    of :func:`held_direction`, which the backtest folds over its bars and the Signal API applies to the position a
    request says it holds)."""
    if not math.isfinite(score):
        return 0
    if score > enter_long:
        return 1
    if score < enter_short:
        return -1
    if (held == 1 and score < exit_level) or (held == -1 and score > exit_level):
        return 0
    return held
