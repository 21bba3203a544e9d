"""Ports: the small interfaces the domain talks to; adapters in ``signal_engine.adapters`` implement them.

Nothing here knows of AWS, SQL or HTTP libraries. ``signal_engine.bootstrap`` picks the adapters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from signal_engine.data.loader import PriceSeries
from signal_engine.orchestration.events import OrchestrationEvent
from signal_engine.orchestration.state import BookState
from signal_engine.serving.messages import ExpertQuery, ExpertReply
from signal_engine.storage.records import (
    IMPLIED_VOL_HORIZON_DAYS,
    Bar,
    BookEventRow,
    BookPosition,
    BookSpan,
    CorporateAction,
    Document,
    DocumentKind,
    Fundamental,
    ImpliedVolatility,
    OptionQuote,
    Position,
    Restatement,
    RiskEvent,
    SignalAudit,
    Statistic,
    WriteResult,
)


class PriceStore(Protocol):
    """Bars keyed by (symbol, timeframe, timestamp, source); a write is one transaction."""

    def write_bars(self, bars: Sequence[Bar]) -> WriteResult:
        """Insert new bars, update restated ones in place (recording the change), skip identical ones."""
        ...

    def read_bars(self, symbol: str, timeframe: str, start: datetime | None = None,
                  end: datetime | None = None, source: str | None = None,
                  as_of: datetime | None = None) -> PriceSeries:
        """The stored bars of one symbol from one source (its primary by default), oldest first, between
        ``start`` and ``end`` inclusive, adjusted with the splits and dividends known at ``as_of``."""
        ...

    def raw_closes(self, symbol: str, timeframe: str, start: datetime | None = None,
                   end: datetime | None = None) -> list[tuple[datetime, float]]:
        """``(timestamp, close)`` of the primary source's bars as stored (the traded price, before any split or
        dividend adjustment), oldest first, between ``start`` and ``end`` inclusive; [] when none."""
        ...

    def write_corporate_actions(self, actions: Sequence[CorporateAction]) -> WriteResult:
        """Upsert splits and dividends (keeping the earliest ``known_at``)."""
        ...

    def corporate_actions(self, symbol: str, source: str | None = None) -> list[CorporateAction]:
        """The stored splits and dividends of a symbol, by ex-date."""
        ...

    def restatements(self, symbol: str, timeframe: str) -> list[Restatement]:
        """Every recorded change to a stored bar, oldest first."""
        ...

    def count_bars(self, symbol: str | None = None) -> int:
        """How many bars are stored (of one symbol, or of all)."""
        ...


class MarketDataStore(Protocol):
    """Quote statistics, fundamentals, option chains and the implied volatility derived from them per bar; each
    write is one transaction."""

    def write_statistics(self, rows: Sequence[Statistic]) -> WriteResult: ...

    def write_fundamentals(self, rows: Sequence[Fundamental]) -> WriteResult: ...

    def write_option_quotes(self, rows: Sequence[OptionQuote]) -> WriteResult: ...

    def read_statistics(self, symbol: str) -> list[Statistic]: ...

    def read_fundamentals(self, symbol: str, as_of: datetime | None = None) -> list[Fundamental]:
        """Each period's items as known at ``as_of`` (point in time; the latest when None)."""
        ...

    def read_option_quotes(self, underlying: str, since: datetime | None = None,
                           until: datetime | None = None) -> list[OptionQuote]:
        """The quotes of ``underlying`` with ``as_of`` in [since, until] (open ends when None), by ``as_of``."""
        ...

    def option_snapshot_times(self, underlying: str, since: datetime | None = None,
                              until: datetime | None = None) -> list[datetime]:
        """The distinct ``as_of`` of the stored quotes of ``underlying`` in [since, until], oldest first."""
        ...

    def write_implied_volatility(self, rows: Sequence[ImpliedVolatility]) -> WriteResult:
        """Upsert derived values by (symbol, timeframe, timestamp, horizon_days)."""
        ...

    def read_implied_volatility(self, symbol: str, timeframe: str, horizon_days: int = IMPLIED_VOL_HORIZON_DAYS,
                                start: datetime | None = None, end: datetime | None = None,
                                ) -> list[ImpliedVolatility]:
        """The stored derived values of one symbol's bars in [start, end], oldest first."""
        ...


class DocumentStore(Protocol):
    """News and reports by stable id, queried by symbol and publication time."""

    def write_documents(self, documents: Sequence[Document]) -> WriteResult: ...

    def read_documents(self, kind: DocumentKind, symbol: str, start: datetime | None = None,
                       end: datetime | None = None) -> list[Document]:
        """Documents that name ``symbol``, by publication time (oldest first), within [start, end]."""
        ...


class ObjectStore(Protocol):
    """Raw payloads and files by key (``a/b/c.json``)."""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ``KeyError`` when there is none."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix``, in lexical order."""
        ...


class AuditLog(Protocol):
    """Every signal served, with its inputs' ids."""

    def record_signal(self, entry: SignalAudit) -> None: ...

    def signals(self, symbol: str) -> list[SignalAudit]: ...


class ExpertClient(Protocol):
    """The expert models: SageMaker endpoints in AWS, fitted models in-process locally."""

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        """Every named expert's answer for the query's last bar, asked in parallel; one reply per expert.

        An expert that fails, answers malformed JSON or misses ``deadline_s`` gives a reply with ``error`` set;
        ``ask`` itself does not raise for it.
        """
        ...

    def models(self) -> Mapping[str, str]:
        """What answers for each expert (endpoint name or model file), for the audit log and ``GET /models``."""
        ...


class PositionBook(Protocol):
    """The exposure held per symbol."""

    def set_position(self, position: Position) -> None: ...

    def positions(self) -> list[Position]: ...


class RiskLog(Protocol):
    """What the risk layer did, by time."""

    def record_risk_event(self, event: RiskEvent) -> None: ...

    def record_risk_events(self, events: Sequence[RiskEvent]) -> None:
        """Store many events in one transaction (all or none), e.g. a backtest's orchestration events."""
        ...

    def risk_events(self, symbol: str) -> list[RiskEvent]: ...


class BookReader(Protocol):
    """Live books as the Signal API reads them (``signal_engine.serving.book``): plain data only, so that the
    serving path needs no pandas (the combiner Lambda carries none). A BookStore is one too.
    """

    def books(self) -> list[str]:
        """The names of the books stored (those with at least one stepped bar), sorted."""
        ...

    def span(self, book: str) -> BookSpan | None:
        """The first and latest stepped bar of ``book`` and how many were stepped; None for an unknown book."""
        ...

    def bar_times(self, book: str, *, until: datetime | None = None, last: int | None = None) -> list[datetime]:
        """The stepped bars at or before ``until`` (default: all), only the ``last`` ones if given, oldest first."""
        ...

    def state_document(self, book: str, bar_time: datetime) -> dict[str, Any] | None:
        """The state document after ``bar_time`` (``docs/book-state.md``) as parsed JSON; None if never stepped."""
        ...

    def positions(self, book: str, bar_time: datetime | None = None) -> list[BookPosition]:
        """The positions after ``bar_time`` (default: the latest bar), one per symbol."""
        ...

    def event_rows(self, book: str, *, since: datetime | None = None,
                   until: datetime | None = None) -> list[BookEventRow]:
        """The events of the bars after ``since`` and at or before ``until``, in the order they happened."""
        ...


class BookStore(BookReader, Protocol):
    """Live books (``signal_engine.orchestration.live``): each stepped bar's state, positions and events; what the
    Signal API reads of them too (``BookReader``).

    Bar times are naive UTC with whole seconds. A book's bars are committed one at a time, in time order.
    """

    def latest(self, book: str) -> tuple[datetime, BookState] | None:
        """The latest bar stepped and the state after it; None for a book never stepped."""
        ...

    def stepped(self, book: str, bar_time: datetime) -> tuple[BookState, str] | None:
        """The state after ``bar_time`` and the digest of the inputs it was stepped with; None if never stepped."""
        ...

    def commit_step(self, book: str, bar_time: datetime, state: BookState, positions: Sequence[BookPosition],
                    events: Sequence[OrchestrationEvent], *, previous: datetime | None, inputs_digest: str) -> None:
        """Store one bar's state, positions and events in one transaction (all or nothing).

        ``previous`` is the bar the state was stepped from (None for the book's first): if the book's latest
        stored bar is another one (a concurrent step got there first), nothing is stored and a
        ``SignalEngineError`` says so.
        """
        ...

    def events(self, book: str, since: datetime | None = None,
               until: datetime | None = None) -> list[OrchestrationEvent]:
        """The events of the bars after ``since`` and up to ``until`` (default: all), in the order they happened."""
        ...


class Stores(Protocol):
    """The stores a collection writes to (``signal_engine.bootstrap.Storage`` provides them)."""

    @property
    def prices(self) -> PriceStore: ...

    @property
    def market(self) -> MarketDataStore: ...

    @property
    def documents(self) -> DocumentStore: ...

    @property
    def objects(self) -> ObjectStore: ...


class ModelRegistry(Protocol):
    """Trained model bundles by version (``docs/model-bundle.md``); ``CURRENT`` names the one serving uses."""

    def publish(self, folder: Path, version: str) -> str:
        """Store a complete bundle folder as ``version`` (readers never see half of it); returns where it went."""
        ...

    def promote(self, version: str) -> None:
        """Make a published ``version`` the current one (an atomic replace of ``CURRENT``)."""
        ...

    def current(self) -> str | None:
        """The version ``CURRENT`` names, or None before any was promoted."""
        ...

    def versions(self) -> list[str]:
        """Every complete published version, oldest first."""
        ...
