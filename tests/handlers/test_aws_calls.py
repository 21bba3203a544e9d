"""Every AWS call the Lambda handlers make, recorded from botocore while their code paths run against moto, is in
the inventory that tests/infra/test_access.py checks against the roles' policies (tests/infra/aws_calls.py), and
every inventory entry is made by the code: the two cannot drift apart silently."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
import yaml
from botocore.client import BaseClient
from moto.awslambda.models import LambdaFunction

from signal_engine import bootstrap as bootstrap_module
from signal_engine.serving.messages import ExpertQuery
from signal_engine.storage.ingest import ingest_prices
from signal_engine.storage.records import Document
from tests.fixtures.configs import ONE_MODEL_BOOK
from tests.fixtures.payloads import ok
from tests.handlers.conftest import Aws, FakeLambdaContext, Serve, event
from tests.handlers.test_combiner_handler import api_event, queue_results, universal_answer, worker_function
from tests.handlers.test_combiner_handler import combiner as combiner
from tests.handlers.test_export_bars_handler import exporter as exporter
from tests.infra.aws_calls import LAMBDA_CALLS
from tests.serving_support import TRAIN_BARS, request_bars

NEWS = Document(Document.stable_id("test", "news", "1"), "news", "test", ("AAPL",), datetime(2024, 1, 5, 14, 30),
                "Apple shares rally")
SECRET = {"username": "admin", "password": "pw", "host": "127.0.0.1", "port": 1, "dbname": "signal_engine"}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[str, str]]]:
    """(botocore service name, operation) of every API call any botocore client makes during the test."""
    calls: set[tuple[str, str]] = set()
    original = BaseClient._make_api_call

    def record(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.add((client.meta.service_model.service_name, operation_name))
        return original(client, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    yield calls


@pytest.fixture(scope="module")
def secrets(aws: Aws) -> dict[str, str]:
    """RDS-layout secrets on moto for the stores, made before any call is recorded."""
    client = boto3.client("secretsmanager")
    arns = {}
    for name in ("mysql", "docdb"):
        secret = f"aws-calls-{name}"  # moto's state is per process: names no other test creates
        try:
            arns[name] = str(client.describe_secret(SecretId=secret)["ARN"])
        except client.exceptions.ResourceNotFoundException:
            arns[name] = str(client.create_secret(Name=secret, SecretString=json.dumps(SECRET))["ARN"])
    return arns


def _inventory(group: str) -> set[tuple[str, str]]:
    return {(call.service, call.operation) for call in LAMBDA_CALLS[group]}


def test_the_collectors_calls_are_the_inventory(secrets: dict[str, str], handlers: dict[str, ModuleType],
                                                serve: Serve, aws: Aws, context: FakeLambdaContext,
                                                recorded: set[tuple[str, str]]) -> None:
    serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    serve({"chart/AAPL": [ok("yahoo/chart_not_found.json", 404)]})  # a failed window drops its idempotency record
    with pytest.raises(Exception, match="404"):
        handlers["yahoo_bars"].handler(event("collect_request_event", symbols=["AAPL"]), context)
    # The stores' secrets (the deployed functions get SIGNAL_ENGINE_DATABASE_SECRET and _DOCUMENT_SECRET).
    settings = bootstrap_module.Settings(database_secret=secrets["mysql"],
                                         document_secret=secrets["docdb"])
    assert bootstrap_module._database_url(settings, boto3.client).startswith("mysql+pymysql://")
    assert bootstrap_module._document_url(settings, boto3.client).startswith("mongodb://")
    assert recorded == _inventory("collectors")


def test_the_bars_exports_calls_are_the_inventory(secrets: dict[str, str], exporter: ModuleType,
                                                  runtime: ModuleType, aws: Aws,
                                                  context: FakeLambdaContext, goog_csv: Path,
                                                  recorded: set[tuple[str, str]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_prices(goog_csv, runtime.storage().prices, symbol="AAPL")
    runtime.storage().documents.write_documents([NEWS])
    monkeypatch.setenv("EXPORT_NEWS", "true")
    response = exporter.handler(event("scheduled_event"), context)
    assert [n["key"] for n in response["news"]["exported"]] == ["news/AAPL.jsonl"]
    # The stores' secrets (the deployed function gets SIGNAL_ENGINE_DATABASE_SECRET and _DOCUMENT_SECRET).
    settings = bootstrap_module.Settings(database_secret=secrets["mysql"], document_secret=secrets["docdb"])
    assert bootstrap_module._database_url(settings, boto3.client).startswith("mysql+pymysql://")
    assert bootstrap_module._document_url(settings, boto3.client).startswith("mongodb://")
    assert recorded == _inventory("export_bars")


def test_the_combiners_calls_are_the_inventory(secrets: dict[str, str], combiner: ModuleType, aws: Aws,
                                               recorded: set[tuple[str, str]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Bars of their own: moto answers each new (endpoint, body) from its queue once, then repeats that answer,
    # so these must not be the bodies test_combiner_handler.py queues answers for.
    end = TRAIN_BARS + 203
    queue_results(aws, [universal_answer(end)] * 3)
    worker_function(aws)
    recorded.clear()  # universal_answer's own setup made no AWS call, but be sure
    status = combiner.handler(api_event("POST", "/signals", {"symbol": "GOOG", "bars": request_bars(end)}),
                              FakeLambdaContext(function_name="signal-engine-combiner"))["statusCode"]
    assert status == 200
    # A batch job: stored and started (the worker's own calls are its inventory's, below), then asked for.
    monkeypatch.setattr(LambdaFunction, "invoke", lambda *args: b"")
    job = combiner.handler(api_event("POST", "/signals/batch/jobs", {"requests": [{"symbol": "GOOG"}]}),
                           FakeLambdaContext(function_name="signal-engine-combiner"))
    assert job["statusCode"] == 202
    job_id = json.loads(job["body"])["job_id"]
    answer = combiner.handler(api_event("GET", f"/signals/batch/jobs/{job_id}"),
                              FakeLambdaContext(function_name="signal-engine-combiner"))
    assert (answer["statusCode"], json.loads(answer["body"])["status"]) == (200, "running")
    _cold_start_with_the_audit_secret(combiner, secrets, monkeypatch)
    assert recorded == _inventory("combiner")


def _cold_start_with_the_audit_secret(combiner: ModuleType, secrets: dict[str, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start with the deployed environment's audit-log secret: the wiring reads it, then connects (refused)."""
    monkeypatch.delenv("SIGNAL_ENGINE_DATABASE_URL")
    monkeypatch.setenv("SIGNAL_ENGINE_DATABASE_SECRET", secrets["mysql"])
    monkeypatch.setattr(combiner, "settings", type(combiner.settings).from_env())
    combiner.live.cache_clear()
    with pytest.raises(sa.exc.OperationalError):
        combiner.service()
    combiner.live.cache_clear()


def test_the_batch_workers_calls_are_the_inventory(secrets: dict[str, str], combiner: ModuleType, aws: Aws,
                                                   recorded: set[tuple[str, str]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    end = TRAIN_BARS + 207  # bars of its own, as above
    queue_results(aws, [universal_answer(end)] * 3)
    worker_function(aws)
    monkeypatch.setattr(LambdaFunction, "invoke", lambda *args: b"")  # started by hand below, as a cold worker
    job = combiner.handler(api_event("POST", "/signals/batch/jobs", {"requests": [
        {"symbol": "GOOG", "bars": request_bars(end)}]}), FakeLambdaContext(function_name="signal-engine-combiner"))
    job_id = json.loads(job["body"])["job_id"]
    combiner.live.cache_clear()
    recorded.clear()
    done = combiner.batch_worker({"job_id": job_id}, FakeLambdaContext(function_name="signal-engine-batch-worker"))
    assert done == {"job_id": job_id, "status": "done", "signals": 1, "errors": 0}
    _cold_start_with_the_audit_secret(combiner, secrets, monkeypatch)
    assert recorded == _inventory("batch_worker")


@pytest.mark.slow
def test_the_book_steps_calls_are_the_inventory(secrets: dict[str, str], aws: Aws, tmp_path: Path,
                                                goog_csv: Path, monkeypatch: pytest.MonkeyPatch,
                                                recorded: set[tuple[str, str]]) -> None:
    from tests.handlers.test_book_step_handler import TRAINED, head, publish, train

    registry = train(goog_csv, tmp_path)
    publish(aws, registry)
    monkeypatch.setenv("SIGNAL_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path}/store.db")
    monkeypatch.setenv("MODEL_BUNDLE_URI", "s3://signal-engine-artifacts-book/models/")
    monkeypatch.setenv("BUNDLE_CACHE_DIR", str(tmp_path / "cache"))
    ingest_prices(head(goog_csv, TRAINED + 2, tmp_path), SqlDatabaseOf(tmp_path).prices, symbol="GOOG")
    step = __import__("lambda_src.book_step.handler", fromlist=["handler"])
    step.storage.cache_clear()
    recorded.clear()
    step.handler(event("scheduled_event"), FakeLambdaContext(function_name="book-step"))
    step.storage.cache_clear()
    settings = bootstrap_module.Settings(database_secret=secrets["mysql"], document_secret=secrets["docdb"])
    assert bootstrap_module._database_url(settings, boto3.client).startswith("mysql+pymysql://")
    assert bootstrap_module._document_url(settings, boto3.client).startswith("mongodb://")
    # a bundle with the news slot: its text expert asked on the endpoint EXPERT_ENDPOINTS names for news
    monkeypatch.setenv("EXPERT_ENDPOINTS", '{"news": "book-step-calls-experts"}')
    step.text_expert.cache_clear()
    query = ExpertQuery("GOOG", "1d", [], documents=[{"id": "1", "published_at": "2024-01-05T14:30:00",
                                                      "title": "GOOG beats"}], decision_time="2024-01-05T21:00:00",
                        document_experts=("news",))
    step.text_expert().ask(query, ["news"], 5.0)
    step.text_expert.cache_clear()
    assert recorded == _inventory("book_step")


@pytest.mark.slow
def test_the_backtest_fanouts_calls_are_the_inventory(aws: Aws, goog_csv: Path, monkeypatch: pytest.MonkeyPatch,
                                                      recorded: set[tuple[str, str]]) -> None:
    """One symbol's run through the four handlers in turn, as the state machine calls them."""
    datasets, artifacts = "aws-calls-datasets", "aws-calls-artifacts"
    s3 = boto3.client("s3")
    for bucket in (datasets, artifacts):
        s3.create_bucket(Bucket=bucket)
    lines = goog_csv.read_text().splitlines(keepends=True)[:1001]
    s3.put_object(Bucket=datasets, Key="bars/1d/GOOG.csv", Body="".join(lines).encode())
    monkeypatch.setenv("DATASETS_STORE", f"s3://{datasets}/bars/1d")
    monkeypatch.setenv("BACKTESTS_STORE", f"s3://{artifacts}/backtests")
    fanout = importlib.import_module("lambda_src.backtest_fanout.handler")
    fanout.runs.cache_clear()
    fanout.datasets.cache_clear()
    context = FakeLambdaContext(function_name="backtest-fanout")
    recorded.clear()
    plan = fanout.plan({"run": "calls", "input": {"symbols": ["GOOG"], "config": yaml.safe_load(ONE_MODEL_BOOK)}},
                       context)
    assert plan["items_key"] == "backtests/calls/batches.json"
    (item,) = json.loads(fanout.runs().get("calls/batches.json"))
    assert fanout.batch(item, context)["symbols"] == ["GOOG"]
    assert fanout.check({"run": "calls", "batches": [{"batch": "1/1", "failed": False}]}, context)["batches"] == 1
    assert "metrics.json" in fanout.merge({"run": "calls"}, context)["files"]
    fanout.runs.cache_clear()
    fanout.datasets.cache_clear()
    assert recorded == _inventory("backtest_fanout")


def SqlDatabaseOf(folder: Path) -> Any:
    from signal_engine.adapters.sql.database import SqlDatabase

    return SqlDatabase.connect(f"sqlite:///{folder}/store.db")
