"""The combiner Lambda end to end offline: API Gateway REST events and a fake context in, the bundle from S3 and the
experts' SageMaker endpoints on moto (server mode), the audit log in SQLite.

moto's sagemaker-runtime ``invoke_endpoint`` answers from a queue of canned results set through
``/moto-api/static/sagemaker/endpoint-results`` (one result per new (endpoint, body)); the canned answers here are
what the real fitted experts answer for the request's bars, so the Lambda's signal can be compared with the one
computed in-process.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.messages import ExpertQuery
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from tests.book_support import BOOK, copy_of_book_database
from tests.handlers.conftest import Aws, FakeLambdaContext
from tests.serving_support import TRAIN_BARS, goog_registry, request_bars

ARTIFACTS = "signal-engine-artifacts"
ENDPOINTS = {"trend": "se-test-trend", "levels": "se-test-levels", "volatility": "se-test-volatility"}
HEAVY = ("pandas", "sklearn", "scipy", "tensorflow", "lightgbm", "arch")
WORKER = "signal-engine-batch-worker"


def worker_function(aws: Aws) -> None:
    """The batch worker as a function on moto (its code is this process's handler module, not the zip)."""
    client = boto3.client("lambda")
    if WORKER in {f["FunctionName"] for f in client.list_functions()["Functions"]}:
        return
    iam = boto3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    try:
        role = iam.get_role(RoleName="batch-worker")["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="batch-worker", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    client.create_function(FunctionName=WORKER, Runtime="python3.11", Handler="combiner.handler.batch_worker",
                           Role=role["Arn"], Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18}, Timeout=900)


def api_event(method: str, path: str, body: Any = None, *, raw_body: str | None = None,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST API proxy event as Lambda receives it (stage ``prod``, API key identity)."""
    head = {"Accept": "application/json", "Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1."
            "amazonaws.com", "User-Agent": "curl/8.5.0", "X-Amzn-Trace-Id": "Root=1-65a1b2c3-0123456789abcdef01234567",
            "X-Forwarded-For": "203.0.113.10", "X-Forwarded-Port": "443", "X-Forwarded-Proto": "https",
            "x-api-key": "test-api-key", **(headers or {})}
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": head,
        "multiValueHeaders": {k: [v] for k, v in head.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "extendedRequestId": "Yx1aZFexample=", "httpMethod": method,
            "identity": {"accessKey": None, "accountId": None, "apiKey": "test-api-key", "apiKeyId": "k1a2b3",
                         "caller": None, "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                         "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                         "sourceIp": "203.0.113.10", "user": None, "userAgent": "curl/8.5.0", "userArn": None},
            "path": f"/prod{path}", "protocol": "HTTP/1.1", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "23/Nov/2026:15:01:02 +0000", "requestTimeEpoch": 1795359662000, "resourceId": "r3s0urce",
            "resourcePath": path, "stage": "prod",
        },
        "body": text, "isBase64Encoded": False,
    }


def queue_results(aws: Aws, bodies: list[str]) -> None:
    """Queue moto's canned sagemaker-runtime answers (one per new (endpoint, body) it is asked)."""
    payload = json.dumps({"results": [{"Body": b, "ContentType": "application/json"} for b in bodies]}).encode()
    request = urllib.request.Request(f"{aws.endpoint}/moto-api/static/sagemaker/endpoint-results", data=payload,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def universal_answer(end: int) -> str:
    """What the real experts' endpoint (``sagemaker_jobs/serve.py``) answers for GOOG's bars ending at ``end`` when
    asked for every expert: each expert's outputs under ``answers``, so it answers whichever experts are asked."""
    folder = read_current(goog_registry())
    experts = InProcessExperts(folder / "experts")
    bars = SignalRequest.model_validate({"symbol": "GOOG", "bars": request_bars(end)}).model_dump(mode="json")["bars"]
    replies = experts.ask(ExpertQuery("GOOG", "1d", bars, history=250), ("trend", "levels", "volatility"), 60)
    experts.close()
    answers: dict[str, Any] = {}
    for name, reply in replies.items():
        assert reply.answer is not None
        answers[name] = reply.answer
    return json.dumps({"symbol": "GOOG", "model_version": ServingBundle.load(folder).version,
                       "as_of": bars[-1]["timestamp"], "answers": answers})


def publish_registry(aws: Aws, bucket: str, registry: Path) -> str:
    """The registry's CURRENT version and its pointer under ``s3://bucket/models/`` (as the publish step writes them),
    in a new bucket; the version."""
    aws.s3.create_bucket(Bucket=bucket)
    version = (registry / "CURRENT").read_text().strip()
    for path in sorted((registry / version).rglob("*")):
        if path.is_file():
            aws.s3.put_object(Bucket=bucket, Key=f"models/{path.relative_to(registry)}", Body=path.read_bytes())
    aws.s3.put_object(Bucket=bucket, Key="models/CURRENT", Body=(version + "\n").encode())
    return version


@pytest.fixture(scope="module")
def combiner(aws: Aws, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The handler module, imported (cold start) with its environment pointing at moto and a SQLite audit DB."""
    registry = goog_registry()
    publish_registry(aws, ARTIFACTS, registry)
    database = copy_of_book_database(tmp_path_factory.mktemp("combiner"))  # holds the live book "daily" too
    environment = {"MODEL_BUNDLE_URI": f"s3://{ARTIFACTS}/models/", "EXPERT_ENDPOINTS": json.dumps(ENDPOINTS),
                   "EXPERT_DEADLINE_MS": "5000", "SIGNAL_ENGINE_DATABASE_URL": database, "MAX_BATCH_REQUESTS": "2",
                   "BATCH_JOBS_URI": f"s3://{ARTIFACTS}/signal-batches/", "BATCH_WORKER_FUNCTION": WORKER,
                   "BUNDLE_CACHE_DIR": str(tmp_path_factory.mktemp("bundle-cache")),
                   "POWERTOOLS_METRICS_NAMESPACE": "SignalEngine", "POWERTOOLS_DEV": "false"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        sys.modules.pop("lambda_src.combiner.handler", None)
        module = importlib.import_module("lambda_src.combiner.handler")
        module.live.cache_clear()
        yield module
        module.live.cache_clear()


def call(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = module.handler(event, FakeLambdaContext(function_name="signal-engine-combiner"))
    headers = {**(result.get("headers") or {}), **{k: v[0] for k, v in (result.get("multiValueHeaders") or {}).items()}}
    assert headers["Content-Type"].startswith("application/json")
    return result["statusCode"], json.loads(result["body"])


def test_signal_from_the_sagemaker_endpoints_matches_in_process(combiner: ModuleType, aws: Aws) -> None:
    end = TRAIN_BARS + 210
    queue_results(aws, [universal_answer(end)] * 3)
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": request_bars(end)}))
    assert status == 200, body
    folder = read_current(goog_registry())
    local = SignalService(ServingBundle.load(folder), InProcessExperts(folder / "experts"), None, deadline_s=60)
    expected = local.signal(SignalRequest.model_validate({"symbol": "GOOG", "bars": request_bars(end)}))
    assert body["signal"] == expected.signal
    assert body["score"] == pytest.approx(expected.score, abs=1e-12)
    assert body["position"] == pytest.approx(expected.position, abs=1e-12)
    assert body["gate"] == pytest.approx(expected.gate, abs=1e-12)
    assert body["degraded"] is False and body["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert {name: view["model"] for name, view in body["experts"].items()} == ENDPOINTS
    audit = SqlDatabase.connect(combiner.settings.database_url).ledger.signals("GOOG")
    assert audit[-1].score == pytest.approx(body["score"]) and audit[-1].model_version == body["model_version"]
    assert audit[-1].inputs["experts"]["trend"]["model"] == "se-test-trend"
    assert audit[-1].inputs["bars"]["count"] == 400


def test_one_endpoint_answering_garbage_degrades(combiner: ModuleType, aws: Aws) -> None:
    end = TRAIN_BARS + 260
    queue_results(aws, [universal_answer(end), "<html>502 Bad Gateway</html>", universal_answer(end)])
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": request_bars(end)}))
    assert status == 200, body
    assert body["degraded"] is True and len(body["degraded_experts"]) == 1, body["experts"]
    [broken] = body["degraded_experts"]
    assert "not JSON" in body["experts"][broken]["error"] and body["gate"][broken] == 0.0
    assert sum(body["gate"].values()) == pytest.approx(1.0)


def test_every_endpoint_failing_is_503_with_a_clear_body(combiner: ModuleType, aws: Aws) -> None:
    end = TRAIN_BARS + 310
    queue_results(aws, ["[1, 2]", "[1, 2]", "[1, 2]"])
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG", "bars": request_bars(end)}))
    assert status == 503
    assert body["error"] == "experts_unavailable"
    assert "no expert answered" in body["message"] and "expected an object" in body["message"]


@pytest.mark.parametrize(
    ("body", "raw", "field"),
    [
        ({"timeframe": "1d"}, None, "symbol"),
        ({"symbol": "GOOG", "bars": [{"timestamp": "2010-01-04", "open": 1, "high": 2, "low": 1, "close": -3}]},
         None, "bars[0].close"),
        ({"symbol": "GOOG", "position": 3}, None, "position"),
        ({"symbol": "GOOG", "surprise": 1}, None, "surprise"),
        (None, "{not json", "body"),
    ],
)
def test_bad_requests_are_422_naming_the_field(combiner: ModuleType, body: Any, raw: str | None, field: str) -> None:
    status, answer = call(combiner, api_event("POST", "/signals", body, raw_body=raw))
    assert status == 422
    assert field in [f["field"] for f in answer["fields"]]
    assert field in answer["message"]


def test_too_few_bars_and_unknown_symbols(combiner: ModuleType) -> None:
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "GOOG",
                                                                 "bars": request_bars(TRAIN_BARS + 50, 100)}))
    assert status == 422 and body["fields"] == [{"field": "bars", "problem": "needs at least 300 bars"}]
    status, body = call(combiner, api_event("POST", "/signals", {"symbol": "TSLA"}))
    assert status == 404 and "GOOG" in body["message"]


def test_batch_models_health_and_unknown_routes(combiner: ModuleType, aws: Aws) -> None:
    end = TRAIN_BARS + 360
    queue_results(aws, [universal_answer(end)] * 3)
    status, body = call(combiner, api_event("POST", "/signals/batch", {"requests": [
        {"symbol": "GOOG", "bars": request_bars(end)}, {"symbol": "XYZ", "bars": request_bars(end)}]}))
    assert status == 200
    assert [s["symbol"] for s in body["signals"]] == ["GOOG"] and body["errors"][0]["status"] == 404
    status, body = call(combiner, api_event("GET", "/models"))
    assert status == 200 and body["experts"] == ENDPOINTS and body["model_version"].endswith("test0001")
    status, body = call(combiner, api_event("GET", "/health"))
    assert (status, body["status"]) == (200, "ok")
    status, body = call(combiner, api_event("DELETE", "/signals"))
    assert status == 405 and "POST" in body["message"]
    status, body = call(combiner, api_event("GET", "/nowhere"))
    assert status == 404 and "POST /signals" in body["message"]
    status, body = call(combiner, api_event("POST", "/signals", raw_body="symbol=GOOG",
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 415


def test_a_batch_over_the_deployments_limit_is_422_naming_it_before_any_expert_is_asked(
        combiner: ModuleType, aws: Aws) -> None:
    end = TRAIN_BARS + 360
    status, body = call(combiner, api_event("POST", "/signals/batch", {"requests": [
        {"symbol": "GOOG", "bars": request_bars(end)}] * 3}))
    assert status == 422 and body["error"] == "validation_error"
    assert body["message"] == ("field 'requests': 3 requests, at most 2 per call here (what answers within the "
                               "function's timeout); split the batch into calls of at most 2")
    assert body["fields"] == [{"field": "requests", "problem": "at most 2 items per call"}]


def test_a_batch_job_runs_on_the_worker_and_answers_what_the_batch_answers(
        combiner: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /signals/batch/jobs stores the request in S3 and invokes the worker function asynchronously (moto runs
    the invocation's handler in this process: tests/fanout_cloud.py); GET answers the job, done, with the signals
    POST /signals/batch gives for the same requests."""
    from moto.awslambda.models import LambdaFunction

    from tests.fanout_cloud import _invoke_in_process

    worker_function(aws)
    invoked: list[dict[str, Any]] = []

    def invoke(function: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
        invoked.append({"name": function.function_name, "type": request_headers.get("X-Amz-Invocation-Type"),
                        "event": json.loads(body)})
        return _invoke_in_process(function, body, request_headers, response_headers)

    monkeypatch.setattr(LambdaFunction, "invoke", invoke)
    end = TRAIN_BARS + 380
    queue_results(aws, [universal_answer(end)] * 3)
    requests = [{"symbol": "GOOG", "bars": request_bars(end)}, {"symbol": "XYZ", "bars": request_bars(end)}]
    status, batch = call(combiner, api_event("POST", "/signals/batch", {"requests": requests}))
    assert status == 200
    status, job = call(combiner, api_event("POST", "/signals/batch/jobs", {"requests": requests * 2}))
    assert status == 202 and job["requests"] == 4
    assert invoked == [{"name": WORKER, "type": "Event", "event": {"job_id": job["job_id"]}}]
    stored = aws.s3.list_objects_v2(Bucket=ARTIFACTS, Prefix=f"signal-batches/{job['job_id']}/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in stored) == ["request.json", "result.json"]
    status, done = call(combiner, api_event("GET", f"/signals/batch/jobs/{job['job_id']}"))
    assert status == 200 and done["status"] == "done" and done["requests"] == 4
    decided = [(s["symbol"], s["signal"], s["score"], s["position"]) for s in done["result"]["signals"]]
    assert decided == [(s["symbol"], s["signal"], s["score"], s["position"]) for s in batch["signals"]] * 2
    assert [e["index"] for e in done["result"]["errors"]] == [1, 3]


def test_a_batch_job_the_worker_cannot_start_is_failed_at_once(combiner: ModuleType, aws: Aws,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(combiner.settings, "batch_worker_function", "no-such-function")
    status, body = call(combiner, api_event("POST", "/signals/batch/jobs", {"requests": [{"symbol": "GOOG"}]}))
    assert status == 500 and body["error"] == "internal_error"
    (job,) = [o["Key"].split("/")[1] for o in aws.s3.list_objects_v2(
        Bucket=ARTIFACTS, Prefix="signal-batches/")["Contents"] if o["Key"].endswith("/failure.json")]
    status, view = call(combiner, api_event("GET", f"/signals/batch/jobs/{job}"))
    assert status == 200 and view["status"] == "failed"
    assert view["error"].startswith("ResourceNotFoundException: could not start the job: ")


def test_a_book_symbol_and_get_book_through_api_gateway(combiner: ModuleType) -> None:
    database = SqlDatabase.connect(combiner.settings.database_url)
    stored = {p.symbol: p for p in database.books.positions(BOOK)}
    span = database.books.span(BOOK)
    assert span is not None
    for symbol in ("SPX", "GOOG"):  # SPX: the model does not serve it; GOOG: the store has no bars for the MoE
        status, body = call(combiner, api_event("POST", "/signals", {"symbol": symbol}))
        assert status == 200, body
        assert body["source"] == "book" and body["position"] == stored[symbol].position
        assert body["book"]["contributions"] == stored[symbol].contributions
        assert body["as_of"] == f"{span.latest.isoformat()}Z" and body["experts"] == {} and body["moe"] is None
        assert body["moe_unavailable"]
        audit = database.ledger.signals(symbol)
        assert audit[-1].inputs["source"] == "book" and audit[-1].position == stored[symbol].position
    event = api_event("GET", "/book")
    event.update(queryStringParameters={"name": BOOK, "recent_bars": "4"},
                 multiValueQueryStringParameters={"name": [BOOK], "recent_bars": ["4"]})
    status, body = call(combiner, event)
    assert status == 200, body
    [book] = body["books"]
    assert book["name"] == BOOK and book["bars"] == span.bars and book["recent_bars"] == 4
    assert {p["symbol"]: p["position"] for p in book["positions"]} == {s: p.position for s, p in stored.items()}
    last4 = [e for e in database.books.event_rows(BOOK) if e.bar_time in database.books.bar_times(BOOK, last=4)]
    assert [(e["kind"], e["symbol"], e["model"]) for e in book["recent_events"]] == [
        (e.kind, e.symbol, e.model) for e in last4]
    event["queryStringParameters"], event["multiValueQueryStringParameters"] = {"name": "hourly"}, {"name": ["hourly"]}
    status, body = call(combiner, event)
    assert status == 404 and body["error"] == "unknown_book"
    database.close()


def test_the_handler_imports_no_heavy_library(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        os.environ.update(MODEL_BUNDLE_URI="s3://bucket/models/", SIGNAL_ENGINE_DATABASE_URL="sqlite:///{tmp_path}/a.db",
                          BATCH_JOBS_URI="s3://bucket/signal-batches/", AWS_DEFAULT_REGION="us-east-1")
        import lambda_src.combiner.handler as handler
        assert handler.jobs() is not None  # what POST /signals/batch/jobs and the batch worker import, too
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2], check=True)
    assert result.stdout.strip() == "", f"the combiner's import graph pulls in {result.stdout.strip()}"


def test_a_bad_environment_names_the_variable() -> None:
    from lambda_src.combiner.settings import CombinerSettings
    from signal_engine.errors import ConfigError

    with pytest.raises(ConfigError, match="EXPERT_ENDPOINTS is not JSON"):
        CombinerSettings.from_env({"MODEL_BUNDLE_URI": "x", "EXPERT_ENDPOINTS": "trend=a",
                                   "SIGNAL_ENGINE_DATABASE_URL": "sqlite://"})
    with pytest.raises(ConfigError, match="EXPERT_DEADLINE_MS"):
        CombinerSettings.from_env({"MODEL_BUNDLE_URI": "x", "EXPERT_DEADLINE_MS": "soon",
                                   "SIGNAL_ENGINE_DATABASE_URL": "sqlite://"})
    with pytest.raises(ConfigError, match="SIGNAL_ENGINE_DATABASE_SECRET"):
        CombinerSettings.from_env({"MODEL_BUNDLE_URI": "x"})
    for limit in ("0", "1001", "many"):
        with pytest.raises(ConfigError, match="MAX_BATCH_REQUESTS"):
            CombinerSettings.from_env({"MODEL_BUNDLE_URI": "x", "MAX_BATCH_REQUESTS": limit,
                                       "SIGNAL_ENGINE_DATABASE_URL": "sqlite://"})
    assert CombinerSettings.from_env({"MODEL_BUNDLE_URI": "x", "SIGNAL_ENGINE_DATABASE_URL": "sqlite://"}
                                     ).max_batch_requests == 1000  # unset: the API's own limit


def test_the_combiner_reads_the_primary_source_the_export_reads() -> None:
    from lambda_src.combiner.settings import CombinerSettings
    from signal_engine.errors import ConfigError

    base = {"MODEL_BUNDLE_URI": "x", "SIGNAL_ENGINE_DATABASE_URL": "sqlite://"}
    settings = CombinerSettings.from_env({**base, "SIGNAL_ENGINE_PRIMARY_SOURCES": "aapl=nasdaq, MSFT=yahoo"})
    assert settings.primary_source_map() == {"AAPL": "nasdaq", "MSFT": "yahoo"}
    assert CombinerSettings.from_env(base).primary_source_map() == {}
    with pytest.raises(ConfigError, match=r"SIGNAL_ENGINE_PRIMARY_SOURCES: 'AAPL=bloomberg' is not SYMBOL=SOURCE"):
        CombinerSettings.from_env({**base, "SIGNAL_ENGINE_PRIMARY_SOURCES": "AAPL=bloomberg"})
