"""Nasdaq collector handlers, end to end on recorded payloads, including EventBridge Scheduler's event shape."""

from __future__ import annotations

from datetime import datetime
from types import ModuleType

import pandas as pd
import pytest

from tests.fixtures.payloads import as_body, fixture_json, ok
from tests.handlers.conftest import FakeLambdaContext, Serve, event


def test_quotes_from_an_eventbridge_scheduler_event(handlers: dict[str, ModuleType], serve: Serve,
                                                    context: FakeLambdaContext, runtime: ModuleType) -> None:
    serve({"/quote/AAPL/info": [ok("nasdaq/quote_info_AAPL.json")]})
    response = handlers["nasdaq_quotes"].handler(event("scheduler_event"), context)
    assert response["written"]["statistics"]["inserted"] == 4
    assert runtime.storage().market.read_statistics("AAPL")[0].as_of == datetime(2024, 1, 5, 21, 0)


def test_daily_bars(handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext) -> None:
    transport = serve({"/historical": [ok("nasdaq/historical_AAPL.json")]})
    response = handlers["nasdaq_bars"].handler(event("scheduled_event"), context)
    assert response["written"]["bars"]["inserted"] == 4
    assert (transport.requests[0].params["fromdate"], transport.requests[0].params["todate"]) == ("2023-12-31",
                                                                                                  "2024-01-05")


def test_earnings_become_reports(handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext,
                                 runtime: ModuleType) -> None:
    serve({"/earnings-surprise": [ok("nasdaq/earnings_surprise_AAPL.json")]})
    handlers["nasdaq_earnings"].handler(event("scheduled_event"), context)
    assert len(runtime.storage().documents.read_documents("reports", "AAPL")) == 3


def test_financials_of_both_frequencies(handlers: dict[str, ModuleType], serve: Serve,
                                        context: FakeLambdaContext) -> None:
    serve({"/financials": [ok("nasdaq/financials_annual_AAPL.json")]})
    response = handlers["nasdaq_financials"].handler(event("scheduled_event"), context)
    assert response["payloads"] == 2
    assert response["written"]["fundamentals"]["inserted"] == 2 * 20  # the same recorded table for annual and quarterly


def test_news(handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext) -> None:
    serve({"articlebysymbol": [ok("nasdaq/news_AAPL.json")]})
    response = handlers["nasdaq_news"].handler(event("scheduled_event"), context)
    assert response["written"]["documents"]["inserted"] == 2


def test_nasdaq_bars_after_yahoos_leave_what_the_models_read_and_count_disagreements(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, runtime: ModuleType,
        capsys: pytest.CaptureFixture[str]) -> None:
    serve({"/v8/finance/chart": [ok("yahoo/chart_daily_AAPL.json")]})
    handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    before = runtime.storage().prices.read_bars("AAPL", "1d").bars
    document = fixture_json("nasdaq/historical_AAPL.json")
    document["data"]["tradesTable"]["rows"][0]["close"] = "$190.00"  # 2024-01-05: Nasdaq's 181.18, off by 5 %
    serve({"/historical": [ok(as_body(document))]})
    capsys.readouterr()
    response = handlers["nasdaq_bars"].handler(event("scheduled_event"), context)
    assert response["written"]["bars"]["disagreements"] == 1
    assert '"BarDisagreements":[1.0]' in capsys.readouterr().out
    pd.testing.assert_frame_equal(before, runtime.storage().prices.read_bars("AAPL", "1d").bars)
    assert runtime.storage().prices.read_bars("AAPL", "1d", source="nasdaq").bars["close"].iloc[-1] == 190.0
