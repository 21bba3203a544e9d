"""Labels with timelines (signal_engine/text/timeline_labels.py): each document labelled by the move after it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.cli import main
from signal_engine.data.loader import PriceSeries
from signal_engine.storage.ingest import ingest_prices
from signal_engine.storage.records import Document, DocumentKind
from signal_engine.text.corpus import load_corpus
from signal_engine.text.timeline_labels import UNKNOWN, corpus_rows, timeline_labels

HORIZON, THRESHOLD = 2, 0.5


def _series(log_returns: list[float]) -> PriceSeries:
    """Daily bars (session dates) whose closes follow ``log_returns`` from 100."""
    close = 100 * np.exp(np.cumsum([0.0, *log_returns]))
    index = pd.date_range("2024-01-01", periods=len(close), freq="B", name="timestamp")
    bars = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close}, index=index)
    return PriceSeries("TEST", "synthetic", bars)


def _document(published: datetime, title: str = "headline") -> Document:
    return Document(id=Document.stable_id("test", "news", title + str(published)), kind="news", source="test",
                    symbols=("TEST",), published_at=published, title=title)


def _close(day: str) -> datetime:
    """A session's close in UTC (16:00 New York in January: 21:00 UTC)."""
    return datetime.fromisoformat(day) + timedelta(hours=21)


def test_a_document_counts_from_the_first_bar_closing_after_it() -> None:
    series = _series([0.0] * 9)
    sigma = np.full(10, 0.01)
    documents = [_document(_close("2024-01-02") - timedelta(minutes=1)), _document(_close("2024-01-02")),
                 _document(datetime(2023, 12, 1))]
    labelled = timeline_labels(documents, series, sigma, timeframe="1d", horizon=HORIZON, threshold=THRESHOLD)
    assert list(labelled["bar"]) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"),
                                     pd.Timestamp("2024-01-01")]
    assert list(labelled["known_at"]) == [pd.Timestamp("2024-01-04"), pd.Timestamp("2024-01-05"),
                                          pd.Timestamp("2024-01-03")]


def test_the_label_is_the_move_after_publication_against_the_threshold() -> None:
    # bar 2 -> bar 4: +3% (bullish at sigma 1%: 0.03 / (0.01 * sqrt 2) = 2.1 > 0.5); bar 5 -> 7: -3%; 8 -> 10: flat
    returns = [0.0, 0.0, 0.015, 0.015, 0.0, -0.015, -0.015, 0.0, 0.0, 0.0, 0.0]
    series, sigma = _series(returns), np.full(12, 0.01)
    days = pd.DatetimeIndex(series.bars.index)
    documents = [_document(_close(str(days[i - 1].date()))) for i in (2, 5, 8, 11)]
    labelled = timeline_labels(documents, series, sigma, timeframe="1d", horizon=HORIZON, threshold=THRESHOLD)
    assert list(labelled["label"]) == ["bullish", "bearish", "neutral", UNKNOWN]
    assert labelled["forward_return"].iloc[0] == pytest.approx(0.03)
    assert np.isnan(labelled["forward_return"].iloc[3])


def test_only_prices_after_publication_decide_the_label() -> None:
    returns = [0.0, 0.0, 0.015, 0.015, 0.0, 0.0]
    sigma = np.full(7, 0.01)
    document = [_document(_close("2024-01-02"))]  # counts from bar 2 (2024-01-03); known at bar 4
    base = timeline_labels(document, _series(returns), sigma, timeframe="1d", horizon=HORIZON, threshold=THRESHOLD)
    before = timeline_labels(document, _series([0.05, -0.04, *returns[2:]]), sigma, timeframe="1d",
                             horizon=HORIZON, threshold=THRESHOLD)
    later = timeline_labels(document, _series([*returns[:4], -0.2, 0.3]), sigma, timeframe="1d",
                            horizon=HORIZON, threshold=THRESHOLD)
    truncated = timeline_labels(document, _series(returns[:4]), sigma[:5], timeframe="1d", horizon=HORIZON,
                                threshold=THRESHOLD)
    assert base["label"].iloc[0] == "bullish"
    for other in (before, later, truncated):  # prices up to publication, or after the label is known
        assert other["label"].iloc[0] == "bullish"
        assert other["forward_return"].iloc[0] == pytest.approx(base["forward_return"].iloc[0])
    within = timeline_labels(document, _series([0.0, 0.0, -0.015, -0.015, 0.0, 0.0]), sigma, timeframe="1d",
                             horizon=HORIZON, threshold=THRESHOLD)
    assert within["label"].iloc[0] == "bearish"  # the move inside the horizon is what counts


def test_known_labels_become_a_corpus_that_text_train_reads(tmp_path: Path) -> None:
    labelled = pd.DataFrame({"label": ["bullish", UNKNOWN, "bearish", "neutral"], "text": ["up", "?", "down", "so"]})
    corpus = corpus_rows(labelled)
    path = tmp_path / "corpus.csv"
    corpus.to_csv(path, index=False)
    assert load_corpus(path).to_dict("list") == {"text": ["up", "down", "so"], "label": [1, 0, 2]}


def test_the_command_labels_the_stored_documents_of_a_symbol(goog_csv: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/store.db"
    storage = bootstrap(Settings(database_url=database, object_store=str(tmp_path / "objects")))
    ingest_prices(goog_csv, storage.prices, symbol="GOOG")
    # 10:00 New York (before that day's close), 18:00 New York (after it), 07:00 New York
    dated: list[tuple[datetime, DocumentKind]] = [(datetime(2010, 3, 1, 15), "news"),
                                                  (datetime(2010, 6, 1, 22), "reports"),
                                                  (datetime(2013, 3, 1, 12), "news")]
    documents = [Document(id=f"d{i}", kind=kind, source="test", symbols=("GOOG",), published_at=at,
                          title=f"document {i}") for i, (at, kind) in enumerate(dated)]
    storage.documents.write_documents(documents)
    out, corpus = tmp_path / "labels.csv", tmp_path / "corpus.csv"
    assert main(["text-labels", "--symbol", "GOOG", "--database", database, "--out", str(out),
                 "--corpus", str(corpus), "--horizon", "5"]) == 0
    labelled = pd.read_csv(out)
    assert list(labelled["id"]) == ["d0", "d1", "d2"]
    assert list(labelled["bar"]) == ["2010-03-01", "2010-06-02", "2013-03-01"]
    assert set(labelled["label"]) <= {"bearish", "bullish", "neutral", UNKNOWN}
    assert len(pd.read_csv(corpus)) == int((labelled["label"] != UNKNOWN).sum())
