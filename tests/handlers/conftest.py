"""Handler fixtures: moto in server mode (S3 for raw payloads, DynamoDB for idempotency), a fake Lambda
context, recorded EventBridge events, and sources answering from recorded payloads."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from signal_engine.collectors.registry import SOURCES
from tests.fixtures.payloads import Reply, ScriptedTransport, fixture_json, scripted_client
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

BUCKET = "signal-engine-raw"
IDEMPOTENCY_TABLE = "signal-engine-collector-idempotency"
HANDLERS = ("yahoo_bars", "yahoo_statistics", "yahoo_fundamentals", "yahoo_options", "yahoo_news",
            "nasdaq_quotes", "nasdaq_bars", "nasdaq_earnings", "nasdaq_financials", "nasdaq_news")


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "signal-engine-collector"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:signal-engine-collector"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    log_group_name: str = "/aws/lambda/signal-engine-collector"
    log_stream_name: str = "2024/01/05/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@dataclass(frozen=True)
class Aws:
    """The moto endpoint and clients of the handler tests."""

    endpoint: str
    s3: Any
    dynamodb: Any


@pytest.fixture(scope="session")
def aws() -> Iterator[Aws]:
    environment = {**FAKE_AWS_ENVIRONMENT, "POWERTOOLS_TRACE_DISABLED": "true", "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
                   "SIGNAL_ENGINE_OBJECT_STORE": f"s3://{BUCKET}/collected", "SYMBOLS": "AAPL", "WINDOW_DAYS": "5"}
    with pytest.MonkeyPatch.context() as patch, moto_server() as endpoint:
        for name, value in {**environment, "AWS_ENDPOINT_URL": endpoint}.items():
            patch.setenv(name, value)
        yield Aws(endpoint, boto3.client("s3"), boto3.client("dynamodb"))


def empty_resources(aws: Aws) -> None:
    """An empty raw bucket and idempotency table. moto's state is the process's: another module's moto server
    started later in this process (it starts with a reset) may have removed them, so they are created again."""
    if BUCKET not in {bucket["Name"] for bucket in aws.s3.list_buckets()["Buckets"]}:
        aws.s3.create_bucket(Bucket=BUCKET)
    for item in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        aws.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    if IDEMPOTENCY_TABLE not in aws.dynamodb.list_tables()["TableNames"]:
        aws.dynamodb.create_table(TableName=IDEMPOTENCY_TABLE, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    for item in aws.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]:
        aws.dynamodb.delete_item(TableName=IDEMPOTENCY_TABLE, Key={"id": item["id"]})


@pytest.fixture(scope="session")
def handlers(aws: Aws) -> dict[str, ModuleType]:
    """The handler modules, imported once the environment points at moto (as in a cold start)."""
    return {name: importlib.import_module(f"lambda_src.collectors.{name}") for name in HANDLERS}


@pytest.fixture
def runtime(handlers: dict[str, ModuleType], aws: Aws, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh execution environment: its own SQLite database, an empty bucket and idempotency table."""
    module = importlib.import_module("lambda_src.collectors.runtime")
    monkeypatch.setenv("SIGNAL_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path}/collectors.db")
    module.storage.cache_clear()
    empty_resources(aws)
    yield module
    module.storage.cache_clear()


Serve = Callable[..., ScriptedTransport]


@pytest.fixture
def serve(runtime: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Serve:
    """Make the handlers' sources answer from recorded payloads: ``serve({"url part": [replies]})``."""

    def install(routes: dict[str, Sequence[Reply]], attempts: int = 3, sleeps: list[float] | None = None) \
            -> ScriptedTransport:
        client, transport = scripted_client(routes, attempts=attempts, sleeps=sleeps)
        monkeypatch.setattr(runtime, "source_for", lambda name: SOURCES[name](client))
        return transport

    return install


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()


def event(name: str, **detail: Any) -> dict[str, Any]:
    """A recorded EventBridge event (``scheduled_event``, ``scheduler_event``, ``collect_request_event``)."""
    document: dict[str, Any] = fixture_json(f"events/{name}.json")
    if detail:
        document["detail"] = {**document["detail"], **detail}
    return document


def raw_keys(aws: Aws) -> list[str]:
    return [item["Key"] for item in aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
