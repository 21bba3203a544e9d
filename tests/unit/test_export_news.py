"""Export of the stored news as the training workflow's ``news`` channel: the document store -> news/<SYMBOL>.jsonl ->
the same documents through the read-only file store the prepare job reads, point in time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.documentdb import DocumentDbStore
from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.adapters.news_files import NewsFileStore
from signal_engine.errors import ConfigError, InputError
from signal_engine.storage.export import export_news
from signal_engine.storage.news_files import news_key, news_lines, read_news_lines
from signal_engine.storage.records import Document
from signal_engine.text.aggregate import NewsDecay, news_per_bar
from tests.unit.test_documentdb import database as database  # mongomock, kept to DocumentDB's API subset


def news(native: str, published: datetime, *symbols: str, title: str = "headline") -> Document:
    return Document(Document.stable_id("yahoo", "news", native), "news", "yahoo", tuple(symbols), published, title,
                    url=f"https://news.test/{native}", publisher="Reuters", body={"type": "STORY"})


@pytest.fixture
def documents(database: Any) -> DocumentDbStore:
    return DocumentDbStore(database)


@pytest.fixture
def objects(tmp_path: Path) -> LocalFolderStore:
    return LocalFolderStore(tmp_path / "datasets")


def test_each_symbols_news_is_written_oldest_first_with_only_what_the_slot_reads(
        documents: DocumentDbStore, objects: LocalFolderStore) -> None:
    documents.write_documents([news("b", datetime(2024, 1, 3, 15), "AAPL", "MSFT", title="Apple \u2014 later"),
                               news("a", datetime(2024, 1, 2, 14, 30), "AAPL", title="Apple first")])
    result = export_news(documents, objects, ["aapl", "MSFT"])
    assert [(n.symbol, n.key, n.documents, n.first, n.last) for n in result.exported] == [
        ("AAPL", "news/AAPL.jsonl", 2, "2024-01-02 14:30:00", "2024-01-03 15:00:00"),
        ("MSFT", "news/MSFT.jsonl", 1, "2024-01-03 15:00:00", "2024-01-03 15:00:00")]
    first, second = objects.get("news/AAPL.jsonl").decode("utf-8").splitlines()
    assert first == ('{"id": "' + Document.stable_id("yahoo", "news", "a") + '", "kind": "news", '
                     '"published_at": "2024-01-02T14:30:00Z", "source": "yahoo", "symbols": ["AAPL"], '
                     '"title": "Apple first"}')
    assert '"title": "Apple \u2014 later"' in second and '"symbols": ["AAPL", "MSFT"]' in second
    assert "url" not in first and "publisher" not in first and "body" not in first


def test_a_symbol_without_news_keeps_its_previous_file(documents: DocumentDbStore, objects: LocalFolderStore) -> None:
    objects.put("news/MSFT.jsonl", b"previous")
    documents.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL")])
    result = export_news(documents, objects, ["AAPL", "MSFT"])
    assert [n.symbol for n in result.exported] == ["AAPL"]
    assert list(result.missing) == ["MSFT"] and "no news stored" in result.missing["MSFT"]
    assert objects.get("news/MSFT.jsonl") == b"previous"


def test_a_file_reaching_further_back_than_the_store_is_kept(documents: DocumentDbStore,
                                                             objects: LocalFolderStore) -> None:
    older = news_lines([news("old", datetime(2023, 6, 1, 12), "AAPL")])
    objects.put("news/AAPL.jsonl", older)
    documents.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL")])
    result = export_news(documents, objects, ["AAPL"])
    assert (result.exported, list(result.kept)) == ((), ["AAPL"])
    assert "2023-06-01 12:00:00" in result.kept["AAPL"]
    assert objects.get("news/AAPL.jsonl") == older
    assert result.as_dict()["kept"] == result.kept


def test_a_file_starting_later_or_unreadable_is_replaced(documents: DocumentDbStore,
                                                         objects: LocalFolderStore) -> None:
    objects.put("news/AAPL.jsonl", news_lines([news("late", datetime(2024, 3, 1), "AAPL")]))
    objects.put("news/MSFT.jsonl", b"not json\n")
    documents.write_documents([news("a", datetime(2024, 1, 2, 15), "AAPL", "MSFT")])
    result = export_news(documents, objects, ["AAPL", "MSFT"])
    assert [n.symbol for n in result.exported] == ["AAPL", "MSFT"]
    assert objects.get("news/MSFT.jsonl").count(b"\n") == 1


def test_bad_symbols_are_refused(documents: DocumentDbStore, objects: LocalFolderStore) -> None:
    with pytest.raises(ConfigError, match="no symbols"):
        export_news(documents, objects, [" "])
    with pytest.raises(ConfigError, match="cannot name a dataset file"):
        export_news(documents, objects, ["A/B"])


def test_the_file_store_answers_as_the_document_store_did(documents: DocumentDbStore, objects: LocalFolderStore,
                                                          tmp_path: Path) -> None:
    stored = [news("a", datetime(2024, 1, 2, 15), "AAPL"), news("b", datetime(2024, 1, 3, 9), "AAPL", "MSFT"),
              news("c", datetime(2024, 1, 4, 21), "AAPL")]
    documents.write_documents(stored)
    export_news(documents, objects, ["AAPL"])
    files = NewsFileStore(tmp_path / "datasets" / "news")
    start, end = datetime(2024, 1, 3, 9), datetime(2024, 1, 4, 21, tzinfo=UTC)
    assert [d.id for d in files.read_documents("news", "AAPL", start, end)] == [stored[1].id, stored[2].id]
    assert [(d.published_at, d.title, d.symbols) for d in files.read_documents("news", "AAPL")] == [
        (d.published_at, d.title, d.symbols) for d in documents.read_documents("news", "AAPL")]
    assert files.read_documents("reports", "AAPL") == []
    assert files.read_documents("news", "MSFT") == []  # no MSFT file: no news
    with pytest.raises(NotImplementedError, match="read only"):
        files.write_documents(stored)


def test_a_malformed_line_names_the_file_and_line() -> None:
    good = news_lines([news("a", datetime(2024, 1, 2, 15), "AAPL")])
    with pytest.raises(InputError, match=r"news/AAPL.jsonl: line 2: not a news document.*expected the fields"):
        read_news_lines(good + b'{"id": "x", "kind": "tweet"}\n', "news/AAPL.jsonl")


def test_a_headline_published_after_a_bars_close_reaches_only_later_bars_through_the_exported_file(
        documents: DocumentDbStore, objects: LocalFolderStore, tmp_path: Path) -> None:
    """Daily bars close at 16:00 New York (21:00 UTC in January). A bullish headline at 20:59 UTC on the 2nd counts
    at the 2nd's bar; a bearish one at 21:01 UTC (after that close) only from the 3rd's bar on."""
    documents.write_documents([news("before", datetime(2024, 1, 2, 20, 59), "AAPL", title="bullish"),
                               news("after", datetime(2024, 1, 2, 21, 1), "AAPL", title="bearish")])
    assert export_news(documents, objects, ["AAPL"]).exported[0].key == news_key("AAPL")
    bars = pd.DatetimeIndex([datetime(2024, 1, 2), datetime(2024, 1, 3)])

    def scorer(texts: Any) -> np.ndarray:  # bearish, bullish, neutral
        return np.array([[0.0, 1.0, 0.0] if t == "bullish" else [1.0, 0.0, 0.0] for t in texts]).reshape(-1, 3)

    decay = NewsDecay(prior_weight=1.0)
    frame = news_per_bar(NewsFileStore(tmp_path / "datasets" / "news"), "AAPL", bars, "1d", scorer, decay=decay)
    assert frame["news_score"].iloc[0] == pytest.approx(1.0)  # the 21:01 headline is not in the 2nd's score
    assert frame["news_count"].tolist() == [1, 2]
    # on the 3rd (close 21:00 UTC), the bullish one is 24 h 1 min old, the bearish one 23 h 59 min: weights 2^-(age/24h)
    bullish, bearish = 2 ** (-(24 + 1 / 60) / 24), 2 ** (-(23 + 59 / 60) / 24)
    assert frame["news_score"].iloc[1] == pytest.approx((bullish - bearish) / (bullish + bearish))
