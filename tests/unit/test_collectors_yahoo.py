"""Yahoo Finance payloads (recorded shapes) parse into typed records; a broken field is named."""

from __future__ import annotations

import copy
from datetime import date, datetime
from typing import Any

import pytest

from signal_engine.collectors import yahoo
from signal_engine.collectors.errors import SourceFormatError
from signal_engine.collectors.sources import Window
from tests.fixtures.payloads import FETCHED_AT, as_body, fixture_json, ok, raw, scripted_client

CHART = "yahoo/chart_daily_AAPL.json"


def chart_with(change: Any) -> bytes:
    document = copy.deepcopy(fixture_json(CHART))
    change(document["chart"]["result"][0])
    return as_body(document)


def test_daily_bars_are_keyed_by_session_date_with_adjusted_close() -> None:
    bars = yahoo.parse(raw("yahoo", "bars", CHART)).bars
    assert [b.timestamp for b in bars] == [datetime(2024, 1, d) for d in (2, 3, 4, 5)]
    first = bars[0]
    assert (first.timeframe, first.open, first.close, first.volume) == ("1d", 187.14999389648438, 185.63999938964844,
                                                                        82488700.0)
    assert first.adj_close == pytest.approx(184.735, abs=1e-3)
    assert first.source == "yahoo"


def test_intraday_bars_are_utc_open_times_and_all_null_rows_are_skipped() -> None:
    bars = yahoo.parse(raw("yahoo", "bars", "yahoo/chart_60m_AAPL.json")).bars
    assert [b.timestamp for b in bars] == [datetime(2024, 1, 5, 14, 30), datetime(2024, 1, 5, 15, 30),
                                           datetime(2024, 1, 5, 17, 30)]
    assert {b.timeframe for b in bars} == {"1h"} and bars[0].adj_close is None


def test_a_window_without_bars_parses_to_nothing() -> None:
    assert yahoo.parse(raw("yahoo", "bars", "yahoo/chart_empty_window_AAPL.json")).bars == []


def test_a_reported_error_names_the_error_field() -> None:
    with pytest.raises(SourceFormatError, match=r"field 'chart.error': .*No data found"):
        yahoo.parse(raw("yahoo", "bars", "yahoo/chart_not_found.json"))


def test_a_price_that_is_not_a_number_names_its_field_and_index() -> None:
    def corrupt(result: dict[str, Any]) -> None:
        result["indicators"]["quote"][0]["close"][2] = "181.91"

    with pytest.raises(SourceFormatError, match=r"yahoo bars AAPL: field 'chart.result\[0\].indicators.quote\[0\]"
                                                r".close\[2\]': expected a number, got text '181.91'"):
        yahoo.parse(raw("yahoo", "bars", chart_with(corrupt)))


def test_a_missing_field_is_named() -> None:
    with pytest.raises(SourceFormatError, match=r"field 'chart.result\[0\].meta.exchangeTimezoneName': missing"):
        yahoo.parse(raw("yahoo", "bars", chart_with(lambda r: r["meta"].pop("exchangeTimezoneName"))))


def test_a_price_column_of_the_wrong_length_is_named() -> None:
    with pytest.raises(SourceFormatError, match=r"quote\[0\].low': has 3 values for 4 timestamps"):
        yahoo.parse(raw("yahoo", "bars", chart_with(lambda r: r["indicators"]["quote"][0]["low"].pop())))


def test_a_partly_null_bar_is_an_error_not_a_silent_gap() -> None:
    def blank_high(result: dict[str, Any]) -> None:
        result["indicators"]["quote"][0]["high"][1] = None

    with pytest.raises(SourceFormatError, match=r"high\[1\]': expected a number, got null"):
        yahoo.parse(raw("yahoo", "bars", chart_with(blank_high)))


def test_high_below_low_is_rejected() -> None:
    def invert(result: dict[str, Any]) -> None:
        result["indicators"]["quote"][0]["high"][0] = 100.0

    with pytest.raises(SourceFormatError, match=r"high\[0\]': high 100 is below low"):
        yahoo.parse(raw("yahoo", "bars", chart_with(invert)))


@pytest.mark.parametrize(("body", "problem"), [(b"", "the response body is empty"),
                                               (b"<html>Will be right back</html>", "the response is not JSON")])
def test_empty_and_non_json_bodies_name_the_root(body: bytes, problem: str) -> None:
    with pytest.raises(SourceFormatError, match=rf"field '\$': {problem}"):
        yahoo.parse(raw("yahoo", "bars", body))


def test_quote_statistics_are_numeric_values_as_of_the_market_time() -> None:
    rows = {s.name: s for s in yahoo.parse(raw("yahoo", "statistics", "yahoo/quote_summary_AAPL.json")).statistics}
    assert rows["trailingPE"].value == pytest.approx(29.510162)
    assert rows["marketCap"].value == 2817498775552
    assert rows["totalRevenue"].as_of == datetime(2024, 1, 5, 21, 0, 1)
    assert not {"maxAge", "currency", "yield", "recommendationKey", "lastSplitFactor"} & rows.keys()


def test_quote_statistics_without_the_price_module_are_as_of_the_fetch() -> None:
    document = fixture_json("yahoo/quote_summary_AAPL.json")
    del document["quoteSummary"]["result"][0]["price"]
    rows = yahoo.parse(raw("yahoo", "statistics", as_body(document))).statistics
    assert rows and {row.as_of for row in rows} == {FETCHED_AT}


def test_fundamentals_come_per_item_and_period_skipping_gaps() -> None:
    rows = yahoo.parse(raw("yahoo", "fundamentals", "yahoo/timeseries_AAPL.json")).fundamentals
    keys = {(r.item, r.period_type, r.period_end): r.value for r in rows}
    assert keys[("TotalRevenue", "annual", date(2023, 9, 30))] == 383285000000
    assert keys[("NetIncome", "quarterly", date(2023, 6, 30))] == 19881000000
    assert keys[("DilutedEPS", "annual", date(2023, 9, 30))] == 6.13
    assert len(rows) == 6


def test_a_fundamental_with_a_bad_date_names_it() -> None:
    document = fixture_json("yahoo/timeseries_AAPL.json")
    document["timeseries"]["result"][0]["annualTotalRevenue"][0]["asOfDate"] = "30/09/2021"
    with pytest.raises(SourceFormatError, match=r"annualTotalRevenue\[0\].asOfDate': expected a date YYYY-MM-DD"):
        yahoo.parse(raw("yahoo", "fundamentals", as_body(document)))


def test_option_quotes_carry_side_expiration_and_implied_volatility() -> None:
    rows = yahoo.parse(raw("yahoo", "options", "yahoo/options_AAPL.json")).options
    assert [(r.contract, r.side) for r in rows] == [("AAPL240112C00175000", "call"), ("AAPL240112C00185000", "call"),
                                                    ("AAPL240112P00180000", "put")]
    put = rows[2]
    assert (put.expiration, put.strike, put.implied_volatility, put.volume) == (date(2024, 1, 12), 180.0, 0.1936, None)
    assert put.as_of == datetime(2024, 1, 5, 21, 0, 1)


def test_news_has_stable_ids_publication_times_and_related_symbols() -> None:
    documents = yahoo.parse(raw("yahoo", "news", "yahoo/search_news_AAPL.json")).documents
    again = yahoo.parse(raw("yahoo", "news", "yahoo/search_news_AAPL.json", fetched_at=datetime(2024, 2, 1))).documents
    assert [d.id for d in documents] == [d.id for d in again]
    assert documents[0].published_at == datetime(2024, 1, 2, 15, 0)
    assert documents[0].symbols == ("AAPL", "MSFT")
    assert documents[1].symbols == () and documents[1].body["query"] == "AAPL"  # no relatedTickers


def test_news_without_a_publication_time_names_the_field() -> None:
    document = fixture_json("yahoo/search_news_AAPL.json")
    del document["news"][1]["providerPublishTime"]
    with pytest.raises(SourceFormatError, match=r"field 'news\[1\].providerPublishTime': missing"):
        yahoo.parse(raw("yahoo", "news", as_body(document)))


def test_bar_requests_carry_the_window_and_interval() -> None:
    client, transport = scripted_client({"/v8/finance/chart/AAPL": [ok(CHART)]})
    (payload,) = yahoo.YahooSource(client).fetch("bars", "AAPL", Window(date(2024, 1, 2), date(2024, 1, 5), "1h"))
    assert payload.params["interval"] == "60m"
    assert (payload.params["period1"], payload.params["period2"]) == ("1704153600", "1704499200")
    assert payload.body == transport.routes["/v8/finance/chart/AAPL"][0].body  # type: ignore[union-attr]


def test_option_chains_follow_the_listed_expirations_with_one_crumb() -> None:
    client, transport = scripted_client({"fc.yahoo.com": [ok(b"", 404)], "getcrumb": [ok(b"abcCrumb")],
                                         "/v7/finance/options/AAPL": [ok("yahoo/options_AAPL.json")]})
    payloads = list(yahoo.YahooSource(client, max_expirations=3).fetch("options", "AAPL",
                                                                        Window(date(2024, 1, 5), date(2024, 1, 5))))
    assert [p.params.get("date") for p in payloads] == [None, "1705622400", "1706227200"]
    assert sum("getcrumb" in r.url for r in transport.requests) == 1
    assert all("crumb" not in p.params for p in payloads)


def test_an_html_crumb_is_a_format_error() -> None:
    client, _ = scripted_client({"fc.yahoo.com": [ok(b"", 404)], "getcrumb": [ok(b"<html>consent</html>")]})
    with pytest.raises(SourceFormatError, match="getcrumb"):
        list(yahoo.YahooSource(client).fetch("statistics", "AAPL", Window(date(2024, 1, 5), date(2024, 1, 5))))


def test_thirty_minute_bars_are_fetched_as_fifteen_and_resampled() -> None:
    """Yahoo answers interval=30m with 60-minute bars (yfinance works around it the same way)."""
    client, transport = scripted_client({"/v8/finance/chart": [ok(as_body(_fifteen_minute_chart()))]})
    window = Window(date(2024, 1, 5), date(2024, 1, 5), "30m")
    payload = next(yahoo.YahooSource(client).fetch("bars", "AAPL", window))
    assert transport.requests[0].params["interval"] == "15m" and payload.params["timeframe"] == "30m"
    bars = yahoo.parse(payload).bars
    assert [(b.timeframe, b.timestamp.strftime("%H:%M")) for b in bars] == [("30m", "14:30"), ("30m", "15:00")]
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close, bars[0].volume) == (10.0, 12.0, 9.0, 11.5, 300)


def _fifteen_minute_chart() -> dict[str, object]:
    document = fixture_json("yahoo/chart_60m_AAPL.json")
    result = document["chart"]["result"][0]
    result["meta"]["dataGranularity"] = "15m"
    start = 1704465000  # 2024-01-05 14:30 UTC, the session open
    result["timestamp"] = [start + 900 * i for i in range(4)]
    result["indicators"] = {"quote": [{"open": [10.0, 11.0, 12.0, 12.5], "high": [11.0, 12.0, 13.0, 13.5],
                                       "low": [9.0, 10.5, 11.5, 12.0], "close": [11.0, 11.5, 12.5, 13.0],
                                       "volume": [100, 200, 300, 400]}]}
    return document
