"""Yahoo Finance collector handlers, end to end on recorded payloads: event in, rows and raw payloads out."""

from __future__ import annotations

from types import ModuleType

from tests.fixtures.payloads import ok
from tests.handlers.conftest import Aws, FakeLambdaContext, Serve, event, raw_keys

CRUMB = {"fc.yahoo.com": [ok(b"", 404)], "getcrumb": [ok(b"crumb123")]}


def test_a_scheduled_event_collects_the_recent_window_of_the_configured_symbols(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, aws: Aws) -> None:
    transport = serve({"chart/AAPL": [ok("yahoo/chart_daily_AAPL.json")]})
    response = handlers["yahoo_bars"].handler(event("scheduled_event"), context)
    assert (response["symbols"], response["start"], response["end"]) == (["AAPL"], "2023-12-31", "2024-01-05")
    assert response["written"]["bars"]["inserted"] == 4
    assert transport.requests[0].params["period1"] == "1703980800"
    assert raw_keys(aws) == [f"collected/{key}" for key in response["raw_keys"]]


def test_a_collect_request_names_its_symbols_window_and_timeframe(
        handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext, runtime: ModuleType) -> None:
    serve({"chart/": [ok("yahoo/chart_60m_AAPL.json")]})
    response = handlers["yahoo_bars"].handler(event("collect_request_event", timeframe="1h"), context)
    assert (response["symbols"], response["payloads"], response["timeframe"]) == (["AAPL", "MSFT"], 2, "1h")
    assert runtime.storage().prices.count_bars("MSFT") == 3


def test_statistics_are_collected_with_the_crumb(handlers: dict[str, ModuleType], serve: Serve,
                                                 context: FakeLambdaContext, runtime: ModuleType) -> None:
    transport = serve({**CRUMB, "quoteSummary/AAPL": [ok("yahoo/quote_summary_AAPL.json")]})
    response = handlers["yahoo_statistics"].handler(event("scheduled_event"), context)
    assert response["written"]["statistics"]["inserted"] == len(runtime.storage().market.read_statistics("AAPL"))
    assert transport.requests[-1].params["crumb"] == "crumb123"


def test_fundamentals_are_collected(handlers: dict[str, ModuleType], serve: Serve, context: FakeLambdaContext) -> None:
    serve({"timeseries/AAPL": [ok("yahoo/timeseries_AAPL.json")]})
    response = handlers["yahoo_fundamentals"].handler(event("scheduled_event"), context)
    assert response["written"]["fundamentals"]["inserted"] == 6


def test_option_chains_are_collected_per_expiration(handlers: dict[str, ModuleType], serve: Serve,
                                                    context: FakeLambdaContext) -> None:
    serve({**CRUMB, "options/AAPL": [ok("yahoo/options_AAPL.json")]})
    response = handlers["yahoo_options"].handler(event("scheduled_event"), context)
    assert response["payloads"] == 3
    assert response["written"]["options"] == {"inserted": 3, "updated": 0, "unchanged": 6, "disagreements": 0}


def test_news_is_collected_into_the_document_store(handlers: dict[str, ModuleType], serve: Serve,
                                                   context: FakeLambdaContext, runtime: ModuleType) -> None:
    serve({"finance/search": [ok("yahoo/search_news_AAPL.json")]})
    handlers["yahoo_news"].handler(event("scheduled_event"), context)
    # the Bloomberg headline has no relatedTickers: kept, but not tagged AAPL only because AAPL was searched
    assert [d.publisher for d in runtime.storage().documents.read_documents("news", "AAPL")] == ["Reuters"]
