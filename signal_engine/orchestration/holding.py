"""Holding discipline (seed 004 section 4): a model's call, once taken, stands for its minimum holding period.

Each timeframe model's adapter states a minimum holding period (``TimeframeSpec.min_holding``: a quarter of
its label horizon, at least one bar). With the discipline on, a model that leaves or reverses its direction
before it has held that direction for ``min_holding`` of the symbol's bars is read as still holding it, at
the size and confidence of its last call in that direction. Entering from flat is never delayed, calls on
the same side pass through (the model may resize), and the risk manager still scales every position
afterwards, so a risk cut is never held back: the discipline only stops a model from trading out of a call
faster than its own timeframe says the call lasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signal_engine.orchestration.state import HoldingState

CALL_FIELDS: tuple[str, ...] = ("direction", "size", "confidence")


@dataclass(frozen=True)
class HeldCalls:
    """The calls after the discipline, and where (models x symbols) a model's own call was overruled."""

    calls: dict[str, np.ndarray]
    held: np.ndarray


class HoldingDiscipline:
    """Keeps, per model and symbol, the direction held, since how many bars, and its last size and confidence.

    Parameters
    ----------
    min_holding : numpy.ndarray
        Minimum holding period of each model, in bars (1 means no constraint).
    n_symbols : int
        Symbols of the book.
    """

    def __init__(self, min_holding: np.ndarray, n_symbols: int) -> None:
        self.min_holding = np.asarray(min_holding, dtype=int)
        if self.min_holding.ndim != 1 or (self.min_holding < 1).any():
            raise ValueError(f"min_holding: expected one whole number of at least 1 per model, got {min_holding!r}")
        shape = (len(self.min_holding), n_symbols)
        self.direction = np.zeros(shape)
        self.size = np.zeros(shape)
        self.confidence = np.zeros(shape)
        self.age = np.zeros(shape, dtype=int)

    def to_state(self) -> HoldingState:
        return HoldingState(direction=self.direction.copy(), size=self.size.copy(), confidence=self.confidence.copy(),
                            age=self.age.astype(np.int64, copy=True))

    @classmethod
    def from_state(cls, min_holding: np.ndarray, state: HoldingState) -> HoldingDiscipline:
        """A discipline that continues from ``state`` (copied)."""
        discipline = cls(min_holding, state.direction.shape[1])
        discipline.direction, discipline.size = state.direction.copy(), state.size.copy()
        discipline.confidence, discipline.age = state.confidence.copy(), state.age.astype(int, copy=True)
        return discipline

    def apply(self, calls: dict[str, np.ndarray], bar: np.ndarray) -> HeldCalls:
        """The calls of this bar (models x symbols) with every premature exit or reversal overruled.

        ``bar`` marks the symbols with a bar now; the others keep their state untouched.
        """
        bar = np.asarray(bar, dtype=bool)[None, :]
        direction = np.asarray(calls["direction"], dtype=float)
        young = (self.direction != 0.0) & (self.age < self.min_holding[:, None])
        held = bar & young & (direction != self.direction)
        out = dict(calls)
        out["direction"] = np.where(held, self.direction, direction)
        out["size"] = np.where(held, self.size, calls["size"])
        out["confidence"] = np.where(held, self.confidence, calls["confidence"])
        started = bar & (out["direction"] != self.direction)
        self.age = np.where(started, 1, np.where(bar, self.age + 1, self.age))
        self.direction = np.where(bar, out["direction"], self.direction)
        self.size = np.where(bar, out["size"], self.size)
        self.confidence = np.where(bar, out["confidence"], self.confidence)
        return HeldCalls(calls=out, held=held)
