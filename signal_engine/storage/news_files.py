"""News files: one symbol's stored news as JSON lines, ``news/<SYMBOL>.jsonl`` in the datasets bucket.

The bars export writes them (:func:`signal_engine.storage.export.export_news`) beside ``bars/<timeframe>/``, so the
training workflow's prepare job can give the MoE's news slot (``moe.news``) each bar's ``news_score`` without a
document store: :class:`signal_engine.adapters.news_files.NewsFileStore` reads the folder back as a read-only
``DocumentStore``. Each line is one document, oldest first (by publication time, then id)::

    {"id": "3f0c...", "kind": "news", "published_at": "2024-01-05T14:30:00Z", "symbols": ["AAPL"],
     "title": "Apple shares rally", "source": "yahoo_news"}

Only what the slot reads is kept: the stable id (ties in time are broken by it), the kind, the publication time (UTC,
whole seconds; the point-in-time join counts a document only at bars that close strictly after it), the symbols it
names and its headline; ``source`` says where it was collected. Links, publishers and bodies stay in the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from signal_engine.errors import InputError
from signal_engine.storage.records import Document
from signal_engine.storage.times import naive_utc

NEWS_PREFIX = "news"
NEWS_SUFFIX = ".jsonl"
NEWS_CONTENT_TYPE = "application/x-ndjson"
FIELDS = ("id", "kind", "published_at", "symbols", "title", "source")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def news_key(symbol: str, prefix: str = NEWS_PREFIX) -> str:
    """``news/AAPL.jsonl``: where the export writes a symbol's news and the workflow's ``news`` channel reads it."""
    return f"{prefix.strip('/')}/{symbol}{NEWS_SUFFIX}" if prefix.strip("/") else f"{symbol}{NEWS_SUFFIX}"


def news_lines(documents: Iterable[Document]) -> bytes:
    """The documents as news-file lines, oldest first (ties by id), each document once."""
    unique = {doc.id: doc for doc in documents}
    ordered = sorted(unique.values(), key=lambda doc: (naive_utc(doc.published_at), doc.id))
    return "".join(json.dumps(_record(doc), ensure_ascii=False, sort_keys=True) + "\n"
                   for doc in ordered).encode("utf-8")


def read_news_lines(data: bytes, source: str) -> list[Document]:
    """The documents of a news file (``source`` names it in errors); :class:`InputError` for a malformed line."""
    documents: list[Document] = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(_document(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(source, f"not a news document ({exc}); expected the fields {', '.join(FIELDS)}",
                             line=number) from None
    return documents


def first_published(documents: Sequence[Document]) -> datetime | None:
    """The earliest publication time (naive UTC), None for no documents."""
    return min((naive_utc(doc.published_at) for doc in documents), default=None)


def _record(doc: Document) -> dict[str, Any]:
    return {"id": doc.id, "kind": doc.kind, "published_at": naive_utc(doc.published_at).strftime(TIME_FORMAT),
            "symbols": list(doc.symbols), "title": doc.title, "source": doc.source}


def _document(raw: dict[str, Any]) -> Document:
    symbols = raw["symbols"]
    if raw["kind"] not in ("news", "reports") or not isinstance(symbols, list) or not isinstance(raw["title"], str):
        raise ValueError(f"kind {raw['kind']!r}, symbols {symbols!r}")
    return Document(id=str(raw["id"]), kind=raw["kind"], source=str(raw["source"]),
                    symbols=tuple(str(s) for s in symbols),
                    published_at=datetime.strptime(raw["published_at"], TIME_FORMAT), title=raw["title"])
