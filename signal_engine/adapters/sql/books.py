"""BookStore on SQL: each stepped bar of a live book as one state row, its positions and its events.

The read side the Signal API uses (``BookReader``: books, span, bar times, state documents, positions, event rows)
imports no pandas, so that the combiner Lambda (which carries none) can read books; ``BookState`` and
``OrchestrationEvent`` (pandas) are imported only by the methods that return them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import in_transaction
from signal_engine.errors import SignalEngineError
from signal_engine.json_values import json_number, number_from_json
from signal_engine.storage.records import BookEventRow, BookPosition, BookSpan
from signal_engine.storage.times import utc_now

if TYPE_CHECKING:
    from signal_engine.orchestration.events import OrchestrationEvent
    from signal_engine.orchestration.state import BookState


class BookConflictError(SignalEngineError):
    """A step that would not follow the book's latest stored bar (another step got there first)."""


class SqlBookStore:
    """Live books on a migrated SQLAlchemy engine (MySQL/MariaDB or SQLite), tables ``book_states``,
    ``book_positions`` and ``book_events`` (``docs/book-state.md``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def latest(self, book: str) -> tuple[datetime, BookState] | None:
        from signal_engine.orchestration.state import BookState

        table = schema.book_states
        query = (sa.select(table.c.bar_time, table.c.state).where(table.c.book == book)
                 .order_by(table.c.bar_time.desc()).limit(1))
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (row.bar_time, BookState.from_json(row.state))

    def stepped(self, book: str, bar_time: datetime) -> tuple[BookState, str] | None:
        from signal_engine.orchestration.state import BookState

        table = schema.book_states
        query = sa.select(table.c.state, table.c.inputs_digest).where(table.c.book == book,
                                                                         table.c.bar_time == bar_time)
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (BookState.from_json(row.state), row.inputs_digest)

    def commit_step(self, book: str, bar_time: datetime, state: BookState, positions: Sequence[BookPosition],
                    events: Sequence[OrchestrationEvent], *, previous: datetime | None, inputs_digest: str) -> None:
        state_row = {"book": book, "bar_time": bar_time, "state": state.to_json(), "inputs_digest": inputs_digest,
                     "created_at": utc_now()}
        position_rows = [{"book": book, "bar_time": bar_time, "symbol": p.symbol, "position": p.position,
                          "contributions": {k: json_number(v) for k, v in p.contributions.items()}}
                         for p in positions]
        event_rows = [_event_row(book, bar_time, seq, event) for seq, event in enumerate(events)]

        def work(connection: sa.Connection) -> None:
            _check_previous(connection, book, bar_time, previous)
            _insert_state(connection, state_row)
            _insert_positions(connection, position_rows)
            _insert_events(connection, event_rows)

        in_transaction(self._engine, work)

    def positions(self, book: str, bar_time: datetime | None = None) -> list[BookPosition]:
        table = schema.book_positions
        with self._engine.connect() as connection:
            if bar_time is None:
                bar_time = connection.execute(sa.select(sa.func.max(schema.book_states.c.bar_time))
                                              .where(schema.book_states.c.book == book)).scalar()
                if bar_time is None:
                    return []
            query = sa.select(table).where(table.c.book == book, table.c.bar_time == bar_time).order_by(
                table.c.symbol)
            rows = connection.execute(query).mappings().all()
        return [BookPosition(book=row["book"], bar_time=row["bar_time"], symbol=row["symbol"],
                             position=row["position"],
                             contributions={k: number_from_json(v) for k, v in row["contributions"].items()})
                for row in rows]

    def events(self, book: str, since: datetime | None = None,
               until: datetime | None = None) -> list[OrchestrationEvent]:
        import pandas as pd

        from signal_engine.orchestration.events import OrchestrationEvent

        return [OrchestrationEvent(
            timestamp=pd.Timestamp(row.bar_time), component=row.component,  # type: ignore[arg-type]
            kind=row.kind, rule=row.rule, symbol=row.symbol,  # type: ignore[arg-type]
            model=row.model, value=row.value, threshold=row.threshold, detail=row.detail,
        ) for row in self.event_rows(book, since=since, until=until)]

    def event_rows(self, book: str, *, since: datetime | None = None,
                   until: datetime | None = None) -> list[BookEventRow]:
        table = schema.book_events
        query = sa.select(table).where(table.c.book == book)
        if since is not None:
            query = query.where(table.c.bar_time > since)
        if until is not None:
            query = query.where(table.c.bar_time <= until)
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(table.c.bar_time, table.c.seq)).mappings().all()
        return [BookEventRow(
            book=row["book"], bar_time=row["bar_time"], seq=row["seq"], component=row["component"], kind=row["kind"],
            rule=row["rule"], symbol=row["symbol"], model=row["model"], value=_from_column(row["value"]),
            threshold=_from_column(row["threshold"]),
            detail={k: _detail_from_json(v) for k, v in row["detail"].items()},
        ) for row in rows]

    def books(self) -> list[str]:
        table = schema.book_states
        with self._engine.connect() as connection:
            return [str(name) for name in connection.execute(
                sa.select(table.c.book).distinct().order_by(table.c.book)).scalars()]

    def span(self, book: str) -> BookSpan | None:
        table = schema.book_states
        query = sa.select(sa.func.min(table.c.bar_time), sa.func.max(table.c.bar_time), sa.func.count()).where(
            table.c.book == book)
        with self._engine.connect() as connection:
            first, latest, count = connection.execute(query).one()
        return None if not count else BookSpan(first=first, latest=latest, bars=int(count))

    def bar_times(self, book: str, *, until: datetime | None = None, last: int | None = None) -> list[datetime]:
        table = schema.book_states
        query = sa.select(table.c.bar_time).where(table.c.book == book).order_by(table.c.bar_time.desc())
        if until is not None:
            query = query.where(table.c.bar_time <= until)
        if last is not None:
            query = query.limit(last)
        with self._engine.connect() as connection:
            return sorted(connection.execute(query).scalars())

    def state_document(self, book: str, bar_time: datetime) -> dict[str, Any] | None:
        table = schema.book_states
        query = sa.select(table.c.state).where(table.c.book == book, table.c.bar_time == bar_time)
        with self._engine.connect() as connection:
            text = connection.execute(query).scalar()
        if text is None:
            return None
        document = json.loads(text)
        if not isinstance(document, dict):
            raise SignalEngineError(f"book {book!r}: the state stored for bar {bar_time} is not a JSON object")
        return document


def _detail_to_json(value: float | str) -> Any:
    """A detail value for a JSON column: text and finite numbers as they are, others as ``{"float": "NaN"}``."""
    if isinstance(value, str) or math.isfinite(value):
        return value
    return {"float": json_number(value)}


def _detail_from_json(value: Any) -> float | str:
    if isinstance(value, dict):
        return number_from_json(value["float"])
    return value if isinstance(value, str) else float(value)


def _from_column(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _to_column(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _event_row(book: str, bar_time: datetime, seq: int, event: OrchestrationEvent) -> dict[str, Any]:
    return {"book": book, "bar_time": bar_time, "seq": seq, "component": event.component, "kind": event.kind,
            "rule": event.rule, "symbol": event.symbol, "model": event.model, "value": _to_column(event.value),
            "threshold": _to_column(event.threshold),
            "detail": {k: _detail_to_json(v) for k, v in event.detail.items()}}


def _check_previous(connection: sa.Connection, book: str, bar_time: datetime, previous: datetime | None) -> None:
    """The book's latest stored bar must be ``previous`` (locked until the transaction ends on MySQL)."""
    table = schema.book_states
    query = (sa.select(table.c.bar_time).where(table.c.book == book).order_by(table.c.bar_time.desc()).limit(1)
             .with_for_update())
    latest = connection.execute(query).scalar()
    if latest != previous:
        raise BookConflictError(f"book {book!r}: bar {bar_time} was stepped from {previous}, but the book's latest "
                                f"stored bar is {latest}; another step got there first, step again from the store")


def _insert_state(connection: sa.Connection, row: dict[str, Any]) -> None:
    connection.execute(schema.book_states.insert(), row)


def _insert_positions(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(schema.book_positions.insert(), rows)


def _insert_events(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(schema.book_events.insert(), rows)
