"""``field op number`` conditions of the rule-based combiner, in NumPy only (the serving Lambda reads them too).

One grammar and one evaluation for the backtest's ``RuleBasedCombiner`` and the serving combiner; each caller
raises its own error type when a condition cannot be read.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

import numpy as np

OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_CONDITION = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*$")


def parse_condition(text: str) -> tuple[str, str, float] | None:
    """``(field, op, value)`` of ``"p_up > 0.6"``-style text, or None when it does not follow the grammar."""
    match = _CONDITION.match(text)
    return None if match is None else (match[1], match[2], float(match[3]))


def condition_holds(values: np.ndarray, op: str, value: float) -> np.ndarray:
    """Per row, whether ``values op value`` holds (NaN never does)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(OPERATORS[op](np.asarray(values, dtype=float), value))


def rule_direction(buy: np.ndarray, sell: np.ndarray) -> np.ndarray:
    """The rule combiner's call per row: +1 where the buy rule holds alone, -1 where the sell rule holds alone,
    else 0 (the backtest's ``RuleCombiner`` and the Signal API's combiner both call it)."""
    return np.where(buy & ~sell, 1, np.where(sell & ~buy, -1, 0))
