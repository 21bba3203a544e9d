"""Pivot-point support and resistance: classic floor, Fibonacci and Camarilla."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert

PIVOT_KINDS = ("classic", "fibonacci", "camarilla")
FIBONACCI_RATIOS = {1: 0.382, 2: 0.618, 3: 1.0}
CAMARILLA_DIVISORS = {1: 12.0, 2: 6.0, 3: 4.0, 4: 2.0}


def period_hlc(X: pd.DataFrame, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Highest high, lowest low and last close of the ``period`` bars ending at each row."""
    high = X["high"].rolling(period, min_periods=1).max().to_numpy(dtype=float)
    low = X["low"].rolling(period, min_periods=1).min().to_numpy(dtype=float)
    return high, low, X["close"].to_numpy(dtype=float)


def pivot_levels(high: np.ndarray, low: np.ndarray, close: np.ndarray, kind: str, level: int) -> np.ndarray:
    """(n, 2) support and resistance of the given pivot ``kind`` and ``level`` from a period's H, L, C.

    classic: P = (H + L + C) / 3, S1 = 2P - H, R1 = 2P - L, S2/R2 = P -/+ (H - L), S3/R3 = L - 2(H - P) /
    H + 2(P - L). Fibonacci: P -/+ r (H - L) with r = 0.382, 0.618, 1.0. Camarilla: C -/+ 1.1 (H - L) / d
    with d = 12, 6, 4, 2.
    """
    pivot = (high + low + close) / 3.0
    span = high - low
    if kind == "classic":
        if level == 1:
            return np.column_stack((2 * pivot - high, 2 * pivot - low))
        if level == 2:
            return np.column_stack((pivot - span, pivot + span))
        return np.column_stack((low - 2 * (high - pivot), high + 2 * (pivot - low)))
    if kind == "fibonacci":
        ratio = FIBONACCI_RATIOS[level]
        return np.column_stack((pivot - ratio * span, pivot + ratio * span))
    step = 1.1 * span / CAMARILLA_DIVISORS[level]
    return np.column_stack((close - step, close + step))


class PivotLevels(Expert):
    """Pivot-point levels from the high, low and close of the last ``period`` bars (bar t included).

    The default (classic, level 1, period 1) is the floor traders' S1/R1 from bar t:
    P = (H + L + C) / 3, S1 = 2P - H, R1 = 2P - L, the project's plain-pivot baseline.

    Parameters
    ----------
    kind : ``"classic"``, ``"fibonacci"`` or ``"camarilla"``.
    level : 1..3 (classic, Fibonacci) or 1..4 (Camarilla).
    period : bars whose range and last close define the pivot (1: the last bar; 5: a week of daily bars).

    References
    ----------
    Person (2004), "A Complete Guide to Technical Trading Tactics", Wiley (floor and Fibonacci pivots);
    Camarilla equation, N. Stott (1989).
    """

    name = "pivot"
    target = "future_range"
    outputs = ("support", "resistance")

    def __init__(self, kind: str = "classic", level: int = 1, period: int = 1) -> None:
        self.kind = kind
        self.level = level
        self.period = period

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> Self:
        levels = CAMARILLA_DIVISORS if self.kind == "camarilla" else FIBONACCI_RATIOS
        if self.kind not in PIVOT_KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {PIVOT_KINDS}")
        if self.level not in levels:
            raise ValueError(f"level={self.level} for {self.kind} pivots; expected one of {sorted(levels)}")
        self.n_features_in_ = X.shape[1]
        return self

    def context_bars(self) -> int | None:
        return self.period - 1

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return pivot_levels(*period_hlc(X, self.period), self.kind, self.level)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)
