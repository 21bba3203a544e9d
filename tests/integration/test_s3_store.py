"""The S3 object store against moto in server mode (real HTTP, real boto3 client)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest

from signal_engine.adapters.s3 import S3ObjectStore
from signal_engine.bootstrap import Settings, bootstrap, object_store
from signal_engine.collectors import yahoo
from signal_engine.collectors.raw import RawPayload
from signal_engine.collectors.service import CollectionFailed, CollectRequest, collect
from tests.fixtures.payloads import as_body, fixture_json, ok, scripted_client
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

BUCKET = "signal-engine-raw-test"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch, moto_server() as url:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL", url)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture
def s3(endpoint: str) -> Any:
    client = boto3.client("s3")
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    return client


def test_objects_round_trip_under_the_prefix(s3: Any) -> None:
    store = S3ObjectStore(s3, BUCKET, "payloads/")
    store.put("raw/yahoo/bars/AAPL/a.json", b'{"a": 1}', "application/json")
    head = s3.head_object(Bucket=BUCKET, Key="payloads/raw/yahoo/bars/AAPL/a.json")
    assert store.get("raw/yahoo/bars/AAPL/a.json") == b'{"a": 1}'
    assert head["ContentType"] == "application/json"


def test_keys_are_listed_by_prefix_without_the_store_prefix(s3: Any) -> None:
    store = S3ObjectStore(s3, BUCKET, "payloads")
    for key in ("raw/yahoo/bars/AAPL/1.json", "raw/yahoo/bars/MSFT/1.json", "raw/nasdaq/news/AAPL/1.json"):
        store.put(key, b"{}")
    assert list(store.keys("raw/yahoo/")) == ["raw/yahoo/bars/AAPL/1.json", "raw/yahoo/bars/MSFT/1.json"]


def test_a_missing_key_is_a_key_error(s3: Any) -> None:
    with pytest.raises(KeyError, match=r"raw/none\.json"):
        S3ObjectStore(s3, BUCKET).get("raw/none.json")


def test_bootstrap_builds_an_s3_store_from_a_url(s3: Any) -> None:
    store = object_store(f"s3://{BUCKET}/datasets")
    store.put("x.csv", b"a,b\n")
    assert s3.get_object(Bucket=BUCKET, Key="datasets/x.csv")["Body"].read() == b"a,b\n"


def test_a_payload_is_in_s3_before_its_parse_fails(s3: Any, tmp_path: Path) -> None:
    storage = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/s.db", object_store=f"s3://{BUCKET}/lake"))
    broken = fixture_json("yahoo/chart_daily_AAPL.json")
    del broken["chart"]["result"][0]["indicators"]["quote"]
    client, _ = scripted_client({"chart/AAPL": [ok(as_body(broken))]})
    with pytest.raises(CollectionFailed, match=r"field 'chart.result\[0\].indicators.quote': missing"):
        collect(CollectRequest("yahoo", "bars", ("AAPL",), date(2024, 1, 2), date(2024, 1, 5)),
                yahoo.YahooSource(client), storage)
    (key,) = s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/raw/yahoo/bars/AAPL/")["Contents"]
    kept = RawPayload.decode(s3.get_object(Bucket=BUCKET, Key=key["Key"])["Body"].read(), key["Key"])
    assert kept.body == as_body(broken)
