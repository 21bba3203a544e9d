"""What a collector handler does with bad events and bad answers: a clear error, the raw payload kept."""

from __future__ import annotations

from types import ModuleType

import pytest
from pydantic import ValidationError

from signal_engine.collectors.errors import SourceUnavailable
from signal_engine.collectors.http import TransportError
from signal_engine.collectors.service import CollectionFailed
from tests.fixtures.payloads import as_body, fixture_json, ok
from tests.handlers.conftest import Aws, FakeLambdaContext, Serve, event, raw_keys


def test_a_malformed_payload_fails_naming_the_field_and_is_kept(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, aws: Aws,
        runtime: ModuleType) -> None:
    broken = fixture_json("nasdaq/historical_AAPL.json")
    del broken["data"]["tradesTable"]["rows"][2]["open"]
    serve({"/historical": [ok(as_body(broken))]})
    with pytest.raises(CollectionFailed, match=r"field 'data.tradesTable.rows\[2\].open': missing"):
        handlers["nasdaq_bars"].handler(event("scheduled_event"), context)
    assert len(raw_keys(aws)) == 1 and runtime.storage().prices.count_bars() == 0


def test_an_empty_body_fails_naming_the_root(handlers: dict[str, ModuleType], serve: Serve,
                                             context: FakeLambdaContext, aws: Aws) -> None:
    serve({"chart/AAPL": [ok(b"")]})
    with pytest.raises(CollectionFailed, match=r"field '\$': the response body is empty"):
        handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert len(raw_keys(aws)) == 1


def test_a_4xx_answer_fails_without_retrying(handlers: dict[str, ModuleType], serve: Serve,
                                             context: FakeLambdaContext) -> None:
    transport = serve({"chart/AAPL": [ok("yahoo/chart_not_found.json", 404)]})
    with pytest.raises(CollectionFailed, match=r"answered HTTP 404: .*No data found"):
        handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert len(transport.requests) == 1


def test_persistent_5xx_answers_fail_after_the_retries(handlers: dict[str, ModuleType], serve: Serve,
                                                       context: FakeLambdaContext) -> None:
    sleeps: list[float] = []
    serve({"/quote/AAPL/info": [ok(b"<html>Bad gateway</html>", 502)]}, attempts=4, sleeps=sleeps)
    with pytest.raises(SourceUnavailable, match=r"cannot reach api.nasdaq.com: HTTP 502 after 4 attempts"):
        handlers["nasdaq_quotes"].handler(event("scheduled_event"), context)
    assert len(sleeps) == 3


def test_a_429_is_waited_out_and_the_collection_completes(handlers: dict[str, ModuleType], serve: Serve,
                                                          context: FakeLambdaContext) -> None:
    sleeps: list[float] = []
    serve({"articlebysymbol": [ok(b"", 429, {"retry-after": "0.5"}), ok("nasdaq/news_AAPL.json")]}, sleeps=sleeps)
    response = handlers["nasdaq_news"].handler(event("scheduled_event"), context)
    assert (sleeps, response["written"]["documents"]["inserted"]) == ([0.5], 2)


def test_timeouts_fail_after_the_retries(handlers: dict[str, ModuleType], serve: Serve,
                                         context: FakeLambdaContext) -> None:
    serve({"finance/search": [TransportError("timeout", "read timed out")]})
    with pytest.raises(SourceUnavailable, match=r"query2.finance.yahoo.com: timed out after 2 s after 3 attempts"):
        handlers["yahoo_news"].handler(event("scheduled_event"), context)


def test_a_failure_is_counted_in_the_metrics(handlers: dict[str, ModuleType], serve: Serve,
                                             context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]) -> None:
    serve({"chart/AAPL": [ok(b"")]})
    with pytest.raises(CollectionFailed):
        handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert '"CollectionFailures":[1.0]' in capsys.readouterr().out


def test_an_event_with_an_unknown_detail_field_is_rejected(handlers: dict[str, ModuleType], serve: Serve,
                                                           context: FakeLambdaContext) -> None:
    serve({})
    with pytest.raises(ValidationError, match=r"detail\.symbol"):
        handlers["yahoo_bars"].handler(event("collect_request_event", symbol="AAPL"), context)


def test_an_event_whose_window_ends_before_it_starts_is_rejected(handlers: dict[str, ModuleType], serve: Serve,
                                                                 context: FakeLambdaContext) -> None:
    serve({})
    with pytest.raises(ValidationError, match="end 2024-01-01 is before start 2024-01-02"):
        handlers["yahoo_bars"].handler(event("collect_request_event", end="2024-01-01"), context)


def test_no_symbols_anywhere_is_an_error(handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    serve({})
    monkeypatch.delenv("SYMBOLS")
    with pytest.raises(ValueError, match="no symbols to collect"):
        handlers["yahoo_bars"].handler(event("scheduled_event"), context)
