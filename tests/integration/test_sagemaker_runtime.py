"""SageMakerExperts against moto in server mode (sagemaker-runtime invoke_endpoint over HTTP).

moto answers ``invoke_endpoint`` from a queue of canned results, set with a POST to
``/moto-api/static/sagemaker/endpoint-results``; each new request body takes the next result (the adapter
names the expert in the body, so each endpoint's request is new).
"""

from __future__ import annotations

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


def query(tag: int) -> ExpertQuery:
    return ExpertQuery("SPX", "1d", BARS[:tag], history=5)


def test_answers_of_every_endpoint_are_parsed(endpoint: str, client: Any) -> None:
    answer = {"p_down": 0.2, "p_neutral": 0.3, "p_up": 0.5, "support": 9.5, "resistance": 12.0,
              "vol_forecast": 0.01, "vol_history": [0.01, 0.011]}
    queue(endpoint, *[json.dumps(answer)] * 3)
    experts = SageMakerExperts(client, ENDPOINTS)
    replies = experts.ask(query(10), list(ENDPOINTS), deadline_s=10)
    assert set(replies) == set(ENDPOINTS)
    for name, reply in replies.items():
        assert reply.ok and reply.answer == answer
        assert reply.model == ENDPOINTS[name] and reply.elapsed_ms > 0
    assert experts.models() == ENDPOINTS


def test_a_malformed_answer_is_an_error_reply_not_an_exception(endpoint: str, client: Any) -> None:
    queue(endpoint, '{"p_up": 0.5}', "Internal Server Error", "[0.1, 0.2]")
    replies = SageMakerExperts(client, ENDPOINTS).ask(query(9), list(ENDPOINTS), deadline_s=10)
    errors = sorted(r.error or "" for r in replies.values())
    assert sum(r.ok for r in replies.values()) == 1
    assert any("not JSON" in e for e in errors) and any("expected an object" in e for e in errors)


def test_an_expert_without_endpoint_is_named(endpoint: str, client: Any) -> None:
    queue(endpoint, '{"p_up": 0.5, "p_down": 0.1, "p_neutral": 0.4}')
    replies = SageMakerExperts(client, {"trend": "se-trend"}).ask(query(8), ["trend", "levels"], deadline_s=10)
    assert replies["trend"].ok
    assert "no endpoint for expert 'levels'" in (replies["levels"].error or "")


def test_per_symbol_endpoint_wins(endpoint: str, client: Any) -> None:
    queue(endpoint, '{"vol_forecast": 0.02, "vol_history": [0.02]}')
    experts = SageMakerExperts(client, {"volatility": "se-volatility", "volatility/SPX": "se-volatility-spx"})
    replies = experts.ask(query(7), ["volatility"], deadline_s=10)
    assert replies["volatility"].model == "se-volatility-spx" and replies["volatility"].ok


def test_the_request_body_carries_the_bars_and_the_expert(endpoint: str) -> None:
    sent: list[dict[str, Any]] = []

    class Recorder:
        def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            sent.append({**kwargs, "Body": json.loads(kwargs["Body"])})
            import io

            return {"Body": io.BytesIO(b'{"support": 1.0, "resistance": 2.0}')}

    SageMakerExperts(Recorder(), ENDPOINTS).ask(query(3), ["levels"], deadline_s=5)
    [call] = sent
    assert call["EndpointName"] == "se-levels" and call["ContentType"] == "application/json"
    assert call["Body"] == {"symbol": "SPX", "timeframe": "1d", "history": 5, "bars": BARS[:3], "expert": "levels"}


def test_a_slow_endpoint_misses_the_deadline() -> None:
    class Slow:
        def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            if kwargs["EndpointName"] == "se-trend":
                time.sleep(1.5)
            import io

            return {"Body": io.BytesIO(b'{"support": 1.0, "resistance": 2.0}')}

    replies = SageMakerExperts(Slow(), ENDPOINTS).ask(query(3), ["trend", "levels"], deadline_s=0.3)
    assert replies["levels"].ok
    assert "deadline of 300 ms" in (replies["trend"].error or "")
