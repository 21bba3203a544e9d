"""DocumentStore on a folder of news files (``<SYMBOL>.jsonl``, :mod:`signal_engine.storage.news_files`), read only.

The training workflow's prepare job reads its ``news`` channel (the datasets bucket's ``news/`` prefix, written by the
bars export from DocumentDB) through it, so :func:`signal_engine.workflow.news.slot_series` scores the same documents
it would read from the store. A symbol without a file has no news (every bar's slot abstains).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from signal_engine.storage.news_files import news_key, read_news_lines
from signal_engine.storage.records import Document, DocumentKind, WriteResult
from signal_engine.storage.times import naive_utc


class NewsFileStore:
    """The documents of ``folder/<SYMBOL>.jsonl``, each file read once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._read: dict[str, list[Document]] = {}

    def write_documents(self, documents: Sequence[Document]) -> WriteResult:
        raise NotImplementedError(f"{self.folder}: news files are read only; the bars export writes them from the "
                                  "document store")

    def read_documents(self, kind: DocumentKind, symbol: str, start: datetime | None = None,
                       end: datetime | None = None) -> list[Document]:
        """Documents of ``kind`` that name ``symbol``, by publication time (oldest first), within [start, end]."""
        low = naive_utc(start) if start is not None else None
        high = naive_utc(end) if end is not None else None
        return [doc for doc in self._documents(symbol)
                if doc.kind == kind and symbol in doc.symbols
                and (low is None or doc.published_at >= low) and (high is None or doc.published_at <= high)]

    def _documents(self, symbol: str) -> list[Document]:
        if symbol not in self._read:
            path = self.folder / news_key(symbol, prefix="")
            read = read_news_lines(path.read_bytes(), str(path)) if path.is_file() else []
            self._read[symbol] = sorted(read, key=lambda doc: (doc.published_at, doc.id))
        return self._read[symbol]
