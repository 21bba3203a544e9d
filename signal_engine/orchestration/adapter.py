"""The interface every timeframe model exposes to the orchestrator (seed 004 section 4), and its adapter.

A model answers ``signal(t)`` with a direction, a size, a confidence and its holding periods, and receives
``update_state(feedback)`` once the bar's return is realised. ``PrecomputedTimeframeModel`` serves a
walk-forward signal stream (the backtest's point-in-time output) one bar at a time, so the orchestrator
cannot read ahead of the bar it is deciding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.orchestration.timeframes import TimeframeSpec

SIGNAL_FRAME_COLUMNS: tuple[str, ...] = ("direction", "size", "confidence", "vol_forecast", "score")


@dataclass(frozen=True)
class TimeframeSignal:
    """One model's call for one symbol at one bar (seed 004 section 4, "action generation").

    Parameters
    ----------
    model, symbol : str
        Which timeframe model, for which symbol.
    timestamp : pandas.Timestamp
        The bar whose close the call was made at; a position taken on it is held to the next bar's close.
    direction : int
        -1 short, 0 flat, +1 long.
    size : float
        Recommended size in [0, 1] as a fraction of the capital given to the model (volatility-targeted).
    confidence : float
        In [0, 1].
    expected_holding, min_holding, max_holding : int
        Holding periods in bars (from the model's timeframe).
    vol_forecast : float
        The volatility expert's forecast of the next bar's log-return standard deviation (NaN if none).
    score : float
        The model's signed score in [-1, 1], its predicted direction and strength.
    """

    model: str
    symbol: str
    timestamp: pd.Timestamp
    direction: int
    size: float
    confidence: float
    expected_holding: int
    min_holding: int
    max_holding: int
    vol_forecast: float = math.nan
    score: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in (-1, 0, 1):
            raise SignalEngineError(f"{self.model}/{self.symbol}: direction must be -1, 0 or 1, got {self.direction}")
        for name in ("size", "confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SignalEngineError(f"{self.model}/{self.symbol}: {name} must be in [0, 1], got {value}")
        if not self.min_holding <= self.expected_holding <= self.max_holding:
            raise SignalEngineError(f"{self.model}/{self.symbol}: expected min <= expected <= max holding")

    @property
    def position(self) -> float:
        """The position the model would hold on its own: direction x size."""
        return float(self.direction * self.size)


@dataclass(frozen=True)
class RealisedFeedback:
    """What a model is told after a bar (seed 004 section 4, "state update").

    Parameters
    ----------
    timestamp : pandas.Timestamp
        The bar at whose close ``realised_return`` became known.
    symbol, model : str
        Whose feedback.
    position_taken : float
        The model's contribution to the orchestrated position held into this bar (fraction of capital).
    standalone_position : float
        The position the model itself asked for (direction x size).
    realised_return : float
        The symbol's simple return from the previous bar's close to this one.
    pnl : float
        ``position_taken x realised_return``.
    allocation : float
        The model's capital share when the position was taken.
    harmony : float
        The harmony score of the symbol's signals when the position was taken.
    ew_sharpe : float
        The model's exponentially weighted Sharpe ratio after this bar.
    """

    timestamp: pd.Timestamp
    symbol: str
    model: str
    position_taken: float
    standalone_position: float
    realised_return: float
    pnl: float
    allocation: float
    harmony: float
    ew_sharpe: float


@runtime_checkable
class TimeframeModel(Protocol):
    """A timeframe model as the orchestrator sees it (seed 004 section 4)."""

    @property
    def spec(self) -> TimeframeSpec:
        """Name, rank and holding periods."""
        ...

    @property
    def symbol(self) -> str:
        """The symbol it trades."""
        ...

    def signal(self, timestamp: pd.Timestamp) -> TimeframeSignal | None:
        """The call at bar ``timestamp`` (decided with data up to its close), or None if it has none."""
        ...

    def update_state(self, feedback: RealisedFeedback) -> None:
        """Receive the realised outcome of the position taken on the model's behalf."""
        ...


class PrecomputedTimeframeModel:
    """A walk-forward signal stream behind the ``TimeframeModel`` interface.

    Parameters
    ----------
    frame : pandas.DataFrame
        Indexed by bar timestamp (strictly increasing), with columns ``direction`` (-1/0/1), ``size``
        ([0, 1]), ``confidence`` ([0, 1]), ``vol_forecast`` and ``score``; each row decided at its bar's close.
        A row with a NaN direction, size or confidence is "no signal".
    spec : TimeframeSpec
        The model's timeframe.
    symbol : str
        The symbol the stream is for.

    Notes
    -----
    Bars are served in time order only: asking for a bar earlier than one already served raises, so a
    caller walking forward cannot have peeked. The stream itself is never exposed. Feedback is recorded
    in ``feedback_`` and does not change the precomputed calls (seed 004's non-invasive adapter).
    """

    def __init__(self, frame: pd.DataFrame, *, spec: TimeframeSpec, symbol: str) -> None:
        self._spec = spec
        self._symbol = symbol
        index, values = _validated_stream(frame, f"{spec.name}/{symbol}")
        self._row_of = {int(ts): row for row, ts in enumerate(index.asi8)}
        self._values = values
        self._last_served: int | None = None
        self.feedback_: list[RealisedFeedback] = []

    @property
    def spec(self) -> TimeframeSpec:
        return self._spec

    @property
    def symbol(self) -> str:
        return self._symbol

    def signal(self, timestamp: pd.Timestamp) -> TimeframeSignal | None:
        """The stream's row at ``timestamp``, or None when the stream has no usable row there."""
        stamp = pd.Timestamp(timestamp).as_unit("ns")
        key = stamp.value
        if self._last_served is not None and key < self._last_served:
            raise SignalEngineError(
                f"{self._spec.name}/{self._symbol}: bars must be asked for in time order; "
                f"{pd.Timestamp(key)} comes before {pd.Timestamp(self._last_served)}"
            )
        self._last_served = key
        row = self._row_of.get(key)
        if row is None:
            return None
        direction, size, confidence, vol_forecast, score = self._values[row]
        if not (np.isfinite(direction) and np.isfinite(size) and np.isfinite(confidence)):
            return None
        spec = self._spec
        return TimeframeSignal(
            model=spec.name, symbol=self._symbol, timestamp=stamp, direction=int(direction),
            size=float(size), confidence=float(confidence), expected_holding=spec.expected_holding,
            min_holding=spec.min_holding, max_holding=spec.max_holding, vol_forecast=float(vol_forecast),
            score=float(score) if np.isfinite(score) else 0.0,
        )

    def update_state(self, feedback: RealisedFeedback) -> None:
        self.feedback_.append(feedback)


def signal_frame(backtest_signals: pd.DataFrame) -> pd.DataFrame:
    """A timeframe model's signal stream from the ``signals`` frame of ``run_symbol`` (one symbol).

    ``direction`` and ``size`` are the sign and magnitude of the MoE's volatility-targeted ``position``;
    ``confidence``, ``score`` and ``vol_forecast`` are passed through; the index is the parsed timestamp.
    """
    position = backtest_signals["position"].to_numpy(dtype=float)
    index = pd.DatetimeIndex(pd.to_datetime(backtest_signals["timestamp"]), name="timestamp").as_unit("ns")
    return pd.DataFrame(
        {
            "direction": np.sign(position),
            "size": np.clip(np.abs(position), 0.0, 1.0),
            "confidence": np.clip(backtest_signals["confidence"].to_numpy(dtype=float), 0.0, 1.0),
            "vol_forecast": backtest_signals["vol_forecast"].to_numpy(dtype=float),
            "score": backtest_signals["score"].to_numpy(dtype=float),
        },
        index=index,
    )


def _validated_stream(frame: pd.DataFrame, name: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    missing = [c for c in SIGNAL_FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise SignalEngineError(f"{name}: signal frame lacks columns {missing}; expected {list(SIGNAL_FRAME_COLUMNS)}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise SignalEngineError(f"{name}: signal frame must be indexed by bar timestamp (a DatetimeIndex)")
    if not frame.index.is_monotonic_increasing or not frame.index.is_unique:
        raise SignalEngineError(f"{name}: signal frame timestamps must be strictly increasing")
    values = frame.loc[:, list(SIGNAL_FRAME_COLUMNS)].to_numpy(dtype=float)
    _check_column(values[:, 0], lambda v: np.isin(v, (-1.0, 0.0, 1.0)), name, "direction", "-1, 0 or 1")
    _check_column(values[:, 1], lambda v: (v >= 0.0) & (v <= 1.0), name, "size", "in [0, 1]")
    _check_column(values[:, 2], lambda v: (v >= 0.0) & (v <= 1.0), name, "confidence", "in [0, 1]")
    return frame.index.as_unit("ns"), values


def _check_column(
    values: np.ndarray, ok: Callable[[np.ndarray], np.ndarray], name: str, column: str, expected: str
) -> None:
    finite = values[np.isfinite(values)]
    bad = finite[~ok(finite)]
    if len(bad):
        raise SignalEngineError(f"{name}: column '{column}' holds {bad[0]!r}; expected {expected} (or NaN)")
