"""The live book as the Signal API serves it: which book holds a symbol, its position at a stepped bar with the
events that shaped it, and the whole book (``GET /book``).

Reads a :class:`~signal_engine.ports.BookReader` (the SQL store in practice) and the state document it keeps
(``docs/book-state.md``) as plain data: NumPy only, no pandas, so the combiner Lambda can serve books.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from signal_engine.json_values import number_from_json
from signal_engine.serving.schema import (
    ActiveLimit,
    Adjustment,
    BookEvent,
    BookPositionView,
    BookRisk,
    BookSignal,
    BookView,
    DefenderView,
    ModelState,
    Regime,
)
from signal_engine.storage.records import BookEventRow, BookPosition, BookSpan

if TYPE_CHECKING:
    from signal_engine.ports import BookReader

RECENT_BARS = 5
"""How many of a book's latest bars ``GET /book`` lists the events of, by default."""


class BookBarMissing(Exception):
    """``as_of`` falls before the book's first stepped bar: the book has no position there."""

    def __init__(self, book: str, symbol: str, as_of: datetime, span: BookSpan) -> None:
        self.book, self.symbol, self.as_of, self.span = book, symbol, as_of, span
        super().__init__(f"field 'as_of': book {book!r} holds {symbol} for the bars it stepped, "
                         f"{span.first.isoformat()} to {span.latest.isoformat()} ({span.bars} bars); as_of "
                         f"{as_of.isoformat()} is before its first, so the book has no position then. Send an as_of "
                         "in that range (or none: the latest bar), or send bars for the unmanaged answer")


def book_timeframe(name: str) -> str | None:
    """The API's timeframe of a book named by bar frequency (``daily`` -> ``1d``, ``1h``, ``15min`` -> ``15m``)."""
    if name == "daily":
        return "1d"
    match = re.fullmatch(r"([0-9]{1,3})(h|min)", name)
    if match is None:
        return None
    return f"{match.group(1)}{'h' if match.group(2) == 'h' else 'm'}"


@dataclass(frozen=True)
class BookAnswer:
    """A book's position in one symbol at one stepped bar, and what shaped it."""

    book: str
    symbol: str
    bar_time: datetime
    span: BookSpan
    position: BookPosition
    events: tuple[BookEventRow, ...]
    context: BookSignal
    score: float
    confidence: float
    vol_forecast: float | None

    @property
    def signal(self) -> str:
        return "buy" if self.position.position > 0 else ("sell" if self.position.position < 0 else "hold")

    @property
    def held(self) -> str:
        return {"buy": "long", "sell": "short", "hold": "flat"}[self.signal]

    def adjustments(self) -> list[Adjustment]:
        """Every event of the bar for the symbol or the whole book, as ``events.csv`` has them."""
        return [Adjustment(rule=e.rule, detail=detail_text(e.detail), value=_finite(e.value), component=e.component,
                           kind=e.kind, symbol=e.symbol, model=e.model, threshold=_finite(e.threshold))
                for e in self.events]


class BookDesk:
    """Answers from the live books of ``reader``."""

    def __init__(self, reader: BookReader) -> None:
        self.reader = reader

    def holders(self, symbol: str) -> list[str]:
        """The books whose latest bar holds ``symbol``, sorted by name."""
        return [book for book in self.reader.books() if any(p.symbol == symbol for p in self.reader.positions(book))]

    def answer(self, book: str, symbol: str, as_of: datetime | None) -> BookAnswer:
        """The position of ``symbol`` at the book's last stepped bar at or before ``as_of`` (default: the latest).

        Raises :class:`BookBarMissing` when ``as_of`` is before the book's first bar.
        """
        span = self.reader.span(book)
        if span is None:
            raise LookupError(f"book {book!r} is not stored")
        bars = self.reader.bar_times(book, until=as_of, last=1) if as_of is not None else [span.latest]
        if not bars:
            assert as_of is not None
            raise BookBarMissing(book, symbol, as_of, span)
        when = bars[0]
        document = self._document(book, when)
        held = {p.symbol: p for p in self.reader.positions(book, when)}
        if symbol not in held:
            raise LookupError(f"book {book!r} holds no {symbol} at {when}")
        events = tuple(e for e in self.reader.event_rows(book, since=_before(self.reader, book, when), until=when)
                       if e.symbol in (symbol, ""))
        state = StateView(document)
        s = state.symbols.index(symbol)
        allocation = state.array("allocation")
        scores = state.array("scores")[:, s]
        context = BookSignal(
            name=book, bar_time=when, first_bar_time=span.first, latest_bar_time=span.latest,
            contributions=dict(held[symbol].contributions),
            allocation=dict(zip(state.models, allocation.tolist(), strict=True)),
            model_scores={m: _finite(v) for m, v in zip(state.models, scores.tolist(), strict=True)},
            harmony=_finite(state.array("harmony")[s]),
            active_limits=[limit for limit in state.active_limits() if limit.symbol in (symbol, "")])
        return BookAnswer(book=book, symbol=symbol, bar_time=when, span=span, position=held[symbol],
                          events=events, context=context, score=book_score(allocation, scores),
                          confidence=float(np.clip(np.nan_to_num(state.array("harmony")[s]), 0.0, 1.0)),
                          vol_forecast=_finite(state.array("vol")[s]))

    def view(self, book: str, recent_bars: int = RECENT_BARS) -> BookView:
        """The whole book at its latest stepped bar, with the events of its last ``recent_bars`` bars."""
        span = self.reader.span(book)
        if span is None:
            raise LookupError(f"book {book!r} is not stored")
        state = StateView(self._document(book, span.latest))
        recent = self.reader.bar_times(book, last=recent_bars)
        since = _before(self.reader, book, recent[0]) if recent else span.latest
        events = self.reader.event_rows(book, since=since, until=span.latest)
        allocation, target = state.array("allocation"), state.array("target")
        tracker = state.document["tracker"]
        equity, peak, max_dd = (_array(tracker[n]) for n in ("equity", "peak", "max_drawdown"))
        vol = state.array("vol")
        return BookView(
            name=book, timeframe=book_timeframe(book), bar_time=span.latest, first_bar_time=span.first, bars=span.bars,
            positions=[BookPositionView(symbol=p.symbol, position=p.position, contributions=dict(p.contributions))
                       for p in self.reader.positions(book, span.latest)],
            allocations=dict(zip(state.models, allocation.tolist(), strict=True)),
            models={m: ModelState(allocation=float(allocation[i]), target=float(target[i]), equity=float(equity[i]),
                                  peak=float(peak[i]), max_drawdown=float(max_dd[i]))
                    for i, m in enumerate(state.models)},
            risk=BookRisk(defender=state.defender(), active_limits=state.active_limits(),
                          vol_forecast={sym: _finite(vol[i]) for i, sym in enumerate(state.symbols)},
                          regime=state.regime()),
            recent_events=[event_view(e) for e in events], recent_bars=recent_bars,
        )

    def _document(self, book: str, when: datetime) -> dict[str, Any]:
        document = self.reader.state_document(book, when)
        if document is None:
            raise LookupError(f"book {book!r} has no state stored for bar {when}")
        return document


class StateView:
    """The fields of a stored state document the API answers (``docs/book-state.md``)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.symbols: list[str] = list(document["symbols"])
        self.models: list[str] = list(document["models"])

    def array(self, name: str) -> np.ndarray:
        return _array(self.document[name])

    def active_limits(self) -> list[ActiveLimit]:
        return [ActiveLimit(component=c, rule=r, symbol=s, model=m) for c, r, s, m in self.document["active_limits"]]

    def defender(self) -> DefenderView:
        defender, config = self.document["defender"], self.document["config"]
        equity, peak = number_from_json(defender["equity"]), number_from_json(defender["peak"])
        binding = {(limit.component, limit.rule) for limit in self.active_limits()}
        status: Literal["normal", "reducing", "emergency"] = ("emergency" if ("drawdown", "emergency") in binding
                  else "reducing" if ("drawdown", "drawdown") in binding else "normal")
        return DefenderView(status=status, equity=equity, peak=peak,
                            drawdown=1.0 - equity / peak if peak > 0 else 1.0,
                            start=number_from_json(config["drawdown_start"]),
                            limit=number_from_json(config["drawdown_limit"]),
                            emergency=number_from_json(config["emergency_drawdown"]))

    def regime(self) -> Regime | None:
        regime = self.document["regime"]
        return None if regime is None else Regime(**regime)


def book_score(allocation: np.ndarray, scores: np.ndarray) -> float:
    """The models' signed scores weighted by their capital shares (models without a score left out), in [-1, 1];
    0 when no model with capital has a score."""
    known = np.isfinite(scores) & (allocation > 0)
    weight = float(allocation[known].sum())
    if weight <= 0:
        return 0.0
    return float(np.clip(np.dot(allocation[known], scores[known]) / weight, -1.0, 1.0))


def detail_text(detail: Mapping[str, float | str]) -> str:
    """An event's detail as ``events.csv`` writes it: JSON with sorted keys, NaN and infinities as null."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in detail.items()}
    return json.dumps(clean, sort_keys=True)


def event_view(event: BookEventRow) -> BookEvent:
    return BookEvent(bar_time=event.bar_time, component=event.component, kind=event.kind, rule=event.rule,
                     symbol=event.symbol, model=event.model, value=_finite(event.value),
                     threshold=_finite(event.threshold),
                     detail={k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                             for k, v in event.detail.items()})


def _before(reader: BookReader, book: str, when: datetime) -> datetime | None:
    """The stepped bar before ``when`` (None for the first): the events after it and up to ``when`` are ``when``'s."""
    earlier = reader.bar_times(book, until=when, last=2)
    return earlier[0] if len(earlier) == 2 else None


def _array(encoded: Mapping[str, Any]) -> np.ndarray:
    shape: Sequence[int] = encoded["shape"]
    values = [number_from_json(v) for v in encoded["values"]]
    return np.array(values, dtype=float).reshape(tuple(shape))


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
