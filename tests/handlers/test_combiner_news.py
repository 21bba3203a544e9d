"""The combiner Lambda with a bundle that carries the text expert: an API Gateway REST event in, the bundle from S3
and the experts' endpoints on moto, the headlines from DocumentDB (the adapter on mongomock, reached through the
wiring's ``SIGNAL_ENGINE_DOCUMENT_URL``), and the ``news`` block out beside the signal.

moto answers ``invoke_endpoint`` from a queue of canned results; each canned result here is what the real inference
server (``sagemaker_jobs/serve.py``, the real ONNX encoder) answers: the bars' experts for the request's bars and the
text expert for the headlines the combiner reads before the decision time.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import mongomock
import pytest
from mongomock.collection import BulkOperationBuilder

from sagemaker_jobs import serve
from signal_engine.adapters import documentdb
from signal_engine.adapters.documentdb import DocumentDbStore
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.news import document_rows, read_news
from tests.handlers.conftest import Aws
from tests.handlers.test_combiner_handler import api_event, call, publish_registry, queue_results
from tests.integration.test_news_signal import BARS, STORED, T, ids
from tests.serving_support import goog_news_registry
from tests.unit.test_documentdb import _without_sort

ARTIFACTS = "signal-engine-news-artifacts"
ENDPOINTS = {"trend": "se-news-trend", "levels": "se-news-levels", "volatility": "se-news-volatility",
             "news": "se-news-text"}
DOCUMENT_URL = "mongodb://docdb.test:27017/?tls=false"


def stored_news() -> Iterator[Any]:
    """DocumentDB (the adapter on mongomock, without the bulk sort DocumentDB lacks) holding the stored headlines."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("add_update", "add_replace"):
            patch.setattr(BulkOperationBuilder, name, _without_sort(getattr(BulkOperationBuilder, name)))
        database = mongomock.MongoClient(tz_aware=False).signal_engine
        DocumentDbStore(database).write_documents(STORED)
        yield database


def news_environment(artifacts: str, endpoints: dict[str, str],
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The combiner's environment: the bundle in ``s3://artifacts/models/``, the endpoints, a SQLite audit log and
    DocumentDB at DOCUMENT_URL."""
    return {"MODEL_BUNDLE_URI": f"s3://{artifacts}/models/", "EXPERT_ENDPOINTS": json.dumps(endpoints),
            "EXPERT_DEADLINE_MS": "5000",
            "SIGNAL_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}",
            "SIGNAL_ENGINE_DOCUMENT_URL": DOCUMENT_URL, "SIGNAL_ENGINE_DOCUMENT_DATABASE": "signal_engine",
            "BUNDLE_CACHE_DIR": str(tmp_path_factory.mktemp("bundle-cache")),
            "POWERTOOLS_METRICS_NAMESPACE": "SignalEngine", "POWERTOOLS_DEV": "false"}


@pytest.fixture(scope="module")
def store() -> Iterator[Any]:
    yield from stored_news()


@pytest.fixture(scope="module")
def combiner(aws: Aws, store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The handler module, cold-started on the news bundle in S3, its document store DocumentDB (mongomock)."""
    registry = goog_news_registry()
    publish_registry(aws, ARTIFACTS, registry)
    environment = news_environment(ARTIFACTS, ENDPOINTS, tmp_path_factory)
    connected: list[tuple[str, str]] = []

    def connect(url: str, database: str, **options: Any) -> Any:
        connected.append((url, database))
        return store

    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        patch.setattr(documentdb, "connect_documentdb", connect)
        sys.modules.pop("lambda_src.combiner.handler", None)
        module = importlib.import_module("lambda_src.combiner.handler")
        module.live.cache_clear()
        module.connected = connected
        yield module
        module.live.cache_clear()


def endpoint_answer(store: Any) -> str:
    """What the real inference server answers, for every expert, to the combiner's requests for BARS."""
    folder = read_current(goog_news_registry())
    service = serve.ExpertService(folder)
    bundle = ServingBundle.load(folder)
    assert bundle.news is not None
    rows = document_rows(read_news(DocumentDbStore(store), "GOOG", T, bundle.news))
    bars = service.invoke({"symbol": "GOOG", "experts": ["trend", "levels", "volatility"], "bars": BARS,
                           "history": bundle.scores.volatility_window})
    news = service.invoke({"symbol": "GOOG", "experts": ["news"], "decision_time": T.isoformat(), "documents": rows})
    return json.dumps({**bars, "answers": {**bars["answers"], **news["answers"]}})


def test_post_signals_answers_the_news_beside_the_signal(combiner: ModuleType, aws: Aws, store: Any) -> None:
    queue_results(aws, [endpoint_answer(store)] * 4)
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": BARS}))
    assert status == 200, body
    assert combiner.connected == [(DOCUMENT_URL, "signal_engine")]
    news = body["news"]
    assert news["ok"] is True and news["in_combined_score"] is False and news["abstained"] is False
    assert news["count"] == 2 and news["decision_time"] == T.isoformat() + "Z" and news["model"] == "se-news-text"
    assert sorted(h["id"] for h in news["headlines"]) == sorted(ids("fresh", "older"))
    assert all(h["published_at"] < news["decision_time"] for h in news["headlines"])
    assert sum(h["contribution"] for h in news["headlines"]) == pytest.approx(news["score"], abs=1e-12)
    assert body["degraded"] is False and set(body["experts"]) == {"trend", "levels", "volatility"}
    assert "news" not in body["gate"]
    audit = SqlDatabase.connect(combiner.settings.database_url).ledger.signals("GOOG")
    assert audit[-1].inputs["news"]["count"] == 2 and audit[-1].inputs["news"]["model"] == "se-news-text"
    status, models = call(combiner, api_event("GET", "/models"))
    assert status == 200 and models["news"] == "se-news-text" and "news" not in models["experts"]


def test_a_bar_without_stored_headlines_abstains_with_null(combiner: ModuleType, aws: Aws, store: Any) -> None:
    """A week after the stored headlines: nothing in the window, so no news request is made; the block abstains."""
    last = T + timedelta(days=10)
    later = [{**bar, "timestamp": (last - timedelta(days=len(BARS) - 1 - i)).strftime("%Y-%m-%d")}
             for i, bar in enumerate(BARS)]
    folder = read_current(goog_news_registry())
    bars = serve.ExpertService(folder).invoke({"symbol": "GOOG", "experts": ["trend", "levels", "volatility"],
                                               "bars": later, "history": 252})
    queue_results(aws, [json.dumps(bars)] * 3)
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": later}))
    assert status == 200, body
    assert body["news"]["score"] is None and body["news"]["count"] == 0 and body["news"]["abstained"] is True
    assert body["news"]["ok"] is True and body["news"]["headlines"] == []
