"""DocumentStore on Amazon DocumentDB (MongoDB API, via pymongo): collections ``news`` and ``reports``.

Only what DocumentDB 5.0 supports is used: ``bulk_write`` of ``UpdateOne`` with ``upsert``, ``$set`` and
``$setOnInsert``, ``find`` with range filters and ``sort``, and plain ascending indexes. DocumentDB has no
retryable writes, so clients are created with ``retryWrites=False``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from signal_engine.storage.records import Document, DocumentKind, WriteResult
from signal_engine.storage.times import naive_utc, utc_now

COLLECTIONS: tuple[DocumentKind, ...] = ("news", "reports")
CONTENT_FIELDS = ("kind", "source", "symbols", "published_at", "title", "url", "publisher", "body")


def connect_documentdb(url: str, database: str, *, timeout_ms: int = 5000) -> Database[dict[str, Any]]:
    """A database handle with DocumentDB-safe client options (no retryable writes, bounded timeouts)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        url, retryWrites=False, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=False)
    return client[database]


class DocumentDbStore:
    """News and reports keyed by their stable id (``_id``), indexed by symbol and publication time.

    Parameters
    ----------
    database
        A pymongo database (a real DocumentDB/MongoDB one, or mongomock's in tests).
    """

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self._database = database
        for kind in COLLECTIONS:
            collection = self._collection(kind)
            collection.create_index([("symbols", ASCENDING), ("published_at", ASCENDING)],
                                    name="symbols_published_at")
            collection.create_index([("published_at", ASCENDING)], name="published_at")

    def write_documents(self, documents: Sequence[Document]) -> WriteResult:
        """Upsert by stable id with one unordered bulk write per collection; ``first_seen_at`` is kept."""
        result = WriteResult()
        for kind in COLLECTIONS:
            latest = {doc.id: doc for doc in documents if doc.kind == kind}
            if latest:
                result += self._upsert(self._collection(kind), list(latest.values()))
        return result

    def read_documents(self, kind: DocumentKind, symbol: str, start: datetime | None = None,
                       end: datetime | None = None) -> list[Document]:
        published: dict[str, datetime] = {}
        if start is not None:
            published["$gte"] = naive_utc(start)
        if end is not None:
            published["$lte"] = naive_utc(end)
        query: dict[str, Any] = {"symbols": symbol, **({"published_at": published} if published else {})}
        cursor = self._collection(kind).find(query).sort([("published_at", ASCENDING), ("_id", ASCENDING)])
        return [_document(raw) for raw in cursor]

    def _collection(self, kind: DocumentKind) -> Collection[dict[str, Any]]:
        return self._database[kind]

    def _upsert(self, collection: Collection[dict[str, Any]], documents: list[Document]) -> WriteResult:
        now = utc_now()
        operations = [UpdateOne({"_id": doc.id}, {"$set": _content(doc), "$setOnInsert": {"first_seen_at": now}},
                                upsert=True) for doc in documents]
        outcome = collection.bulk_write(operations, ordered=False)
        inserted = outcome.upserted_count
        updated = outcome.modified_count
        return WriteResult(inserted=inserted, updated=updated, unchanged=len(documents) - inserted - updated)


def _content(doc: Document) -> dict[str, Any]:
    values = dataclasses.asdict(doc)
    return {name: values[name] for name in CONTENT_FIELDS} | {
        "symbols": list(doc.symbols), "published_at": naive_utc(doc.published_at)}


def _document(raw: dict[str, Any]) -> Document:
    return Document(id=raw["_id"], kind=raw["kind"], source=raw["source"], symbols=tuple(raw["symbols"]),
                    published_at=raw["published_at"], title=raw["title"], url=raw.get("url"),
                    publisher=raw.get("publisher"), body=raw.get("body") or {})
