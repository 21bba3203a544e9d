"""``moe.news`` through training, the backtest's ``--news-from-store`` and serving, on Alphabet's daily bars with
made-up headlines in the local document store (there is no dated news offline).

Each bar's news score comes from one function (the text expert's ``news_scores``, ``news_per_bar``): the training
rows read it, the backtest reads it, and the served slot's input at a bar is that bar's value; a headline published
after the bar's close reaches neither.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.cli import main, news_from_store
from signal_engine.commands.serve import news_expert as served_news_expert
from signal_engine.config import NEWS_COLUMN
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import ConfigError
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.news import decision_time
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from signal_engine.storage.records import Document
from signal_engine.workflow.local import LocalRunner
from signal_engine.workflow.news import NewsTraining, news_expert, slot_series
from signal_engine.workflow.settings import training_settings
from signal_engine.workflow.steps import TrainingInputs
from tests.serving_support import text_model_folder

LENIENT = {"max_sharpe_shortfall": 100.0, "max_confidence_ece": 1.0, "max_log_loss_excess": 100.0,
           "max_qlike_excess": 100.0}
END = "2010-06-30"
TITLES = ("Google shares rally as profit beats forecasts", "Google hit by lawsuit over privacy",
          "Google opens new office")


def headlines(series: PriceSeries, every: int = 4, last: int = 400) -> list[Document]:
    """A headline at 14:30 UTC (before the close) on every ``every``-th of the last ``last`` bars."""
    days = pd.DatetimeIndex(series.bars.index)[-last::every]
    return [Document(Document.stable_id("test", "news", str(i)), "news", "test", ("GOOG",),
                     day.to_pydatetime() + timedelta(hours=14, minutes=30), TITLES[i % 3])
            for i, day in enumerate(days)]


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> PriceSeries:
    series = load_prices(goog_csv)
    return PriceSeries(series.symbol, series.source, series.bars.loc[:END])


@pytest.fixture(scope="module")
def database(goog: PriceSeries, tmp_path_factory: pytest.TempPathFactory) -> SqlDatabase:
    database = SqlDatabase.connect(f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}")
    database.documents.write_documents(headlines(goog))
    return database


def news_settings() -> NewsTraining:
    return NewsTraining(enabled=True, model=str(text_model_folder()), max_documents=20)


def test_train_refuses_the_news_slot_without_the_text_expert(goog_csv: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "slot.json"
    config.write_text(json.dumps({"moe": {"news": True}}))
    assert main(["train", "--no-book", "--prices", str(goog_csv), "--config", str(config), "--registry",
                 str(tmp_path / "models"), "--database", f"sqlite:///{tmp_path / 'store.db'}"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "moe.news is true, but the bundle would not carry the text expert" in error
    assert "add 'news: {enabled: true}'" in error and not (tmp_path / "models").exists()


def test_train_exports_the_news_slot_and_serves_the_per_bar_score(goog: PriceSeries, database: SqlDatabase,
                                                                  tmp_path: Path) -> None:
    config, quality = training_settings("quick", {"walk_forward": {"refit_every": 504}, "moe": {"news": True},
                                                  "quality": LENIENT})
    run = LocalRunner(LocalModelRegistry(tmp_path / "models"), config, quality, news=news_settings(),
                      documents=database.documents).run(TrainingInputs(symbols=("GOOG",)), [goog],
                                                        work_dir=tmp_path / "work")
    folder = tmp_path / "models" / run.version
    bundle = ServingBundle.load(folder)
    assert bundle.news_slot and bundle.slots == ("trend", "levels", "volatility", "news")
    assert bundle.experts == ("trend", "levels", "volatility") and bundle.news is not None
    # the training rows' news_score: the store's headlines scored by the bundle's text expert, bar by bar
    dataset = load_prices(tmp_path / "work" / "dataset" / "GOOG.csv", "GOOG")
    expert = news_expert(news_settings())
    [expected], sources = slot_series([goog], database.documents, expert, 20)
    assert sources == {"GOOG": "store"}
    np.testing.assert_array_equal(dataset.bars[NEWS_COLUMN].to_numpy(), expected.bars[NEWS_COLUMN].to_numpy())
    with_news = np.isfinite(dataset.bars[NEWS_COLUMN].to_numpy())
    # a headline before the close of every 4th of the last 400 bars, each counting for 7 days: the last 400 bars
    # have news, every earlier one abstains
    assert with_news[-400:].all() and not with_news[:-400].any()
    gate = json.loads((tmp_path / "work" / "gate" / "gate.json").read_text())
    assert gate["experts"] == ["trend", "levels", "volatility", "news"]

    # served at the last training bar: the slot's input is that bar's training value; later headlines change nothing
    rows = [{"timestamp": ts.strftime("%Y-%m-%d"), **{k: float(r[k]) for k in ("open", "high", "low", "close",
                                                                                "volume")}}
            for ts, r in zip(goog.bars.index[-600:], goog.bars.iloc[-600:].to_dict("records"), strict=True)]
    at = decision_time(rows[-1]["timestamp"], "1d")
    database.documents.write_documents([
        Document(Document.stable_id("test", "news", "late"), "news", "test", ("GOOG",), at, TITLES[1]),
        Document(Document.stable_id("test", "news", "later"), "news", "test", ("GOOG",), at + timedelta(hours=2),
                 TITLES[1])])
    experts = InProcessExperts(folder / "experts", news=served_news_expert(folder, bundle))
    try:
        served = SignalService(bundle, experts, None, deadline_s=120, documents=database.documents).signal(
            SignalRequest.model_validate({"symbol": "GOOG", "bars": rows}))
    finally:
        experts.close()
    assert served.news is not None and served.news.in_combined_score is True
    assert served.news.score == pytest.approx(float(expected.bars[NEWS_COLUMN].iloc[-1]), abs=1e-9)
    # one headline counts: 2010-06-24 14:30 UTC (4 bars back, 6 days 6.5 hours old), not the two at or after the close
    assert served.news.count == 1 and served.gate["news"] > 0
    assert sum(served.gate.values()) == pytest.approx(1.0, abs=1e-12)


def test_backtest_news_from_store_reads_the_same_function_and_the_files_column_wins(
        goog: PriceSeries, database: SqlDatabase, tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    path.write_text(json.dumps({"moe": {"news": True}, "news": {"model": str(text_model_folder()),
                                                                "max_documents": 20}}))
    from signal_engine.cli import load_configs

    config, _ = load_configs("quick", path)
    console = Console(stderr=True)
    url = str(database.engine.url)
    [scored] = news_from_store([goog], config, path, url, console)
    [expected], _ = slot_series([goog], database.documents, news_expert(news_settings()), 20)
    before = pd.DatetimeIndex(goog.bars.index) < pd.Timestamp(datetime(2010, 6, 29))
    np.testing.assert_array_equal(scored.bars[NEWS_COLUMN].to_numpy()[before],
                                  expected.bars[NEWS_COLUMN].to_numpy()[before])
    own = PriceSeries(goog.symbol, goog.source, goog.bars.assign(**{NEWS_COLUMN: 0.5}))
    [kept] = news_from_store([own], config, path, url, console)
    assert (kept.bars[NEWS_COLUMN] == 0.5).all(), "the price file's column wins over the store"
    off, _ = load_configs("quick", None)
    with pytest.raises(ConfigError, match=re.escape("--news-from-store fills the news slot's input, but "
                                                    "the config's moe.news is false")):
        news_from_store([goog], off, None, url, console)
