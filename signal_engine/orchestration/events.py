"""Every decision the orchestrator takes that a person may want to audit, as typed records and a table.

Seed 004 section 6 asks for conflict events, risk-limit activations and allocation history in the
report; they are kept as data first (``EventLog.to_frame``: stable columns that the storage layer can
persist as rows), and plotted from that table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Component = Literal[
    "allocation", "regime", "holding", "conflicts", "scheduler", "exposure", "drawdown", "correlation", "volatility"
]
EventKind = Literal[
    "allocation_change",
    "regime_change",
    "call_held",
    "conflict",
    "schedule_deferral",
    "risk_limit_activated",
    "risk_limit_released",
    "emergency_deleveraging",
    "emergency_released",
    "correlation_warning",
    "correlation_normal",
]
EVENT_COLUMNS: tuple[str, ...] = (
    "timestamp", "component", "kind", "rule", "symbol", "model", "value", "threshold", "detail",
)
Detail = Mapping[str, float | str]


@dataclass(frozen=True)
class OrchestrationEvent:
    """One event: when, which component, what happened, to which symbol/model, and the numbers.

    Parameters
    ----------
    timestamp : pandas.Timestamp
        The bar at whose close the event happened.
    component : str
        The part of seed 004 that acted (``allocation``, ``conflicts``, ``scheduler``, ``exposure``, ...).
    kind : str
        What happened (``allocation_change``, ``conflict``, ``risk_limit_activated``, ...).
    rule : str
        Which limit or rule (``gross``, ``net``, ``asset``, ``long``, ``short``, ``timeframe``, ``drawdown``,
        ``emergency``, ``volatility``, ``correlation``, ``budget``, or the conflict strategy).
    symbol, model : str
        The symbol and the timeframe model concerned ("" for the whole book or all models).
    value, threshold : float
        The headline number (a scale, an allocation, a drawdown, ...) and the limit it was compared with.
    detail : Mapping[str, float | str]
        Further numbers, stored as JSON.
    """

    timestamp: pd.Timestamp
    component: Component
    kind: EventKind
    rule: str = ""
    symbol: str = ""
    model: str = ""
    value: float = math.nan
    threshold: float = math.nan
    detail: Detail = field(default_factory=dict)

    def as_row(self) -> dict[str, object]:
        """The event as one table row (``detail`` as JSON with sorted keys, NaN as null)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.detail.items()}
        return {
            "timestamp": self.timestamp,
            "component": self.component,
            "kind": self.kind,
            "rule": self.rule,
            "symbol": self.symbol,
            "model": self.model,
            "value": float(self.value),
            "threshold": float(self.threshold),
            "detail": json.dumps(clean, sort_keys=True),
        }


class EventLog:
    """An append-only list of events in the order they happened."""

    def __init__(self) -> None:
        self._events: list[OrchestrationEvent] = []

    def record(self, event: OrchestrationEvent) -> None:
        self._events.append(event)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[OrchestrationEvent]:
        return iter(self._events)

    def to_frame(self) -> pd.DataFrame:
        """One row per event, columns ``EVENT_COLUMNS`` with fixed dtypes (also when empty)."""
        frame = pd.DataFrame([e.as_row() for e in self._events], columns=list(EVENT_COLUMNS))
        return frame.astype({
            "timestamp": "datetime64[ns]", "component": object, "kind": object, "rule": object, "symbol": object,
            "model": object, "value": float, "threshold": float, "detail": object,
        })

    def counts(self) -> dict[str, int]:
        """How many events of each kind, sorted by kind (for metrics)."""
        totals: dict[str, int] = {}
        for event in self._events:
            totals[event.kind] = totals.get(event.kind, 0) + 1
        return dict(sorted(totals.items()))


class LimitWatch:
    """Turns "is this limit binding at this bar" into activation and release events (transitions only).

    A limit that binds for 50 bars in a row is one activation and one release, not 50 events; the
    per-bar scale is kept separately in the risk-scale history.
    """

    def __init__(self, log: EventLog, active: Iterable[tuple[str, str, str, str]] = ()) -> None:
        self._log = log
        self._active: set[tuple[str, str, str, str]] = set(active)

    @property
    def active(self) -> tuple[tuple[str, str, str, str], ...]:
        """The (component, rule, symbol, model) of every limit binding now, sorted."""
        return tuple(sorted(self._active))

    def observe(
        self,
        timestamp: pd.Timestamp,
        component: Component,
        rule: str,
        *,
        binding: bool,
        value: float,
        threshold: float,
        symbol: str = "",
        model: str = "",
        kinds: tuple[EventKind, EventKind] = ("risk_limit_activated", "risk_limit_released"),
        detail: Detail | None = None,
    ) -> None:
        """Record ``kinds[0]`` when the limit starts binding and ``kinds[1]`` when it stops."""
        key = (component, rule, symbol, model)
        was = key in self._active
        if binding == was:
            return
        if binding:
            self._active.add(key)
        else:
            self._active.discard(key)
        self._log.record(OrchestrationEvent(
            timestamp=timestamp, component=component, kind=kinds[0] if binding else kinds[1], rule=rule, symbol=symbol,
            model=model, value=value, threshold=threshold, detail=dict(detail or {}),
        ))
