"""The text expert on the experts' endpoint: the real inference server (sagemaker_jobs/serve.py) over HTTP on
loopback, serving a bundle that carries the text head (``news/head.npz``, added as training adds it), with the real
int8 ONNX MiniLM encoder: each document's probabilities, the point-in-time aggregate at the decision time (by hand),
abstention, and 400s that name the field."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sagemaker_jobs import serve
from signal_engine.errors import SignalEngineError
from signal_engine.serving.bundle import read_current
from signal_engine.text.model import load_text_model
from tests.serving_support import (
    NEWS_VERSION,
    TRAIN_BARS,
    goog_news_registry,
    goog_registry,
    request_bars,
    text_model_folder,
)

T = "2024-01-05T21:00:00Z"
DOCUMENTS = [
    {"id": "d1", "published_at": "2024-01-05T09:00:00Z", "title": "Alphabet shares jump after record ad revenue"},
    {"id": "d2", "published_at": "2024-01-04T04:00:00-05:00", "title": "Google faces antitrust fine in Europe"},
    {"id": "at-close", "published_at": "2024-01-05T21:00:00Z", "title": "Alphabet beats estimates, stock soars"},
    {"id": "after", "published_at": "2024-01-05T23:00:00Z", "title": "Alphabet stock plunges on guidance cut"},
    {"id": "too-old", "published_at": "2023-12-28T20:59:59Z", "title": "Google announces new Pixel phone"},
]


@pytest.fixture(scope="module")
def expert_service() -> serve.ExpertService:
    model_dir, _ = serve.settings(["serve"], {"SM_MODEL_DIR": str(read_current(goog_news_registry()))})
    return serve.ExpertService(model_dir)


@pytest.fixture(scope="module")
def endpoint(expert_service: serve.ExpertService) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), serve.handler_for(expert_service))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def invoke(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ask(url: str, documents: list[dict[str, str]], at: str = T) -> dict[str, Any]:
    status, answer = invoke(url, {"symbol": "GOOG", "expert": "news", "decision_time": at, "documents": documents})
    assert status == 200, answer
    return answer


def test_each_document_gets_the_text_models_probabilities(endpoint: str) -> None:
    answer = ask(endpoint, DOCUMENTS)
    expected = load_text_model(text_model_folder()).score([d["title"] for d in DOCUMENTS])
    assert [d["id"] for d in answer["documents"]] == [d["id"] for d in DOCUMENTS]
    for row, document in zip(expected.itertuples(), answer["documents"], strict=True):
        got = [document["p_bearish"], document["p_bullish"], document["p_neutral"]]
        np.testing.assert_allclose(got, [row.p_bearish, row.p_bullish, row.p_neutral], rtol=0, atol=1e-12)
        assert document["score"] == pytest.approx(row.p_bullish - row.p_bearish, abs=1e-12)


def test_headlines_asked_again_are_answered_from_the_kept_ones_identically(
        endpoint: str, expert_service: serve.ExpertService) -> None:
    fresh = [{**d, "title": f"{d['title']} (kept)"} for d in DOCUMENTS[:3]]
    encoded = expert_service.news.encoded
    first = ask(endpoint, fresh)
    assert expert_service.news.encoded == encoded + 3
    new = {**DOCUMENTS[4], "title": "Google announces a new phone (never asked before)"}
    again = ask(endpoint, [fresh[1], {**fresh[0], "id": "same text, another id"}, new])
    assert expert_service.news.encoded == encoded + 4  # only the one text not seen yet is encoded
    assert again["documents"][0]["p_bullish"] == first["documents"][1]["p_bullish"]
    assert again["documents"][1]["p_bearish"] == first["documents"][0]["p_bearish"]
    uncached = load_text_model(text_model_folder()).score([fresh[0]["title"]])
    assert again["documents"][1]["p_bearish"] == pytest.approx(uncached["p_bearish"].iloc[0], abs=1e-12)


def test_the_aggregate_at_the_decision_time_by_hand(endpoint: str) -> None:
    answer = ask(endpoint, DOCUMENTS)
    weights = [d["weight"] for d in answer["documents"]]
    # half-life 24 h, max age 168 h: d1 is 12 h old, d2 (09:00 UTC the day before) 36 h; the headline at the close,
    # the one after it and the one 7 days and 1 s old do not count
    assert weights == pytest.approx([2 ** -0.5, 2 ** -1.5, 0.0, 0.0, 0.0], rel=1e-12)
    s1, s2 = answer["documents"][0]["score"], answer["documents"][1]["score"]
    total = 2 ** -0.5 + 2 ** -1.5
    assert answer["news_score"] == pytest.approx((2 ** -0.5 * s1 + 2 ** -1.5 * s2) / total, rel=1e-12)
    assert answer["news_weight"] == pytest.approx(total, rel=1e-12)
    assert answer["news_confidence"] == pytest.approx(total / (total + 1), rel=1e-12)
    assert (answer["news_count"], answer["decision_time"]) == (2, "2024-01-05T21:00:00")


def test_a_document_published_after_the_decision_time_never_reaches_the_score(endpoint: str) -> None:
    counted = ask(endpoint, DOCUMENTS[:2])
    with_later = ask(endpoint, DOCUMENTS)
    assert with_later["news_score"] == counted["news_score"] and with_later["news_count"] == counted["news_count"]
    # the same document, an hour earlier than the decision time, does count and moves the score
    earlier = {**DOCUMENTS[3], "published_at": "2024-01-05T20:00:00Z"}
    moved = ask(endpoint, [*DOCUMENTS[:2], earlier])
    assert moved["news_count"] == 3 and moved["news_score"] != counted["news_score"]


def test_no_document_in_the_window_abstains_with_null_never_zero(endpoint: str) -> None:
    for documents in ([], DOCUMENTS[2:]):
        answer = ask(endpoint, documents)
        assert answer["news_score"] is None
        assert (answer["news_count"], answer["news_confidence"], answer["news_weight"]) == (0, 0.0, 0.0)


def test_the_text_expert_is_asked_beside_the_bar_experts_or_alone(endpoint: str) -> None:
    bars = request_bars(TRAIN_BARS + 20)
    status, both = invoke(endpoint, {"symbol": "GOOG", "experts": ["trend", "news"], "bars": bars,
                                     "decision_time": T, "documents": DOCUMENTS[:2]})
    assert status == 200, both
    assert set(both["answers"]) == {"trend", "news"} and both["model_version"] == NEWS_VERSION
    plain = serve.ExpertService(read_current(goog_registry())).invoke({"symbol": "GOOG", "expert": "trend",
                                                                        "bars": bars})
    assert both["answers"]["trend"] == plain
    assert both["answers"]["news"] == ask(endpoint, DOCUMENTS[:2])
    status, alone = invoke(endpoint, {"symbol": "GOOG", "experts": ["news"], "decision_time": T, "documents": []})
    assert status == 200 and alone["as_of"] == "2024-01-05T21:00:00" and alone["answers"]["news"]["news_count"] == 0
    status, bars_only = invoke(endpoint, {"symbol": "GOOG", "bars": bars})  # no documents: the bar experts only
    assert status == 200 and "news_score" not in bars_only and "p_up" in bars_only


@pytest.mark.parametrize(("body", "field"), [
    ({"expert": "news", "documents": []}, "decision_time: missing"),
    ({"expert": "news", "decision_time": T}, "documents: missing"),
    ({"expert": "news", "decision_time": 12, "documents": []}, "decision_time: 12"),
    ({"expert": "news", "decision_time": "friday", "documents": []}, "decision_time: 'friday' is not an ISO-8601"),
    ({"expert": "news", "decision_time": T, "documents": {"id": "x"}}, "documents: dict; expected a list"),
    ({"expert": "news", "decision_time": T, "documents": [DOCUMENTS[0], {**DOCUMENTS[1], "published_at": "later"}]},
     "documents[1].published_at: 'later'"),
    ({"expert": "news", "decision_time": T, "documents": [{"id": "x", "published_at": T}]}, "documents[0].title"),
    ({"expert": "news", "decision_time": T, "documents": [{"published_at": T, "title": "x"}]}, "documents[0].id"),
    ({"expert": "sentiment", "decision_time": T, "documents": []}, "expert: 'sentiment'"),
])
def test_bad_news_requests_are_400_naming_the_field(endpoint: str, body: dict[str, Any], field: str) -> None:
    status, answer = invoke(endpoint, {"symbol": "GOOG", **body})
    assert status == 400
    assert answer["error"].startswith(field), answer


def test_a_head_that_does_not_match_its_checksum_is_refused_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(read_current(goog_news_registry()), folder)
    (folder / "news" / "head.npz").write_bytes((folder / "news" / "head.npz").read_bytes() + b"\0")
    with pytest.raises(SignalEngineError, match=r"head.npz: sha256 \w+ differs from the bundle's field "
                                                r"'news.head_sha256'"):
        serve.ExpertService(folder)
