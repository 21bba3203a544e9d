"""The news beside a signal, without the encoder: the decision time, which stored headlines are read, how the text
expert's answer becomes the news block, the bundle's news section, the NumPy head, and the training switch."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.errors import ConfigError
from signal_engine.serving.bundle import BundleError, NewsSettings, ServingBundle, read_current
from signal_engine.serving.messages import ExpertReply
from signal_engine.serving.news import decision_time, document_rows, news_view, read_news
from signal_engine.storage.records import Document
from signal_engine.storage.timeline import EXCHANGE_TIMEZONE, SESSION_CLOSE, bar_close_times
from signal_engine.text.aggregate import NewsDecay, aggregate_news, document_weights
from signal_engine.text.head import SentimentHead
from signal_engine.text.serving import NewsHead
from signal_engine.workflow.news import NewsTraining
from tests.serving_support import goog_registry

SETTINGS = NewsSettings(head_sha256="0" * 64, encoder="all-MiniLM-L6-v2-onnx-int8")
T = datetime(2024, 1, 5, 21, 0)  # Friday 2024-01-05's close: 16:00 New York (EST) is 21:00 UTC


@pytest.mark.parametrize(("bar", "timeframe", "close"), [
    ("2024-01-05", "1d", datetime(2024, 1, 5, 21)),            # EST: UTC-5
    ("2024-07-05T00:00:00", "1d", datetime(2024, 7, 5, 20)),   # EDT: UTC-4
    ("2024-03-08", "1d", datetime(2024, 3, 8, 21)),            # the Friday before DST starts (10 March)
    ("2024-03-11", "1d", datetime(2024, 3, 11, 20)),           # the Monday after
    ("2024-01-05T14:00:00", "1h", datetime(2024, 1, 5, 15)),
    ("2024-01-05T14:30:00+00:00", "15m", datetime(2024, 1, 5, 14, 45)),
])
def test_the_decision_time_is_the_bars_close(bar: str, timeframe: str, close: datetime) -> None:
    assert decision_time(bar, timeframe) == close


def test_the_decision_time_agrees_with_the_timelines_bar_close_on_every_day_of_two_years() -> None:
    assert (EXCHANGE_TIMEZONE, SESSION_CLOSE) == ("America/New_York", SESSION_CLOSE)
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    expected = bar_close_times(days, "1d")
    assert [decision_time(day.to_pydatetime(), "1d") for day in days] == list(expected.to_pydatetime())
    hours = pd.date_range("2024-03-09", periods=72, freq="h")
    assert [decision_time(h.isoformat(), "1h") for h in hours] == list(bar_close_times(hours, "1h").to_pydatetime())
    with pytest.raises(ValueError, match="timeframe '1w'"):
        decision_time("2024-01-05", "1w")


def news(native: str, published: datetime, symbol: str = "AAPL") -> Document:
    return Document(Document.stable_id("yahoo", "news", native), "news", "yahoo", (symbol,), published,
                    f"headline {native}")


def test_only_headlines_published_strictly_before_the_decision_time_and_in_the_window_are_read(tmp_path: Path) -> None:
    storage = bootstrap(Settings.from_env(database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        storage.documents.write_documents([
            news("too-old", T - timedelta(days=7, seconds=1)),
            news("oldest-counted", T - timedelta(days=7)),   # exactly max_age old: counts (aggregate_news's rule)
            news("fresh", T - timedelta(hours=1)),
            news("at-close", T),                              # at the close: counts from the next bar
            news("after", T + timedelta(hours=1)),
            news("other-symbol", T - timedelta(hours=1), "MSFT"),
        ])
        read = read_news(storage.documents, "AAPL", T, SETTINGS)
        latest = read_news(storage.documents, "AAPL", T, NewsSettings(head_sha256="0" * 64, encoder="x",
                                                                      max_documents=1))
    finally:
        storage.close()
    assert [d.title for d in read] == ["headline oldest-counted", "headline fresh"]
    assert [d.title for d in latest] == ["headline fresh"]
    assert document_rows(read)[1] == {"id": Document.stable_id("yahoo", "news", "fresh"),
                                      "published_at": "2024-01-05T20:00:00", "title": "headline fresh"}


ROWS = [{"id": "a", "published_at": "2024-01-05T09:00:00", "title": "A rallies"},
        {"id": "b", "published_at": "2024-01-05T15:00:00", "title": "B slips"},
        {"id": "c", "published_at": "2023-12-20T15:00:00", "title": "C, too old"}]


def answer(score: float | None, documents: list[dict[str, float]], count: int = 2) -> ExpertReply:
    body = {"news_score": score, "news_confidence": 0.75 / 1.75 if score is not None else 0.0,
            "news_count": count if score is not None else 0, "news_weight": 0.75, "documents": documents}
    return ExpertReply("news", body, elapsed_ms=12.5, model="se-experts")


def test_the_news_block_names_the_headlines_that_weigh_most_by_hand() -> None:
    # weights 0.5 and 0.25 (c does not count): shares 2/3 and 1/3; contributions 2/3 x 0.5 = 1/3 and
    # 1/3 x -0.2 = -1/15, which sum to the score (0.5 x 0.5 - 0.2 x 0.25) / 0.75 = 4/15
    reply = answer(4 / 15, [{"score": 0.5, "weight": 0.5}, {"score": -0.2, "weight": 0.25},
                            {"score": 0.9, "weight": 0.0}])
    view = news_view(ROWS, reply, T, headlines=3)
    assert (view.ok, view.abstained, view.count, view.in_combined_score) == (True, False, 2, False)
    assert view.score == pytest.approx(4 / 15) and view.confidence == pytest.approx(3 / 7)
    assert [h.id for h in view.headlines] == ["a", "b"]
    assert [h.weight for h in view.headlines] == pytest.approx([2 / 3, 1 / 3])
    assert [h.contribution for h in view.headlines] == pytest.approx([1 / 3, -1 / 15])
    assert sum(h.contribution for h in view.headlines) == pytest.approx(view.score)
    assert view.headlines[0].title == "A rallies" and view.headlines[0].published_at.isoformat() == \
        "2024-01-05T09:00:00+00:00"
    assert [h.id for h in news_view(ROWS, reply, T, headlines=1).headlines] == ["a"]
    assert (view.model, view.latency_ms) == ("se-experts", 12.5)


def test_no_headline_counting_abstains_with_a_null_score_never_zero() -> None:
    view = news_view(ROWS[2:], answer(None, [{"score": 0.9, "weight": 0.0}]), T, headlines=3)
    assert (view.ok, view.abstained, view.score, view.count, view.confidence, view.headlines) == \
        (True, True, None, 0, 0.0, [])
    assert json.loads(view.model_dump_json())["score"] is None


@pytest.mark.parametrize(("reply", "error"), [
    (ExpertReply("news", error="ModelError: (500) boom", model="se-experts"), "ModelError: (500) boom"),
    (answer(0.1, [{"score": 0.1, "weight": 0.5}]), "malformed answer: documents: expected a list of 3"),
    (answer(1.5, [{"score": 0.1, "weight": 0.5}] * 3), "malformed answer: news_score is 1.5"),
])
def test_a_failed_or_malformed_answer_abstains_and_says_why(reply: ExpertReply, error: str) -> None:
    view = news_view(ROWS, reply, T, headlines=3)
    assert (view.ok, view.abstained, view.score, view.count) == (False, True, None, 0)
    assert view.error is not None and view.error.startswith(error)


def test_document_weights_are_the_aggregates_by_hand() -> None:
    decay = NewsDecay(half_life=timedelta(hours=12), max_age=timedelta(days=2))
    published = [T - timedelta(hours=12), T - timedelta(hours=36), T, T + timedelta(hours=1),
                 T - timedelta(days=2, seconds=1)]
    weights = document_weights(published, T, decay)
    assert weights == pytest.approx([0.5, 0.125, 0.0, 0.0, 0.0], abs=0)
    frame = aggregate_news(published, [0.4, -0.8, 1.0, 1.0, 1.0], [T], decay)
    assert frame["news_weight"].iloc[0] == pytest.approx(weights.sum())
    assert frame["news_score"].iloc[0] == pytest.approx((0.5 * 0.4 - 0.125 * 0.8) / 0.625)


def test_the_numpy_head_answers_what_the_fitted_head_answers() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], 30)
    embeddings = rng.normal(size=(90, 8)) + labels[:, None] * 0.4
    head = SentimentHead().fit(embeddings, labels)
    numpy_head = NewsHead.from_bytes(NewsHead.of(head).to_bytes(), "head.npz")
    probe = rng.normal(size=(20, 8))
    np.testing.assert_allclose(numpy_head.label_probabilities(probe), head.predict_proba(probe), rtol=0, atol=1e-12)


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(read_current(goog_registry()), target)
    return target


def test_the_bundle_carries_the_news_section_and_checks_it(bundle_copy: Path) -> None:
    path = bundle_copy / "bundle.json"
    doc = json.loads(path.read_text())
    doc["news"] = {"head_sha256": "ab" * 32, "encoder": "all-MiniLM-L6-v2-onnx-int8", "half_life_hours": 12}
    path.write_text(json.dumps(doc))
    bundle = ServingBundle.load(bundle_copy)
    assert bundle.news == NewsSettings(head_sha256="ab" * 32, encoder="all-MiniLM-L6-v2-onnx-int8",
                                       half_life_hours=12)
    assert bundle.to_json()["news"]["max_age_hours"] == 168.0 and bundle.news.expert == "news"
    for bad, message in [({"half_life_hours": 0}, "field 'news.half_life_hours' is 0"),
                         ({"headlines": 0}, "field 'news.headlines' is 0"),
                         ({"color": "red"}, "field 'news' has unknown key"),
                         ({"expert": "trend"}, "field 'news.expert' is 'trend', which is also in field 'experts'")]:
        path.write_text(json.dumps({**doc, "news": {**doc["news"], **bad}}))
        with pytest.raises(BundleError, match=message):
            ServingBundle.load(bundle_copy)
    assert "news" not in ServingBundle.load(read_current(goog_registry())).to_json()


def test_the_training_switch_is_off_unless_asked_and_names_a_bad_value() -> None:
    assert NewsTraining.from_mapping(None, "cfg").enabled is False
    assert NewsTraining.from_mapping({"enabled": True, "headlines": 5}, "cfg") == NewsTraining(True, headlines=5)
    for bad, message in [({"enabled": "yes"}, "'news.enabled' is 'yes'"),
                         ({"enabled": True, "max_age_hours": -1}, "'news.max_age_hours' is -1"),
                         ({"enabled": True, "speed": 1}, "unknown key"), ([1], "must be a mapping")]:
        with pytest.raises(ConfigError, match=message):
            NewsTraining.from_mapping(bad, "cfg")
