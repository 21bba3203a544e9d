"""The parsers against real responses recorded by others (node-yahoo-finance2's HTTP fixtures, Feb-Mar 2025;
Nasdaq bodies quoted in public repositories): every body parses, and the cases that broke before are right."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from signal_engine.collectors import nasdaq, yahoo
from tests.fixtures.payloads import as_body, fixture_json, raw
from tests.fixtures.recorded import (
    NASDAQ_RECORDED,
    YAHOO_KINDS,
    nasdaq_names,
    nasdaq_raw,
    yahoo_names,
    yahoo_raw,
)

YAHOO_FILES = [name for prefix in YAHOO_KINDS for name in yahoo_names(prefix)]


def test_at_least_forty_yahoo_bodies_across_the_five_endpoints_are_recorded() -> None:
    per_endpoint = {prefix: len(yahoo_names(prefix)) for prefix in YAHOO_KINDS}
    assert sum(per_endpoint.values()) >= 40
    assert all(count >= 5 for count in per_endpoint.values()), per_endpoint


@pytest.mark.parametrize("name", YAHOO_FILES)
def test_every_recorded_yahoo_body_parses(name: str) -> None:
    payload = yahoo_raw(name)
    parsed = yahoo.parse(payload)
    assert all(bar.symbol == payload.symbol and bar.low <= bar.high for bar in parsed.bars)


def test_real_daily_chart_gives_the_split_adjusted_closes_yahoo_reported_in_2025() -> None:
    bars = yahoo.parse(yahoo_raw("chart-AAPL-2020-01-01-to-2020-01-03.json")).bars
    assert [b.timestamp for b in bars] == [datetime(2020, 1, 2)]  # period2 is 2020-01-03 00:00 UTC
    assert bars[0].close == pytest.approx(75.0875, abs=1e-4)


def test_a_quote_summary_without_the_price_module_is_as_of_its_fetch_time() -> None:
    payload = yahoo_raw("quoteSummary-summaryDetail-AAPL.json")
    rows = {s.name: s for s in yahoo.parse(payload).statistics}
    assert rows["trailingPE"].as_of == payload.fetched_at
    assert rows["trailingPE"].value > 0


def test_a_quote_summary_with_price_is_as_of_the_regular_market_time() -> None:
    rows = yahoo.parse(yahoo_raw("quoteSummary-all-QQQ.json")).statistics
    assert rows and len({row.as_of for row in rows}) == 1
    assert rows[0].as_of.year == 2025


def test_weekend_placeholder_implied_volatility_is_stored_as_missing_and_counted() -> None:
    parsed = yahoo.parse(yahoo_raw("options-AAPL.json"))
    no_market = [q for q in parsed.options if not q.bid and not q.ask]
    assert no_market and all(q.implied_volatility is None for q in no_market)
    assert len(parsed.skipped) == sum(1 for q in no_market)
    quoted = [q for q in parsed.options if q.bid and q.ask]
    assert quoted and all(q.implied_volatility is not None and q.implied_volatility > 0.01 for q in quoted)


def test_news_is_tagged_with_related_tickers_not_the_query() -> None:
    news = yahoo.parse(yahoo_raw("search-AZT.OL.json")).documents
    carters = next(d for d in news if d.title.startswith("Carter"))
    assert carters.symbols == ("CRI",)
    assert not any("AZT.OL" in d.symbols for d in news)
    assert {d.body["query"] for d in news} == {"AZT.OL"}
    apple = yahoo.parse(yahoo_raw("search-AAPL.json")).documents
    assert sum("AAPL" in d.symbols for d in apple) >= 2
    assert any(d.symbols == ("BRK-B",) for d in apple)


# --- Nasdaq ---------------------------------------------------------------------------------------------


def test_every_recorded_nasdaq_quote_parses() -> None:
    for name in nasdaq_names("quote_info_"):
        if name.endswith(".data.json"):
            continue
        assert nasdaq.parse(nasdaq_raw(name)).statistics, name


def test_a_pre_market_quote_is_stored_as_pre_market_and_the_previous_close_as_regular() -> None:
    rows = {s.name: s for s in nasdaq.parse(nasdaq_raw("quote_info_AAPL_2019-11-19_pre_market.json")).statistics}
    assert rows["pre_market_last_sale_price"].value == 267.85
    assert rows["pre_market_last_sale_price"].as_of == datetime(2019, 11, 19, 14, 27)
    assert rows["pre_market_volume"].value == 111_677
    assert rows["last_sale_price"].value == 267.10
    assert rows["last_sale_price"].as_of == datetime(2019, 11, 18, 21, 0)
    assert rows["market_cap"].value == 1_186_796_081_500


def test_an_after_hours_quote_parses_and_keeps_the_regular_close_apart() -> None:
    rows = {s.name: s for s in nasdaq.parse(nasdaq_raw("quote_info_AAPL_2019-11-19_after_hours.json")).statistics}
    assert rows["after_hours_last_sale_price"].as_of == datetime(2019, 11, 19, 21, 31)
    assert rows["last_sale_price"].value == 266.29
    assert rows["net_change"].value == -0.81  # unsigned in the body, "down" in deltaIndicator
    assert rows["after_hours_net_change"].value == 0.81


def test_an_unsigned_net_change_takes_its_sign_from_delta_indicator() -> None:
    rows = {s.name: s for s in nasdaq.parse(nasdaq_raw("quote_info_AAPL_2019-11-19_market_open.json")).statistics}
    assert rows["net_change"].value == -0.318
    assert rows["percentage_change"].value == -0.12
    assert rows["last_sale_price"].value == 266.782
    assert rows["volume"].value == 2_492_507  # from keyStats.Volume


def test_data_as_of_a_date_alone_is_the_session_close_and_n_a_is_skipped() -> None:
    rows = {s.name: s for s in nasdaq.parse(nasdaq_raw("quote_info_AACQU_2020-07-28_closed.json")).statistics}
    assert rows["last_sale_price"].as_of == datetime(2020, 7, 28, 20, 0)
    assert rows["net_change"].value == -0.03
    assert "market_cap" not in rows and rows["volume"].value == 537_219


def test_a_signed_2023_quote_with_volume_in_primary_data() -> None:
    rows = {s.name: s for s in nasdaq.parse(nasdaq_raw("quote_info_AAPL_2023-02-24_market_open.json")).statistics}
    assert (rows["net_change"].value, rows["volume"].value) == (-2.97, 11_763_041)
    assert rows["volume"].as_of == datetime(2023, 2, 24, 15, 19)


def test_the_msft_pre_market_data_member_parses_in_its_envelope() -> None:
    data = json.loads((NASDAQ_RECORDED / "quote_info_MSFT_2021-03-08_pre_market.data.json").read_text())
    body = as_body({"data": data, "message": None, "status": {"rCode": 200, "bCodeMessage": None}})
    rows = {s.name: s for s in nasdaq.parse(raw("nasdaq", "quotes", body, symbol="MSFT")).statistics}
    assert rows["pre_market_net_change"].value == -1.40
    assert rows["pre_market_last_sale_price"].as_of == datetime(2021, 3, 8, 13, 26)
    assert rows["net_change"].value == 4.87 and rows["net_change"].as_of == datetime(2021, 3, 5, 21, 0)


@pytest.mark.parametrize(("text", "expected", "session"), [
    ("Feb 24, 2023 6:09 AM ET - PRE-MARKET", datetime(2023, 2, 24, 11, 9), "pre_market"),
    ("Feb 24, 2023 7:52 PM ET - AFTER HOURS", datetime(2023, 2, 25, 0, 52), "after_hours"),
    ("DATA AS OF Nov 19, 2019 9:27 AM ET - PRE-MARKET", datetime(2019, 11, 19, 14, 27), "pre_market"),
    ("CLOSED AT 4:00 PM ET ON Nov 18, 2019", datetime(2019, 11, 18, 21, 0), "regular"),
])
def test_trade_time_variants(text: str, expected: datetime, session: str) -> None:
    from signal_engine.collectors.fields import Field

    assert nasdaq._trade_time(Field(text, "t", "test")) == (expected, session)


def test_a_historical_row_with_n_a_is_skipped_and_counted_not_the_whole_payload() -> None:
    document = fixture_json("nasdaq/historical_AAPL.json")
    document["data"]["tradesTable"]["rows"][1].update({"open": "N/A", "high": "N/A", "low": "N/A"})
    parsed = nasdaq.parse(raw("nasdaq", "bars", as_body(document)))
    assert len(parsed.bars) == 3
    assert len(parsed.skipped) == 1 and "rows[1]" in parsed.skipped[0]
    assert date(2024, 1, 4) not in {b.timestamp.date() for b in parsed.bars}
