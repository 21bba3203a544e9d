"""The whole book with the news slot (``moe.news``) and online learning, on Alphabet's first daily bars with made-up
headlines in the local document store: `signal-engine train` gives every timeframe model the slot and the text
expert, the book's seed is the state the backtest's book ends in on the same scored bars, and the live book step
reads the stored headlines known before each bar's close for every model (the slot's input its learners keep is the
training rows' ``news_score`` of that bar), never one published at or after it."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.cli import load_configs, main
from signal_engine.config import NEWS_COLUMN
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.portfolio import build_books
from signal_engine.live.books import step_books
from signal_engine.pipeline import walk_forward
from signal_engine.serving.book_bundle import BookBundle
from signal_engine.serving.news import decision_time
from signal_engine.storage.ingest import ingest_prices
from signal_engine.storage.records import Document
from signal_engine.workflow.news import NewsTraining, news_expert, slot_series
from tests.fixtures.configs import TWO_MODEL_BOOK
from tests.live_step_support import cut_prices, stored_book
from tests.serving_support import text_model_folder

pytestmark = pytest.mark.slow

TRAINED, LIVE = 650, 652
MAX_DOCUMENTS = 20
BULLISH, BEARISH = "Google shares rally as profit beats forecasts", "Google hit by lawsuit over privacy"
MODELS = {"short": ".", "medium": "books/daily/medium"}


def config_text() -> str:
    return TWO_MODEL_BOOK + f"""moe:
  news: true
  online:
    enabled: true
news:
  enabled: true
  model: {text_model_folder()}
  max_documents: {MAX_DOCUMENTS}
"""


def news(title: str, at: datetime, key: str) -> Document:
    return Document(Document.stable_id("test", "news", key), "news", "test", ("GOOG",), at, title)


def headlines(index: pd.DatetimeIndex) -> list[Document]:
    """A headline at 14:30 UTC, before the close, on every third of the last 150 training bars and every live bar."""
    days = [*index[TRAINED - 150:TRAINED:3], *index[TRAINED:LIVE]]
    return [news((BULLISH, BEARISH)[i % 2], day.to_pydatetime() + timedelta(hours=14, minutes=30), str(i))
            for i, day in enumerate(days)]


class Stores:
    """What ``step_books`` reads and writes, with the document store the news slot reads."""

    def __init__(self, database: SqlDatabase) -> None:
        self.prices, self.books, self.documents = database.prices, database.books, database.documents
        self.recent_bars = SqlRecentBars(database.engine)


@pytest.fixture(scope="module")
def files(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    cuts = cut_prices(tmp_path_factory.mktemp("prices"), {"GOOG": goog_csv}, (TRAINED, LIVE))
    return {rows: cuts["GOOG", rows] for rows in (TRAINED, LIVE)}


@pytest.fixture(scope="module")
def series(files: dict[int, Path]) -> dict[int, PriceSeries]:
    return {rows: load_prices(path, "GOOG") for rows, path in files.items()}


@pytest.fixture(scope="module")
def documents(series: dict[int, PriceSeries], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "store.db"
    database = SqlDatabase.connect(f"sqlite:///{path}")
    database.documents.write_documents(headlines(pd.DatetimeIndex(series[LIVE].bars.index)))
    database.close()
    return path


@pytest.fixture(scope="module")
def version(files: dict[int, Path], documents: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    (folder / "config.yaml").write_text(config_text())
    assert main(["train", "--config", str(folder / "config.yaml"), "--registry", str(folder / "models"),
                 "--prices", str(files[TRAINED]), "--symbol", "GOOG", "--database", f"sqlite:///{documents}",
                 "--jobs", "1"]) == 0
    return folder / "models" / (folder / "models" / "CURRENT").read_text().strip()


def scored(s: PriceSeries, documents: Path) -> PriceSeries:
    """``s`` with each bar's news_score as training computes it: the stored headlines before its close."""
    database = SqlDatabase.connect(f"sqlite:///{documents}")
    try:
        expert = news_expert(NewsTraining(enabled=True, model=str(text_model_folder())))
        [out], _ = slot_series([s], database.documents, expert, MAX_DOCUMENTS)
    finally:
        database.close()
    return out


def test_every_timeframe_model_of_the_book_has_the_news_slot_and_the_same_text_expert(version: Path) -> None:
    bundle = BookBundle.load(version)
    daily = bundle.book("daily")
    assert {m.spec.name: m.bundle for m in daily.models} == MODELS
    heads = set()
    for folder in MODELS.values():
        served = bundle.bundles[folder]
        assert served.news_slot and served.slots == ("trend", "levels", "volatility", "news")
        assert served.news is not None and (bundle.folder(folder) / served.news.folder / "head.npz").is_file()
        assert served.online is not None
        heads.add(served.news.head_sha256)
    assert len(heads) == 1


def test_the_seed_is_the_state_the_backtests_news_book_ends_in(version: Path, series: dict[int, PriceSeries],
                                                                 documents: Path, tmp_path: Path) -> None:
    """The backtest of the training bars, each with the news_score training gives it, with the training config: its
    book's final state is the version's seed, to the last bit (every timeframe model walked forward with news)."""
    (tmp_path / "config.yaml").write_text(config_text())
    config, orchestration = load_configs("quick", tmp_path / "config.yaml")
    goog = scored(series[TRAINED], documents)
    # every third of the last 150 training bars has a headline, each counting for 7 days: the last 150 bars have news
    with_news = np.isfinite(goog.bars[NEWS_COLUMN].to_numpy())
    assert with_news[-150:].all() and not with_news[:-150].any()
    # the backtest's walk-forwards and books (``backtest_series`` less its files and report)
    results, timeframes = walk_forward([goog], config, Console(stderr=True), orchestration, 1)
    [book] = build_books([goog], results, timeframes, config, orchestration).books
    assert set(book.signals["GOOG"]) == set(MODELS)
    bundle = BookBundle.load(version)
    final, seed = book.result.final_state, bundle.seed_state(bundle.book("daily"))
    assert final is not None and seed is not None
    assert final.to_json() == seed.to_json()


def _stepped(version: Path, files: dict[int, Path], series: dict[int, PriceSeries], documents: Path,
             folder: Path) -> Path:
    """A copy of the document store with the live prices, stepped up to the bar before the last live bar."""
    path = folder / "store.db"
    shutil.copy(documents, path)
    database = SqlDatabase.connect(f"sqlite:///{path}")
    ingest_prices(files[LIVE], database.prices, symbol="GOOG")
    until = pd.Timestamp(series[LIVE].bars.index[-2]).to_pydatetime()
    step_books(Stores(database), version, until=until)
    database.close()
    return path


def _last_bar(path: Path, version: Path, late: list[Document]) -> SqlDatabase:
    database = SqlDatabase.connect(f"sqlite:///{path}")
    database.documents.write_documents(late)
    [report] = step_books(Stores(database), version)
    assert report.stepped == 1
    return database


def test_the_live_step_reads_the_news_for_every_model_and_never_a_headline_after_the_bars_close(
        version: Path, files: dict[int, Path], series: dict[int, PriceSeries], documents: Path,
        tmp_path: Path) -> None:
    before = _stepped(version, files, series, documents, tmp_path)
    last = pd.Timestamp(series[LIVE].bars.index[-1])
    close = decision_time(last.to_pydatetime(), "1d")
    copies = {name: tmp_path / f"{name}.db" for name in ("plain", "late", "early")}
    for path in copies.values():
        shutil.copy(before, path)
    plain = _last_bar(copies["plain"], version, [])
    late = _last_bar(copies["late"], version, [news(BULLISH, close, "at"),
                                               news(BULLISH, close + timedelta(hours=2), "after")])
    early = _last_bar(copies["early"], version, [news(BULLISH, close - timedelta(seconds=1), "before")])
    stored = stored_book(plain, "daily")
    assert stored_book(late, "daily") == stored  # headlines at and after the last close: nothing changes
    assert stored_book(early, "daily") != stored  # the same headline a second before the close counts

    # the slot's input each model's learner kept for its pending bars is that bar's training news_score
    expected = scored(series[LIVE], copies["plain"]).bars[NEWS_COLUMN]
    latest = plain.books.latest("daily")
    assert latest is not None
    for name, horizon in (("short", 5), ("medium", 20)):
        pending = latest[1].model_state[f"{name}/GOOG"]["pending"]
        assert len(pending) == min(horizon, LIVE - TRAINED)
        for bar in pending:
            news_input = float(bar["scores"][3])
            assert np.isfinite(news_input)
            assert news_input == pytest.approx(float(expected.loc[pd.Timestamp(bar["timestamp"])]), abs=1e-12)
