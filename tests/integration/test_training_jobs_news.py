"""The prepare job with the MoE's news slot (``moe.news``) on Alphabet's daily bars: the ``news`` channel holds the
news file the bars export writes (``news/GOOG.jsonl``, from the document store), and each bar's ``news_score`` in the
prepared dataset is the text expert's aggregate of the headlines published before that bar's close; the text model
that scored them travels in the dataset, and the later jobs (train_gate, evaluate) serve that head."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from sagemaker_jobs import prepare, train_gate
from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.config import NEWS_COLUMN
from signal_engine.errors import ConfigError
from signal_engine.storage.export import export_news
from signal_engine.storage.records import Document
from signal_engine.text.aggregate import NewsDecay
from signal_engine.text.model import load_text_model
from signal_engine.text.serving import NewsExpert
from signal_engine.workflow.sagemaker_env import JobEnvironment, unpack
from signal_engine.workflow.training import load_dataset
from tests.integration.test_training_jobs import run_job
from tests.serving_support import text_model_folder

RALLY, LAWSUIT = "Google shares rally as profit beats forecasts", "Google hit by lawsuit over privacy"
# Daily bars close at 16:00 New York, 20:00 UTC in June (EDT): the rally is published before Monday 28 June 2010's
# close, the lawsuit half an hour after it.
PUBLISHED = {RALLY: datetime(2010, 6, 28, 14, 30), LAWSUIT: datetime(2010, 6, 28, 20, 30)}
CONFIG = {"walk_forward": {"refit_every": 252}, "moe": {"news": True}, "news": {"enabled": True}}


@pytest.fixture(scope="module")
def news_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """news/GOOG.jsonl as the bars export writes it from a document store (the embedded SQL one here)."""
    root = tmp_path_factory.mktemp("datasets")
    database = SqlDatabase.connect(f"sqlite:///{root}/store.db")
    database.documents.write_documents([
        Document(Document.stable_id("test", "news", title), "news", "test", ("GOOG",), published, title)
        for title, published in PUBLISHED.items()])
    assert [n.key for n in export_news(database.documents, LocalFolderStore(root / "bucket"), ["GOOG"]).exported] \
        == ["news/GOOG.jsonl"]
    database.close()
    return root / "bucket" / "news"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    (folder / "GOOG.csv").write_bytes(goog_csv.read_bytes())
    return folder


def hyperparameters(config: Mapping[str, object]) -> dict[str, str]:
    return {"symbols": json.dumps(["GOOG"]), "profile": "quick", "config": json.dumps(config), "start": "",
            "end": ""}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, raw: Path, news_channel: Path) -> Path:
    root = tmp_path_factory.mktemp("prepare")
    with pytest.MonkeyPatch.context() as mp:
        return run_job(prepare, mp, root / "model", {"raw": raw, "news": news_channel, "text": text_model_folder()},
                       hyperparameters(CONFIG))


def test_each_bar_scores_only_the_headlines_published_before_its_close(prepared: Path) -> None:
    (root,) = unpack(prepared.parent)
    (series,) = load_dataset(root)
    score = series.bars[NEWS_COLUMN]
    expert = NewsExpert.from_model(load_text_model(text_model_folder()), NewsDecay())
    rally, lawsuit = (p[1] - p[0] for p in expert.probabilities([RALLY, LAWSUIT]))
    assert np.isnan(score.loc["2010-06-25"])  # before any headline
    assert score.loc["2010-06-28"] == pytest.approx(rally, abs=1e-12)  # the lawsuit came after this close
    # Tuesday's close (20:00 UTC): the rally is 29.5 hours old, the lawsuit 23.5; weights 2^(-age / 24 h)
    weights = np.array([2 ** (-29.5 / 24), 2 ** (-23.5 / 24)])
    assert score.loc["2010-06-29"] == pytest.approx((weights @ [rally, lawsuit]) / weights.sum(), abs=1e-12)
    assert np.isnan(score.loc["2010-07-06"])  # both older than 168 hours at its close (5 July: a holiday)
    assert int(np.isfinite(score.to_numpy(dtype=float)).sum()) == 5  # 28 June to 2 July: 5 trading days


def test_the_dataset_carries_the_text_model_that_scored_it_and_the_later_jobs_read_it(prepared: Path) -> None:
    (root,) = unpack(prepared.parent)
    assert json.loads((root / "text" / "text.json").read_text()) == load_text_model(text_model_folder()).metadata
    job = JobEnvironment(Path("unused"), Path("unused"), {"dataset": prepared.parent},
                         {"config": json.dumps(CONFIG)})
    assert job.news().model == str(root / "text")
    assert job.book()  # moe.news: the whole book, as without the slot, unless hyperparameter book says otherwise
    assert not JobEnvironment(Path("unused"), Path("unused"), {"dataset": prepared.parent},
                              {"config": json.dumps(CONFIG), "book": "false"}).book()


def test_without_the_news_channel_the_job_names_what_is_missing(tmp_path: Path, raw: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="GOOG have no 'news_score' column and this run has no document store"):
        run_job(prepare, monkeypatch, tmp_path / "model", {"raw": raw, "text": text_model_folder()},
                hyperparameters(CONFIG))


def test_without_moe_news_the_dataset_is_the_one_prepared_before(tmp_path: Path, raw: Path, news_channel: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The news channel is ignored when the slot is off: the prepared files are byte for byte those of a run
    without it."""
    config = {"walk_forward": {"refit_every": 252}}
    with_news = run_job(prepare, monkeypatch, tmp_path / "a" / "model", {"raw": raw, "news": news_channel},
                        hyperparameters(config))
    without = run_job(prepare, monkeypatch, tmp_path / "b" / "model", {"raw": raw}, hyperparameters(config))
    (a,), (b,) = unpack(with_news.parent), unpack(without.parent)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir()) == ["GOOG.csv", "dataset.json"]
    assert (a / "GOOG.csv").read_bytes() == (b / "GOOG.csv").read_bytes()
    assert (a / "dataset.json").read_bytes() == (b / "dataset.json").read_bytes()


def test_the_gate_job_trains_the_news_slot_on_the_prepared_scores(prepared: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate job reads no news itself: the dataset's news_score column is the slot's input (the MoE's walk-forward
    alone: hyperparameter book false; tests/integration/test_book_news.py trains the whole book with the slot)."""
    gate = run_job(train_gate, monkeypatch, tmp_path / "gate" / "model", {"dataset": prepared.parent},
                   {**hyperparameters(CONFIG), "jobs": "1", "book": "false"})
    (root,) = unpack(gate.parent)
    assert json.loads((root / "gate.json").read_text())["experts"] == ["trend", "levels", "volatility", "news"]
