"""Nasdaq payloads (recorded shapes) parse into typed records; display numbers and times are handled strictly."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from signal_engine.collectors import nasdaq
from signal_engine.collectors.errors import SourceFormatError
from signal_engine.collectors.fields import Field
from signal_engine.collectors.sources import Window
from tests.fixtures.payloads import as_body, fixture_json, ok, raw, scripted_client


def test_a_quote_gives_price_change_and_volume_as_of_the_last_trade() -> None:
    rows = {s.name: s for s in nasdaq.parse(raw("nasdaq", "quotes", "nasdaq/quote_info_AAPL.json")).statistics}
    assert rows["last_sale_price"].value == 181.18
    assert rows["percentage_change"].value == -0.40
    assert rows["volume"].value == 62379661
    assert rows["net_change"].as_of == datetime(2024, 1, 5, 21, 0)


def test_a_quote_dated_without_a_time_is_as_of_the_session_close() -> None:
    document = fixture_json("nasdaq/quote_info_AAPL.json")
    document["data"]["primaryData"]["lastTradeTimestamp"] = "DATA AS OF Jul 5, 2024"
    rows = nasdaq.parse(raw("nasdaq", "quotes", as_body(document))).statistics
    assert rows[0].as_of == datetime(2024, 7, 5, 20, 0)


def test_historical_bars_are_sorted_oldest_first_and_unadjusted() -> None:
    bars = nasdaq.parse(raw("nasdaq", "bars", "nasdaq/historical_AAPL.json")).bars
    assert [b.timestamp.day for b in bars] == [2, 3, 4, 5]
    assert (bars[0].open, bars[0].low, bars[0].volume, bars[0].adj_close) == (187.15, 183.885, 82488670.0, None)


def test_a_malformed_price_names_the_row_and_column() -> None:
    document = fixture_json("nasdaq/historical_AAPL.json")
    document["data"]["tradesTable"]["rows"][1]["close"] = "$18x.91"
    with pytest.raises(SourceFormatError, match=r"field 'data.tradesTable.rows\[1\].close': expected a number"):
        nasdaq.parse(raw("nasdaq", "bars", as_body(document)))


def test_an_error_status_names_rcode_and_the_message() -> None:
    with pytest.raises(SourceFormatError, match=r"field 'status.rCode': the source answered rCode 400: Symbol not"):
        nasdaq.parse(raw("nasdaq", "bars", "nasdaq/symbol_not_found.json", symbol="ZZZZ"))


def test_earnings_become_reports_known_at_the_end_of_the_reporting_day() -> None:
    reports = nasdaq.parse(raw("nasdaq", "earnings", "nasdaq/earnings_surprise_AAPL.json")).documents
    assert [r.kind for r in reports] == ["reports"] * 3
    latest = reports[0]
    assert latest.published_at == datetime(2023, 11, 3, 3, 59, 59)
    assert latest.body == {"type": "earnings", "fiscal_quarter_end": "Sep 2023", "eps": 1.46, "consensus": 1.39,
                           "surprise_pct": 5.04}


def test_financials_are_scaled_from_thousands_and_skip_headers_and_blanks() -> None:
    rows = nasdaq.parse(raw("nasdaq", "financials", "nasdaq/financials_annual_AAPL.json",
                            params={"frequency": "1"})).fundamentals
    values = {(r.item, r.period_end): r.value for r in rows}
    assert values[("Total Revenue", date(2023, 9, 30))] == 383_285_000_000
    assert values[("Other Income", date(2023, 9, 30))] == -565_000_000
    assert ("Short-Term Investments", date(2021, 9, 25)) not in values
    assert not any(item in {"Operating Expenses", "Current Ratio"} for item, _ in values)
    assert {r.period_type for r in rows} == {"annual"}


def test_financials_without_a_known_frequency_are_rejected() -> None:
    with pytest.raises(SourceFormatError, match=r"field 'params.frequency'"):
        nasdaq.parse(raw("nasdaq", "financials", "nasdaq/financials_annual_AAPL.json"))


def test_news_links_are_absolute_and_symbols_come_from_related_symbols() -> None:
    news = nasdaq.parse(raw("nasdaq", "news", "nasdaq/news_AAPL.json")).documents
    assert news[0].url == "https://www.nasdaq.com/articles/apple-aapl-stock-sinks-market-gains-what-you-should-know"
    assert news[1].symbols == ("AAPL", "MSFT")
    assert news[1].published_at == datetime(2024, 1, 6, 4, 59, 59)


@pytest.mark.parametrize(("text", "value"), [("$1,234.50", 1234.5), ("-0.65%", -0.65), ("+1.23", 1.23),
                                             ("($565,000)", -565000.0), ("--", None), ("N/A", None), (2.18, 2.18)])
def test_display_amounts(text: object, value: float | None) -> None:
    assert nasdaq.amount(Field(text, "x", "test")) == value


def test_financials_fetch_both_frequencies() -> None:
    client, _ = scripted_client({"/financials": [ok("nasdaq/financials_annual_AAPL.json")]})
    payloads = list(nasdaq.NasdaqSource(client).fetch("financials", "AAPL", Window(date(2024, 1, 1), date(2024, 1, 5))))
    assert [p.params["frequency"] for p in payloads] == ["1", "2"]


def test_intraday_bars_are_not_offered() -> None:
    client, _ = scripted_client({})
    with pytest.raises(ValueError, match="daily bars only"):
        list(nasdaq.NasdaqSource(client).fetch("bars", "AAPL", Window(date(2024, 1, 1), date(2024, 1, 5), "1h")))
