"""The news beside a signal, through the real path: SignalService reads GOOG's stored headlines (the DocumentDB
adapter on mongomock; the local SQL store for the in-process client ``signal-engine serve`` uses), asks the real
inference server (sagemaker_jobs/serve.py, behind the SigV4 front end of ``tests/sagemaker_endpoints.py``, through a
real boto3 client) with the real ONNX encoder, and answers a ``news`` block beside a signal it does not change.
Point in time: a headline published at or after the decision time never reaches the endpoint nor the score."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import mongomock
import pytest
from botocore.config import Config
from mongomock.collection import BulkOperationBuilder

from signal_engine.adapters.documentdb import DocumentDbStore
from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.commands.serve import news_expert
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.news import decision_time, documents_digest
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from signal_engine.storage.records import Document
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT
from tests.sagemaker_endpoints import Endpoints, serve_endpoints
from tests.serving_support import TRAIN_BARS, goog_news_registry, request_bars
from tests.unit.test_documentdb import _without_sort

SHARED = "se-experts"
ROUTES = {"trend": SHARED, "levels": SHARED, "volatility": SHARED, "news": SHARED}
END = TRAIN_BARS + 200
BARS = request_bars(END)
T = decision_time(str(BARS[-1]["timestamp"]), "1d")


def headline(native: str, published: datetime, title: str, symbol: str = "GOOG") -> Document:
    return Document(Document.stable_id("yahoo", "news", native), "news", "yahoo", (symbol,), published, title)


STORED = [
    headline("fresh", T - timedelta(hours=2), "Google shares rally as profit beats forecasts"),
    headline("older", T - timedelta(hours=30), "Google hit by lawsuit over privacy"),
    headline("stale", T - timedelta(days=9), "Google opens new office"),
    headline("at-close", T, "Google stock soars to a record high"),
    headline("after", T + timedelta(hours=3), "Google plunges after shock profit warning"),
    headline("other", T - timedelta(hours=1), "Microsoft falls on weak cloud sales", "MSFT"),
]
COUNTED = ["fresh", "older"]


def ids(*natives: str) -> list[str]:
    return [Document.stable_id("yahoo", "news", n) for n in natives]


@pytest.fixture(scope="module")
def folder() -> Path:
    return read_current(goog_news_registry())


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentDbStore]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("add_update", "add_replace"):
            patch.setattr(BulkOperationBuilder, name, _without_sort(getattr(BulkOperationBuilder, name)))
        store = DocumentDbStore(mongomock.MongoClient(tz_aware=False).signal_engine)
        store.write_documents(STORED)
        yield store


@pytest.fixture(scope="module")
def endpoints(folder: Path) -> Iterator[Endpoints]:
    with serve_endpoints({SHARED: folder}) as running:
        yield running


@pytest.fixture(scope="module")
def experts(endpoints: Endpoints) -> Iterator[SageMakerExperts]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoints.url, region_name="us-east-1",
                               config=Config(read_timeout=120, retries={"max_attempts": 1}))
        client = SageMakerExperts(runtime, ROUTES)
        yield client
        client.close()


@pytest.fixture
def sent(endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The request bodies the endpoint's server receives during the test."""
    service = endpoints.services[SHARED]
    received: list[dict[str, Any]] = []
    original = service.invoke

    def invoke(request: Any) -> dict[str, Any]:
        received.append(request)
        return original(request)

    monkeypatch.setattr(service, "invoke", invoke)
    return received


def service(folder: Path, experts: Any, documents: Any, tmp_path: Path) -> SignalService:
    ledger = SqlDatabase.connect(f"sqlite:///{tmp_path / 'audit.db'}").ledger
    return SignalService(ServingBundle.load(folder), experts, ledger, deadline_s=60, documents=documents)


def request(bars: list[dict[str, Any]] = BARS) -> SignalRequest:
    return SignalRequest.model_validate({"symbol": "GOOG", "bars": bars})


def test_the_news_block_reads_the_stored_headlines_before_the_decision_time(
        folder: Path, experts: SageMakerExperts, documents: DocumentDbStore, sent: list[dict[str, Any]],
        tmp_path: Path) -> None:
    served = service(folder, experts, documents, tmp_path)
    response = served.signal(request())
    news = response.news
    assert news is not None and news.ok and not news.abstained and news.in_combined_score is False
    assert news.decision_time is not None and news.decision_time.replace(tzinfo=None) == T
    assert news.count == 2 and sorted(h.id for h in news.headlines) == sorted(ids(*COUNTED))
    # what reached the endpoint: the bars' experts in one request, the headlines before T in another, without bars
    [bars_request] = [r for r in sent if "bars" in r]
    [news_request] = [r for r in sent if "documents" in r]
    assert bars_request["experts"] == ["trend", "levels", "volatility"] and "documents" not in bars_request
    assert news_request["experts"] == ["news"] and news_request["decision_time"] == T.isoformat()
    assert [d["id"] for d in news_request["documents"]] == ids("older", "fresh")
    direct = experts.ask(served._query(request(), "").query, ["news"], 60)["news"].answer
    assert direct is not None and news.score == pytest.approx(direct["news_score"], abs=1e-12)
    assert sum(h.contribution for h in news.headlines) == pytest.approx(news.score, abs=1e-12)
    assert {h.title for h in news.headlines} == {d.title for d in STORED[:2]}
    [audit] = served.audit.signals("GOOG")  # type: ignore[union-attr]
    recorded = audit.inputs["news"]
    assert recorded["documents"] == 2 and recorded["sha256"] == documents_digest(news_request["documents"])
    assert recorded["in_combined_score"] is False and recorded["score"] == news.score
    assert not set(ids("at-close", "after", "stale", "other")) & set(json.dumps(audit.inputs).split('"'))


def test_the_news_does_not_change_the_signal(folder: Path, experts: SageMakerExperts,
                                             documents: DocumentDbStore, tmp_path: Path) -> None:
    with_news = service(folder, experts, documents, tmp_path).signal(request())
    without = service(folder, experts, None, tmp_path).signal(request())
    assert (with_news.signal, with_news.score, with_news.position, with_news.confidence, with_news.gate) == \
        (without.signal, without.score, without.position, without.confidence, without.gate)
    assert without.news is not None and without.news.abstained and not without.news.ok
    assert without.news.error is not None and "no document store is configured" in without.news.error


def test_no_stored_headline_abstains_without_asking_the_text_expert(
        folder: Path, experts: SageMakerExperts, documents: DocumentDbStore, sent: list[dict[str, Any]],
        tmp_path: Path) -> None:
    early = request_bars(TRAIN_BARS + 100)  # months before any stored headline
    response = service(folder, experts, documents, tmp_path).signal(request(early))
    assert response.news is not None and response.news.ok
    assert (response.news.abstained, response.news.score, response.news.count, response.news.headlines) == \
        (True, None, 0, [])
    assert [r.get("experts") for r in sent] == [["trend", "levels", "volatility"]]
    body = json.loads(response.model_dump_json())
    assert body["news"]["score"] is None and body["news"]["in_combined_score"] is False


def test_a_later_headline_never_reaches_the_score(folder: Path, experts: SageMakerExperts, tmp_path: Path) -> None:
    """The same store with and without headlines published at and after the decision time: the same news."""
    def store(documents: list[Document]) -> DocumentDbStore:
        with pytest.MonkeyPatch.context() as patch:
            for name in ("add_update", "add_replace"):
                patch.setattr(BulkOperationBuilder, name, _without_sort(getattr(BulkOperationBuilder, name)))
            built = DocumentDbStore(mongomock.MongoClient(tz_aware=False).signal_engine)
            built.write_documents(documents)
        return built

    before = service(folder, experts, store(STORED[:2]), tmp_path).signal(request()).news
    later = [*STORED[:2], headline("later-1", T + timedelta(seconds=1), "Google collapses on fraud probe"),
             headline("later-2", T + timedelta(days=1), "Google doubles its dividend")]
    after = service(folder, experts, store(later), tmp_path).signal(request()).news
    assert before is not None and after is not None
    assert (after.score, after.count, [h.id for h in after.headlines]) == \
        (before.score, before.count, [h.id for h in before.headlines])


def test_the_local_server_path_gives_the_same_news_in_process(folder: Path, experts: SageMakerExperts,
                                                              documents: DocumentDbStore, tmp_path: Path) -> None:
    """``signal-engine serve``: the in-process text expert and the local SQL document store."""
    database = SqlDatabase.connect(f"sqlite:///{tmp_path / 'store.db'}")
    database.documents.write_documents(STORED)
    bundle = ServingBundle.load(folder)
    local_experts = InProcessExperts(folder / "experts", news=news_expert(folder, bundle))
    try:
        local = SignalService(bundle, local_experts, database.ledger, deadline_s=60,
                              documents=database.documents).signal(request())
    finally:
        local_experts.close()
    remote = service(folder, experts, documents, tmp_path).signal(request())
    assert local.news is not None and remote.news is not None
    assert local.news.score == pytest.approx(remote.news.score, abs=1e-12)
    assert [h.id for h in local.news.headlines] == [h.id for h in remote.news.headlines]
    assert local.news.model.endswith("news/head.npz") and remote.news.model == SHARED
    assert local.score == pytest.approx(remote.score, abs=1e-12)
