"""SageMakerExperts against the real inference server (sagemaker_jobs/serve.py) in process, behind the SigV4 front end
of ``tests/sagemaker_endpoints.py``, through a real boto3 ``sagemaker-runtime`` client: the experts routed to one
endpoint are asked in one request and answer what the in-process experts answer; a symbol's own endpoint for one
expert splits the query into two requests, and one of them failing fails only its experts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.config import Config

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
from signal_engine.serving.bundle import read_current
from signal_engine.serving.messages import ExpertQuery
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT
from tests.sagemaker_endpoints import Endpoints, serve_endpoints
from tests.serving_support import EXPERTS, TRAIN_BARS, goog_registry, request_bars

SHARED = "se-experts"
OWN = "se-volatility-goog"
ROUTES = {"trend": SHARED, "levels": SHARED, "volatility": SHARED, "volatility/GOOG": OWN}
"""GOOG's volatility has an endpoint of its own (serving the same bundle); its trend and levels share one."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return read_current(goog_registry())


@pytest.fixture(scope="module")
def endpoints(folder: Path) -> Iterator[Endpoints]:
    with serve_endpoints({SHARED: folder, OWN: folder}) as running:
        yield running


@pytest.fixture(scope="module")
def runtime(endpoints: Endpoints) -> Iterator[Any]:
    """boto3's sagemaker-runtime client (one attempt), pointed at the endpoints' front end."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield boto3.client("sagemaker-runtime", endpoint_url=endpoints.url, region_name="us-east-1",
                           config=Config(read_timeout=120, retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def experts(runtime: Any) -> Iterator[SageMakerExperts]:
    client = SageMakerExperts(runtime, ROUTES)
    yield client
    client.close()


def goog(end: int) -> ExpertQuery:
    return ExpertQuery("GOOG", "1d", request_bars(end), history=250)


def counts(endpoints: Endpoints) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    return endpoints.requests(), {name: dict(c) for name, c in endpoints.answered().items()}


def test_each_endpoint_is_asked_once_for_its_experts_and_answers_as_in_process(
        experts: SageMakerExperts, endpoints: Endpoints, folder: Path) -> None:
    query = goog(TRAIN_BARS + 120)
    requests, answered = counts(endpoints)
    replies = experts.ask(query, EXPERTS, deadline_s=60)
    after_requests, after_answered = counts(endpoints)
    assert {name: after_requests[name] - requests[name] for name in requests} == {SHARED: 1, OWN: 1}
    assert after_answered[SHARED] == {k: answered[SHARED].get(k, 0) + 1 for k in ("trend", "levels")}
    assert after_answered[OWN] == {"volatility": answered[OWN].get("volatility", 0) + 1}
    local = InProcessExperts(folder / "experts")
    try:
        expected = local.ask(query, EXPERTS, deadline_s=60)
    finally:
        local.close()
    assert list(replies) == list(EXPERTS)
    for name in EXPERTS:
        assert replies[name].ok, replies[name].error
        assert json.dumps(replies[name].answer, sort_keys=True) == json.dumps(expected[name].answer, sort_keys=True)
    assert {name: r.model for name, r in replies.items()} == {"trend": SHARED, "levels": SHARED, "volatility": OWN}


@pytest.mark.parametrize(("endpoint", "failing", "failed"), [
    (OWN, "volatility", ["volatility"]),
    (SHARED, "levels", ["trend", "levels"]),
])
def test_one_endpoint_failing_fails_its_experts_only(experts: SageMakerExperts, endpoints: Endpoints,
                                                     endpoint: str, failing: str, failed: list[str]) -> None:
    query = goog(TRAIN_BARS + 130)
    service = endpoints.services[endpoint]
    service.fail_from(failing, pd.Timestamp(query.bars[-1]["timestamp"]))
    try:
        replies = experts.ask(query, EXPERTS, deadline_s=60)
    finally:
        service.fail_from(None)
    assert [name for name in EXPERTS if not replies[name].ok] == failed
    errors = {replies[name].error for name in failed}
    [error] = errors  # the endpoint's one error, given to each expert it was asked for
    assert error is not None and error.startswith("ModelError: ")
    assert f"expert {failing} made to fail" in error and "(500)" in error
    assert all(replies[name].model == endpoint for name in failed)
    answered = [name for name in EXPERTS if name not in failed]
    assert all(replies[name].ok and replies[name].answer for name in answered)


def test_an_expert_the_endpoint_does_not_serve_fails_its_request(runtime: Any) -> None:
    routed = SageMakerExperts(runtime, {"trend": SHARED, "sentiment": SHARED, "volatility": OWN})
    try:
        replies = routed.ask(goog(TRAIN_BARS + 140), ["trend", "sentiment", "volatility"], deadline_s=60)
    finally:
        routed.close()
    assert replies["volatility"].ok
    error = replies["trend"].error or ""
    assert replies["sentiment"].error == error and error.startswith("ModelError: ")
    assert "(400)" in error and "experts: ['trend', 'sentiment']" in error
