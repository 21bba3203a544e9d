"""Powertools idempotency on DynamoDB (moto server): a window is collected once; a failed run is not remembered."""

from __future__ import annotations

from types import ModuleType

import pytest

from signal_engine.collectors.errors import SourceUnavailable
from tests.fixtures.payloads import ok
from tests.handlers.conftest import IDEMPOTENCY_TABLE, Aws, FakeLambdaContext, Serve, event


def test_a_redelivered_event_returns_the_first_result_without_fetching(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, aws: Aws,
        runtime: ModuleType) -> None:
    transport = serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")]})
    first = handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    second = handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert second == first and len(transport.requests) == 1
    assert runtime.storage().prices.count_bars() == 4
    (record,) = aws.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert record["status"]["S"] == "COMPLETED"


def test_a_failed_run_is_not_remembered_so_the_retry_collects(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, runtime: ModuleType) -> None:
    serve({"chart/AAPL": [ok(b"", 503), ok(b"", 503), ok(b"", 503), ok("yahoo/chart_daily_AAPL.json")]})
    with pytest.raises(SourceUnavailable, match="HTTP 503 after 3 attempts"):  # the invocation fails; it is retried
        handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    retried = handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert retried["written"]["bars"]["inserted"] == 4


def test_the_next_tick_of_a_schedule_collects_again_without_duplicating_rows(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, runtime: ModuleType) -> None:
    transport = serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    later = handlers["yahoo_bars"].handler({**event("scheduled_event"), "time": "2024-01-05T22:30:00Z"}, context)
    assert len(transport.requests) == 2 and later["written"]["bars"]["unchanged"] == 4
    assert runtime.storage().prices.count_bars() == 4


def test_another_window_is_another_collection(handlers: dict[str, ModuleType], serve: Serve,
                                              context: FakeLambdaContext) -> None:
    transport = serve({"chart/": [ok("yahoo/chart_daily_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("collect_request_event"), context)
    handlers["yahoo_bars"].handler(event("collect_request_event", symbols=["AAPL"]), context)
    assert len(transport.requests) == 3


def test_the_same_window_for_another_kind_is_not_confused(handlers: dict[str, ModuleType], serve: Serve,
                                                         context: FakeLambdaContext) -> None:
    transport = serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")],
                       "/historical": [ok("nasdaq/historical_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    handlers["nasdaq_bars"].handler(event("scheduled_event"), context)
    assert len(transport.requests) == 2


def test_success_is_reported_in_the_metrics(handlers: dict[str, ModuleType], serve: Serve,
                                            context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    out = capsys.readouterr().out
    assert '"PayloadsKept":[1.0]' in out and '"RowsWritten":[4.0]' in out
