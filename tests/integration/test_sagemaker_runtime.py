"""SageMakerExperts against moto in server mode (sagemaker-runtime invoke_endpoint over HTTP), and against fake
clients for what an endpoint sends: the request grouping the experts of one endpoint, answers that leave an expert
out, the deadline. ``test_sagemaker_runtime_serve.py`` asks the real inference server.

moto answers ``invoke_endpoint`` from a queue of canned results, set with a POST to
``/moto-api/static/sagemaker/endpoint-results``; each new request body takes the next result (the adapter
names the endpoint's experts in the body, so each endpoint's request is new).
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
from signal_engine.serving.messages import ExpertQuery
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

ENDPOINTS = {"trend": "se-trend", "levels": "se-levels", "volatility": "se-volatility"}
BARS = [{"timestamp": f"2024-01-{d:02d}T00:00:00", "open": 10.0 + d, "high": 11.0 + d, "low": 9.0 + d,
         "close": 10.5 + d, "volume": 1000.0} for d in range(1, 11)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch, moto_server() as url:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield url


@pytest.fixture(scope="module")
def client(endpoint: str) -> Any:
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}))


def queue(endpoint: str, *bodies: str) -> None:
    payload = json.dumps({"results": [{"Body": b, "ContentType": "application/json"} for b in bodies]}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/static/sagemaker/endpoint-results", data=payload,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


OUTPUTS: dict[str, dict[str, Any]] = {
    "trend": {"p_down": 0.2, "p_neutral": 0.3, "p_up": 0.5}, "levels": {"support": 9.5, "resistance": 12.0},
    "volatility": {"vol_forecast": 0.01, "vol_history": [0.01, 0.011]}}


def query(tag: int) -> ExpertQuery:
    return ExpertQuery("SPX", "1d", BARS[:tag], history=5)


def grouped(answers: dict[str, Any]) -> str:
    """An endpoint's answer to a request naming several experts (``sagemaker_jobs/serve.py``)."""
    return json.dumps({"symbol": "SPX", "model_version": "v1", "as_of": "2024-01-10 00:00:00", "answers": answers})


class Recorder:
    """A sagemaker-runtime client that records each request and answers ``answer(endpoint, body)``."""

    def __init__(self, answer: Any = lambda endpoint, body: grouped(OUTPUTS), delay_s: dict[str, float] | None = None,
                 ) -> None:
        self.sent: list[dict[str, Any]] = []
        self._answer = answer
        self._delay_s = delay_s or {}

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        body = json.loads(kwargs["Body"])
        self.sent.append({**kwargs, "Body": body})
        time.sleep(self._delay_s.get(kwargs["EndpointName"], 0.0))
        return {"Body": io.BytesIO(self._answer(kwargs["EndpointName"], body).encode())}


def test_answers_of_every_endpoint_are_parsed(endpoint: str, client: Any) -> None:
    queue(endpoint, *[grouped(OUTPUTS)] * 3)
    experts = SageMakerExperts(client, ENDPOINTS)
    replies = experts.ask(query(10), list(ENDPOINTS), deadline_s=10)
    assert list(replies) == list(ENDPOINTS)
    for name, reply in replies.items():
        assert reply.ok and reply.answer == OUTPUTS[name] and reply.expert == name
        assert reply.model == ENDPOINTS[name] and reply.elapsed_ms > 0
    assert experts.models() == ENDPOINTS


def test_a_malformed_answer_is_an_error_reply_not_an_exception(endpoint: str, client: Any) -> None:
    queue(endpoint, grouped(OUTPUTS), "Internal Server Error", "[0.1, 0.2]")
    replies = SageMakerExperts(client, ENDPOINTS).ask(query(9), list(ENDPOINTS), deadline_s=10)
    errors = sorted(r.error or "" for r in replies.values())
    assert sum(r.ok for r in replies.values()) == 1
    assert any("not JSON" in e for e in errors) and any("expected an object" in e for e in errors)


def test_an_expert_without_endpoint_is_named(endpoint: str, client: Any) -> None:
    queue(endpoint, grouped({"trend": OUTPUTS["trend"]}))
    replies = SageMakerExperts(client, {"trend": "se-trend"}).ask(query(8), ["trend", "levels"], deadline_s=10)
    assert replies["trend"].ok
    assert replies["levels"].error == "LookupError: no endpoint for expert 'levels'; EXPERT_ENDPOINTS names ['trend']"
    assert replies["levels"].model == ""


def test_per_symbol_endpoint_wins(endpoint: str, client: Any) -> None:
    queue(endpoint, grouped({"volatility": {"vol_forecast": 0.02, "vol_history": [0.02]}}))
    experts = SageMakerExperts(client, {"volatility": "se-volatility", "volatility/SPX": "se-volatility-spx"})
    replies = experts.ask(query(7), ["volatility"], deadline_s=10)
    assert replies["volatility"].model == "se-volatility-spx" and replies["volatility"].ok


def test_one_request_per_endpoint_names_every_expert_routed_there() -> None:
    recorder = Recorder()
    endpoints = {"trend": "se-experts", "levels": "se-experts", "volatility": "se-experts",
                 "volatility/SPX": "se-volatility-spx"}
    replies = SageMakerExperts(recorder, endpoints).ask(query(3), ["levels", "volatility", "trend"], deadline_s=5)
    bodies = {call["EndpointName"]: call["Body"] for call in recorder.sent}
    assert len(recorder.sent) == 2 and all(call["ContentType"] == "application/json" for call in recorder.sent)
    rows = {"symbol": "SPX", "timeframe": "1d", "history": 5, "bars": BARS[:3]}
    assert bodies == {"se-experts": {**rows, "experts": ["levels", "trend"]},
                      "se-volatility-spx": {**rows, "experts": ["volatility"]}}
    assert list(replies) == ["levels", "volatility", "trend"]
    assert {name: (r.answer, r.model) for name, r in replies.items()} == {
        "levels": (OUTPUTS["levels"], "se-experts"), "trend": (OUTPUTS["trend"], "se-experts"),
        "volatility": (OUTPUTS["volatility"], "se-volatility-spx")}


def test_another_symbol_asks_every_expert_at_the_shared_endpoint() -> None:
    recorder = Recorder()
    endpoints = {"trend": "se-experts", "levels": "se-experts", "volatility": "se-experts",
                 "volatility/SPX": "se-volatility-spx"}
    other = ExpertQuery("NDX", "1d", BARS[:3], history=5)
    replies = SageMakerExperts(recorder, endpoints).ask(other, list(OUTPUTS), deadline_s=5)
    [call] = recorder.sent
    assert call["EndpointName"] == "se-experts" and call["Body"]["experts"] == list(OUTPUTS)
    assert all(r.ok and r.model == "se-experts" for r in replies.values())


def test_an_expert_the_answer_leaves_out_is_an_error_naming_it() -> None:
    recorder = Recorder(lambda endpoint, body: grouped({"trend": OUTPUTS["trend"], "volatility": [0.1]}))
    endpoints = dict.fromkeys(OUTPUTS, "se-experts")
    replies = SageMakerExperts(recorder, endpoints).ask(query(3), list(OUTPUTS), deadline_s=5)
    assert len(recorder.sent) == 1
    assert replies["trend"].ok and replies["trend"].answer == OUTPUTS["trend"]
    assert replies["levels"].error == ("LookupError: endpoint se-experts answered no outputs for expert 'levels' "
                                       "(its answers name ['trend', 'volatility'])")
    assert replies["volatility"].error == ("ValueError: endpoint se-experts answered a JSON list for expert "
                                           "'volatility'; expected an object")
    assert not replies["levels"].ok and replies["levels"].model == "se-experts"


@pytest.mark.parametrize(("answer", "message"), [
    (json.dumps({**OUTPUTS["trend"], **OUTPUTS["levels"]}), "answered an object without an \"answers\" object"),
    (json.dumps({"answers": [OUTPUTS["trend"]]}), "answered an object without an \"answers\" object"),
    ("<html>502 Bad Gateway</html>", "answered b'<html>502 Bad Gateway</html>', not JSON"),
])
def test_a_malformed_group_answer_fails_each_of_its_experts_alike(answer: str, message: str) -> None:
    endpoints = {"trend": "se-experts", "levels": "se-experts", "volatility": "se-volatility"}
    recorder = Recorder(lambda endpoint, body: answer if endpoint == "se-experts" else grouped(OUTPUTS))
    replies = SageMakerExperts(recorder, endpoints).ask(query(3), list(OUTPUTS), deadline_s=5)
    assert replies["volatility"].ok
    assert replies["trend"].error == replies["levels"].error
    assert replies["trend"].error is not None and message in replies["trend"].error
    assert replies["trend"].error.startswith("ValueError: endpoint se-experts ")
    assert replies["trend"].elapsed_ms == replies["levels"].elapsed_ms > 0


def test_a_slow_endpoint_misses_the_deadline_for_each_of_its_experts() -> None:
    endpoints = {"trend": "se-experts", "levels": "se-experts", "volatility": "se-volatility"}
    recorder = Recorder(delay_s={"se-experts": 1.5})
    replies = SageMakerExperts(recorder, endpoints).ask(query(3), list(OUTPUTS), deadline_s=0.3)
    assert replies["volatility"].ok
    for name in ("trend", "levels"):
        assert replies[name].error == "no answer within the deadline of 300 ms"
        assert replies[name].model == "se-experts" and replies[name].elapsed_ms == 300


def test_an_expert_asked_twice_is_asked_once() -> None:
    recorder = Recorder()
    replies = SageMakerExperts(recorder, ENDPOINTS).ask(query(3), ["trend", "trend"], deadline_s=5)
    [call] = recorder.sent
    assert call["Body"]["experts"] == ["trend"] and list(replies) == ["trend"]
