"""The DocumentDB adapter on mongomock, kept to the API subset DocumentDB supports.

mongomock 4.3's ``bulk_write`` breaks on pymongo >= 4.9 (``UpdateOne`` passes a new ``sort`` keyword that
mongomock's bulk builder does not accept). The adapter keeps using ``bulk_write`` (one round trip per batch on
DocumentDB); the ``database`` fixture wraps mongomock's builder so it accepts ``sort=None`` and fails the test
if a sort is ever passed (DocumentDB has no sorted updates either).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import mongomock
import pytest
from mongomock.collection import BulkOperationBuilder

from signal_engine.adapters.documentdb import DocumentDbStore
from signal_engine.storage.records import Document


def _without_sort(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: BulkOperationBuilder, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        assert sort is None, "sorted bulk updates are not part of the DocumentDB API subset"
        return method(self, *args, **kwargs)

    return call


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("add_update", "add_replace"):
        monkeypatch.setattr(BulkOperationBuilder, name, _without_sort(getattr(BulkOperationBuilder, name)))
    return mongomock.MongoClient(tz_aware=False).signal_engine


def news(native: str, published: datetime, *symbols: str, title: str = "headline") -> Document:
    return Document(Document.stable_id("yahoo", "news", native), "news", "yahoo", tuple(symbols), published, title,
                    url=f"https://news.test/{native}", publisher="Reuters", body={"type": "STORY"})


def test_new_documents_are_inserted_by_stable_id(database: Any) -> None:
    store = DocumentDbStore(database)
    result = store.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL"),
                                    news("b", datetime(2024, 1, 3, 15), "AAPL", "MSFT")])
    assert (result.inserted, result.updated) == (2, 0)
    assert database.news.count_documents({}) == 2


def test_writing_the_same_documents_again_changes_nothing(database: Any) -> None:
    store = DocumentDbStore(database)
    batch = [news("a", datetime(2024, 1, 2, 15), "AAPL")]
    store.write_documents(batch)
    assert store.write_documents(batch).unchanged == 1
    assert database.news.count_documents({}) == 1


def test_a_changed_document_is_updated_in_place_keeping_first_seen(database: Any) -> None:
    store = DocumentDbStore(database)
    store.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL")])
    first_seen = database.news.find_one({})["first_seen_at"]
    result = store.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL", title="corrected headline")])
    stored = database.news.find_one({})
    assert result.updated == 1
    assert (stored["title"], stored["first_seen_at"]) == ("corrected headline", first_seen)


def test_documents_are_read_by_symbol_within_a_time_range_oldest_first(database: Any) -> None:
    store = DocumentDbStore(database)
    store.write_documents([news("c", datetime(2024, 1, 9), "AAPL"), news("a", datetime(2024, 1, 2), "AAPL"),
                           news("b", datetime(2024, 1, 3), "MSFT"), news("d", datetime(2024, 1, 4), "AAPL")])
    found = store.read_documents("news", "AAPL", start=datetime(2024, 1, 2), end=datetime(2024, 1, 5))
    assert [d.published_at.day for d in found] == [2, 4]
    assert found[0] == news("a", datetime(2024, 1, 2), "AAPL")


def test_reports_and_news_go_to_their_own_collections(database: Any) -> None:
    report = Document("r1", "reports", "nasdaq", ("AAPL",), datetime(2023, 11, 3), "earnings")
    DocumentDbStore(database).write_documents([report, news("a", datetime(2024, 1, 2), "AAPL")])
    assert (database.reports.count_documents({}), database.news.count_documents({})) == (1, 1)


def test_the_symbol_and_time_index_exists(database: Any) -> None:
    DocumentDbStore(database)
    index = database.news.index_information()["symbols_published_at"]
    assert index["key"] == [("symbols", 1), ("published_at", 1)]


def test_news_stored_under_the_query_is_re_tagged_by_related_tickers_on_replay(database: Any) -> None:
    """The upgrade path of a DocumentDB that holds news tagged with the searched symbol: parsing the kept raw
    payload again (``signal-engine replay``) upserts the same ids with the symbols Yahoo relates them to."""
    from dataclasses import replace

    from signal_engine.collectors import yahoo
    from tests.fixtures.recorded import yahoo_raw

    store = DocumentDbStore(database)
    parsed = yahoo.parse(yahoo_raw("search-AZT.OL.json")).documents
    store.write_documents([replace(doc, symbols=("AZT.OL", *doc.symbols)) for doc in parsed])  # as stored before
    assert any(doc.title.startswith("Carter") for doc in store.read_documents("news", "AZT.OL"))
    result = store.write_documents(parsed)
    assert result.updated == len(parsed) and result.inserted == 0
    assert store.read_documents("news", "AZT.OL") == []
    assert [doc.title[:9] for doc in store.read_documents("news", "CRI")] == ["Carter’s,"]
