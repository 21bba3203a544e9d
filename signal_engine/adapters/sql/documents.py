"""DocumentStore on SQL: the embedded default for news and reports (DocumentDB in AWS)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import existing_rows, in_transaction, upsert
from signal_engine.storage.records import Document, DocumentKind, WriteResult
from signal_engine.storage.times import naive_utc

DOCUMENT_KEY = ("kind", "id")
SYMBOL_KEY = ("kind", "symbol", "id")


class SqlDocumentStore:
    """Documents as JSON rows keyed by (kind, id), with a (kind, symbol, published_at) lookup table.

    Parameters
    ----------
    engine
        A migrated SQLAlchemy engine (normally the embedded SQLite one).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def write_documents(self, documents: Sequence[Document]) -> WriteResult:
        """Upsert by stable id in one transaction; a document seen before with the same content is unchanged."""
        rows: dict[tuple[str, str], dict[str, Any]] = {(doc.kind, doc.id): _row(doc) for doc in documents}
        return in_transaction(self._engine, lambda connection: _write(connection, rows))

    def read_documents(self, kind: DocumentKind, symbol: str, start: datetime | None = None,
                       end: datetime | None = None) -> list[Document]:
        docs, links = schema.documents, schema.document_symbols
        query = (sa.select(docs.c.content)
                 .join(links, sa.and_(links.c.kind == docs.c.kind, links.c.id == docs.c.id))
                 .where(links.c.kind == kind, links.c.symbol == symbol)
                 .order_by(links.c.published_at, links.c.id))
        if start is not None:
            query = query.where(links.c.published_at >= naive_utc(start))
        if end is not None:
            query = query.where(links.c.published_at <= naive_utc(end))
        with self._engine.connect() as connection:
            return [_document(content) for content in connection.execute(query).scalars()]


def _write(connection: sa.Connection, rows: dict[tuple[str, str], dict[str, Any]]) -> WriteResult:
    stored = existing_rows(connection, schema.documents, DOCUMENT_KEY, rows)
    changed = [row for key, row in rows.items() if key not in stored or stored[key]["content"] != row["content"]]
    upsert(connection, schema.documents, changed, DOCUMENT_KEY)
    for row in changed:
        connection.execute(schema.document_symbols.delete().where(
            schema.document_symbols.c.kind == row["kind"], schema.document_symbols.c.id == row["id"]))
    links = [{"kind": row["kind"], "symbol": symbol, "id": row["id"], "published_at": row["published_at"]}
             for row in changed for symbol in row["content"]["symbols"]]
    upsert(connection, schema.document_symbols, links, SYMBOL_KEY)
    inserted = sum(1 for key in rows if key not in stored)
    return WriteResult(inserted=inserted, updated=len(changed) - inserted, unchanged=len(rows) - len(changed))


def _row(doc: Document) -> dict[str, Any]:
    published = naive_utc(doc.published_at)
    content = {**dataclasses.asdict(doc), "symbols": list(doc.symbols), "published_at": published.isoformat()}
    return {"kind": doc.kind, "id": doc.id, "source": doc.source, "published_at": published, "content": content}


def _document(content: dict[str, Any]) -> Document:
    return Document(**{**content, "symbols": tuple(content["symbols"]),
                       "published_at": datetime.fromisoformat(content["published_at"])})
