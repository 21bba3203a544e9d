"""The bars export handler, end to end: a scheduled EventBridge event in, the training input CSVs in S3 (moto) out."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from pydantic import ValidationError

from signal_engine.data.loader import load_prices
from signal_engine.storage.ingest import ingest_prices
from signal_engine.storage.records import Bar, Document, OptionQuote
from tests.handlers.conftest import Aws, FakeLambdaContext, event

DATASETS_BUCKET = "signal-engine-datasets"


@pytest.fixture
def exporter(runtime: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The handler module with an empty datasets bucket behind SIGNAL_ENGINE_DATASETS_STORE."""
    if DATASETS_BUCKET not in [b["Name"] for b in aws.s3.list_buckets()["Buckets"]]:
        aws.s3.create_bucket(Bucket=DATASETS_BUCKET)
    for item in aws.s3.list_objects_v2(Bucket=DATASETS_BUCKET).get("Contents", []):
        aws.s3.delete_object(Bucket=DATASETS_BUCKET, Key=item["Key"])
    monkeypatch.setenv("SIGNAL_ENGINE_DATASETS_STORE", f"s3://{DATASETS_BUCKET}")
    monkeypatch.setenv("SYMBOLS", "AAPL,MSFT")
    module = importlib.import_module("lambda_src.collectors.export_bars")
    module.datasets.cache_clear()
    yield module
    module.datasets.cache_clear()


def _keys(aws: Aws) -> list[str]:
    return [item["Key"] for item in aws.s3.list_objects_v2(Bucket=DATASETS_BUCKET).get("Contents", [])]


def test_a_scheduled_event_writes_the_training_input_and_reports_the_symbol_without_bars(
        exporter: ModuleType, runtime: ModuleType, aws: Aws, context: FakeLambdaContext, goog_csv: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_prices(goog_csv, runtime.storage().prices, symbol="AAPL")
    response = exporter.handler(event("scheduled_event"), context)
    assert [(s["symbol"], s["key"], s["bars"]) for s in response["exported"]] == [("AAPL", "bars/1d/AAPL.csv", 2148)]
    assert list(response["missing"]) == ["MSFT"]
    assert _keys(aws) == ["bars/1d/AAPL.csv"]
    local = tmp_path / "AAPL.csv"
    local.write_bytes(aws.s3.get_object(Bucket=DATASETS_BUCKET, Key="bars/1d/AAPL.csv")["Body"].read())
    pd.testing.assert_frame_equal(load_prices(local).bars, runtime.storage().prices.read_bars("AAPL", "1d").bars,
                                  check_names=False, check_exact=False, rtol=1e-12)
    logged = capsys.readouterr().out
    assert '"SymbolsMissing":[1.0]' in logged.replace(" ", "") or '"SymbolsMissing":1' in logged.replace(" ", "")


def test_an_event_may_name_its_symbols_and_timeframe(exporter: ModuleType, runtime: ModuleType, aws: Aws,
                                                     context: FakeLambdaContext, eurusd_csv: Path) -> None:
    ingest_prices(eurusd_csv, runtime.storage().prices)
    response = exporter.handler(event("scheduled_event", symbols=["EURUSD"], timeframe="1h"), context)
    assert (response["timeframe"], response["missing"], _keys(aws)) == ("1h", {}, ["bars/1h/EURUSD.csv"])


def test_nothing_to_export_raises_and_keeps_the_previous_files(exporter: ModuleType, aws: Aws,
                                                                 context: FakeLambdaContext) -> None:
    aws.s3.put_object(Bucket=DATASETS_BUCKET, Key="bars/1d/AAPL.csv", Body=b"previous")
    with pytest.raises(exporter.NothingExported, match="AAPL, MSFT"):
        exporter.handler(event("scheduled_event"), context)
    assert aws.s3.get_object(Bucket=DATASETS_BUCKET, Key="bars/1d/AAPL.csv")["Body"].read() == b"previous"


def test_files_with_longer_history_are_kept_without_failing(exporter: ModuleType, runtime: ModuleType, aws: Aws,
                                                            context: FakeLambdaContext, goog_csv: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    aws.s3.put_object(Bucket=DATASETS_BUCKET, Key="bars/1d/AAPL.csv", Body=goog_csv.read_bytes())
    ingest_prices(goog_csv, runtime.storage().prices, symbol="AAPL", timeframe="1d")
    runtime.storage().prices.write_bars(
        [Bar("MSFT", "1d", datetime(2013, 3, 1), 30.0, 31.0, 29.0, 30.5, 1e6, None, "test")])
    aws.s3.put_object(Bucket=DATASETS_BUCKET, Key="bars/1d/MSFT.csv", Body=goog_csv.read_bytes())
    response = exporter.handler(event("scheduled_event"), context)
    assert (response["exported"][0]["symbol"], list(response["kept"]), response["missing"]) == ("AAPL", ["MSFT"], {})
    assert '"SymbolsKept":[1.0]' in capsys.readouterr().out


def test_an_unknown_detail_field_is_refused(exporter: ModuleType, context: FakeLambdaContext) -> None:
    with pytest.raises(ValidationError, match="window"):
        exporter.handler(event("scheduled_event", window=5), context)


def test_the_export_derives_the_implied_volatility_of_the_stored_chains_into_the_file(
        exporter: ModuleType, runtime: ModuleType, aws: Aws, context: FakeLambdaContext, tmp_path: Path) -> None:
    stores = runtime.storage()
    stores.prices.write_bars([Bar("AAPL", "1d", datetime(2024, 1, d), 181.0, 182.0, 180.0, c, 1e6, None, "test")
                              for d, c in ((4, 181.0), (5, 181.18))])
    # Friday 5 January 2024 an hour before the close (21:00 UTC): one expiry in 30 days, flat 20% at strikes
    # 180 and 185 around the spot, so the bar's 30-day at-the-money volatility is 20.0 (and Thursday has none).
    expiry = datetime(2024, 2, 4).date()
    stores.market.write_option_quotes([
        OptionQuote(f"AAPL240204{side[0].upper()}{strike:g}", "AAPL", side, expiry, strike,  # type: ignore[arg-type]
                    datetime(2024, 1, 5, 20, 0), None, 1.0, 1.1, 0.20, None, None, "test")
        for side in ("call", "put") for strike in (180.0, 185.0)])
    response = exporter.handler(event("scheduled_event", symbols=["AAPL"]), context)
    assert [(s["symbol"], s["implied_vol"]) for s in response["exported"]] == [("AAPL", 1)]
    local = tmp_path / "AAPL.csv"
    local.write_bytes(aws.s3.get_object(Bucket=DATASETS_BUCKET, Key="bars/1d/AAPL.csv")["Body"].read())
    implied = load_prices(local).bars["implied_vol"]
    assert implied.isna().tolist() == [True, False] and implied.iloc[1] == pytest.approx(20.0, rel=1e-12)
    assert [row.implied_vol for row in stores.market.read_implied_volatility("AAPL", "1d")] == [
        pytest.approx(20.0, rel=1e-12)]


def test_with_export_news_each_symbols_stored_news_goes_beside_the_bars_and_a_symbol_without_keeps_its_file(
        exporter: ModuleType, runtime: ModuleType, aws: Aws, context: FakeLambdaContext, goog_csv: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_prices(goog_csv, runtime.storage().prices, symbol="AAPL")
    runtime.storage().documents.write_documents([
        Document(Document.stable_id("test", "news", "1"), "news", "test", ("AAPL",), datetime(2024, 1, 5, 14, 30),
                 "Apple shares rally", url="https://news.test/1", publisher="Reuters")])
    aws.s3.put_object(Bucket=DATASETS_BUCKET, Key="news/MSFT.jsonl", Body=b"previous")
    monkeypatch.setenv("EXPORT_NEWS", "true")
    response = exporter.handler(event("scheduled_event"), context)
    assert [(n["symbol"], n["key"], n["documents"]) for n in response["news"]["exported"]] == [
        ("AAPL", "news/AAPL.jsonl", 1)]
    assert list(response["news"]["missing"]) == ["MSFT"]
    assert _keys(aws) == ["bars/1d/AAPL.csv", "news/AAPL.jsonl", "news/MSFT.jsonl"]
    body = aws.s3.get_object(Bucket=DATASETS_BUCKET, Key="news/AAPL.jsonl")["Body"].read()
    assert json.loads(body) == {"id": Document.stable_id("test", "news", "1"), "kind": "news", "source": "test",
                                "published_at": "2024-01-05T14:30:00Z", "symbols": ["AAPL"],
                                "title": "Apple shares rally"}
    assert aws.s3.get_object(Bucket=DATASETS_BUCKET, Key="news/MSFT.jsonl")["Body"].read() == b"previous"
    assert '"NewsMissing":[1.0]' in capsys.readouterr().out.replace(" ", "")


def test_without_export_news_only_the_bars_are_written(exporter: ModuleType, runtime: ModuleType, aws: Aws,
                                                       context: FakeLambdaContext, goog_csv: Path) -> None:
    ingest_prices(goog_csv, runtime.storage().prices, symbol="AAPL")
    runtime.storage().documents.write_documents([
        Document(Document.stable_id("test", "news", "1"), "news", "test", ("AAPL",), datetime(2024, 1, 5, 14, 30),
                 "Apple shares rally")])
    response = exporter.handler(event("scheduled_event"), context)
    assert "news" not in response and _keys(aws) == ["bars/1d/AAPL.csv"]
