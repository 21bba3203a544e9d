"""Rule-based combiner of seed 000: buy/sell when every condition of that signal's rule holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from signal_engine.errors import ConfigError
from signal_engine.moe.combiner import SIGNALS
from signal_engine.moe.conditions import condition_holds, parse_condition, rule_direction

DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "buy": ("p_up > 0.6", "support_distance < 0.01", "vol_forecast < 0.03"),
    "sell": ("p_down > 0.6", "resistance_distance < 0.01", "vol_forecast < 0.03"),
}


@dataclass(frozen=True)
class Condition:
    """``field op value``, e.g. ``p_up > 0.6``."""

    field: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str, *, rule: str) -> Condition:
        parsed = parse_condition(text)
        if parsed is None:
            raise ConfigError(f"rule '{rule}': cannot read condition '{text}'; expected 'field op number' with op "
                              "one of <, <=, >, >= (e.g. 'p_up > 0.6')")
        return cls(*parsed)

    def holds(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.field not in outputs:
            raise ConfigError(f"condition '{self.field} {self.op} {self.value:g}': unknown field '{self.field}'; "
                              f"available: {', '.join(sorted(outputs))}")
        return condition_holds(outputs[self.field], self.op, self.value)


def expert_outputs(
    close: np.ndarray,
    p_up: np.ndarray,
    p_down: np.ndarray,
    support: np.ndarray,
    resistance: np.ndarray,
    vol_forecast: np.ndarray,
) -> dict[str, np.ndarray]:
    """The named fields rules may test, from the three experts' outputs and the close."""
    return {
        "p_up": p_up,
        "p_down": p_down,
        "p_neutral": 1.0 - p_up - p_down,
        "support_distance": (close - support) / close,
        "resistance_distance": (resistance - close) / close,
        "vol_forecast": vol_forecast,
    }


class RuleBasedCombiner(BaseEstimator):
    """Buy when every condition of the ``buy`` rule holds, sell likewise, hold otherwise (or when both do).

    Parameters
    ----------
    rules : ``{"buy": [...conditions], "sell": [...]}``; each condition is ``field op number`` over the
        fields of :func:`expert_outputs` (p_up, p_down, p_neutral, support_distance,
        resistance_distance, vol_forecast) or any other output passed to ``predict``.

    References
    ----------
    Seed 000, "Rule-Based Combination": buy if P(up) > 0.6, price near support and volatility < 3%.
    """

    def __init__(self, rules: Mapping[str, Sequence[str]] | None = None) -> None:
        self.rules = rules

    def fit(self, outputs: Mapping[str, np.ndarray] | None = None, y: np.ndarray | None = None) -> Self:
        rules = DEFAULT_RULES if self.rules is None else self.rules
        unknown = set(rules) - {"buy", "sell"}
        if unknown:
            raise ConfigError(f"rules: unknown signal {sorted(unknown)}; expected 'buy' and/or 'sell'")
        self.conditions_ = {
            signal: tuple(Condition.parse(text, rule=signal) for text in rules.get(signal, ()))
            for signal in ("buy", "sell")
        }
        self.classes_ = SIGNALS
        return self

    def direction(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """+1 where the buy rule holds alone, -1 where the sell rule holds alone, else 0."""
        n = len(next(iter(outputs.values())))
        buy, sell = (self._all(self.conditions_[s], outputs, n) for s in ("buy", "sell"))
        return rule_direction(buy, sell)

    def decision_function(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.direction(outputs).astype(float)

    def predict(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return SIGNALS[self.direction(outputs) + 1]

    @staticmethod
    def _all(conditions: tuple[Condition, ...], outputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        if not conditions:
            return np.zeros(n, dtype=bool)
        return np.logical_and.reduce([c.holds(outputs) for c in conditions])
