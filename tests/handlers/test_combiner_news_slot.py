"""The combiner Lambda with a bundle whose gate has the news slot (``moe.news``): the text expert still runs on the
experts' endpoint (the Lambda reads the headlines from DocumentDB and sends them; it loads no text model), and the
news block's score is the slot's input: ``news.in_combined_score`` is true, the gate weighs ``news``, and the
combined score is the gate-weighted sum of the experts' scores and the news score. Without headlines the slot
abstains: weight 0, the price experts renormalised.

The set-up is test_combiner_news.py's (API Gateway event in, the bundle from S3, the endpoints on moto answering what
the real inference server answers, the headlines in DocumentDB on mongomock) with the news-slot bundle.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from sagemaker_jobs import serve
from signal_engine.adapters import documentdb
from signal_engine.serving.bundle import ServingBundle, read_current
from tests.handlers.conftest import Aws
from tests.handlers.test_combiner_handler import api_event, call, publish_registry, queue_results
from tests.handlers.test_combiner_news import endpoint_answer, news_environment, stored_news
from tests.integration.test_news_signal import BARS, T
from tests.serving_support import goog_news_slot_registry

ARTIFACTS = "signal-engine-news-slot-artifacts"
ENDPOINTS = {"trend": "se-slot-trend", "levels": "se-slot-levels", "volatility": "se-slot-volatility",
             "news": "se-slot-text"}


@pytest.fixture(scope="module")
def store() -> Iterator[Any]:
    yield from stored_news()


@pytest.fixture(scope="module")
def combiner(aws: Aws, store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The handler module, cold-started on the news-slot bundle in S3, its document store DocumentDB (mongomock)."""
    registry = goog_news_slot_registry()
    publish_registry(aws, ARTIFACTS, registry)
    environment = news_environment(ARTIFACTS, ENDPOINTS, tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        patch.setattr(documentdb, "connect_documentdb", lambda url, database, **options: store)
        sys.modules.pop("lambda_src.combiner.handler", None)
        module = importlib.import_module("lambda_src.combiner.handler")
        module.live.cache_clear()
        yield module
        module.live.cache_clear()


def test_the_news_score_is_the_slots_input_in_the_combined_score(combiner: ModuleType, aws: Aws, store: Any) -> None:
    queue_results(aws, [endpoint_answer(store)] * 4)
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": BARS}))
    assert status == 200, body
    news, gate = body["news"], body["gate"]
    assert news["in_combined_score"] is True and news["abstained"] is False and news["count"] == 2
    assert news["model"] == "se-slot-text", "the text scores come from the experts' endpoint"
    assert set(gate) == {"trend", "levels", "volatility", "news"} and gate["news"] > 0.05
    assert sum(gate.values()) == pytest.approx(1.0, abs=1e-12)
    combined = sum(gate[name] * body["experts"][name]["score"] for name in ("trend", "levels", "volatility"))
    assert body["score"] == pytest.approx(combined + gate["news"] * news["score"], abs=1e-12)
    assert set(body["experts"]) == {"trend", "levels", "volatility"} and body["degraded"] is False


def test_without_headlines_the_slot_abstains_and_the_experts_are_renormalised(combiner: ModuleType, aws: Aws,
                                                                              store: Any) -> None:
    """Ten days after the stored headlines: no news request is made, the slot's weight is 0."""
    last = T + timedelta(days=10)
    later = [{**bar, "timestamp": (last - timedelta(days=len(BARS) - 1 - i)).strftime("%Y-%m-%d")}
             for i, bar in enumerate(BARS)]
    folder = read_current(goog_news_slot_registry())
    bars = serve.ExpertService(folder).invoke({"symbol": "GOOG", "experts": ["trend", "levels", "volatility"],
                                               "bars": later, "history": 252})
    queue_results(aws, [json.dumps(bars)] * 3)
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": later}))
    assert status == 200, body
    assert body["news"]["abstained"] is True and body["news"]["in_combined_score"] is True
    gate = body["gate"]
    assert gate["news"] == 0.0 and gate["trend"] + gate["levels"] + gate["volatility"] == pytest.approx(1.0, abs=1e-12)
    bundle = ServingBundle.load(folder)
    assert bundle.news_slot and bundle.slots == ("trend", "levels", "volatility", "news")
    combined = sum(gate[name] * body["experts"][name]["score"] for name in ("trend", "levels", "volatility"))
    assert body["score"] == pytest.approx(combined, abs=1e-12)
