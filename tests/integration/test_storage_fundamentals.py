"""Fundamentals by publication (on SQLite and MariaDB): the weekly job asks for the periods that can have been
published in its window, and each value is stored as known from when it was public at the latest, so a
read as of a date never sees a figure early. Parsed from node-yahoo-finance2's real recording (2025-02-21)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.migrations import FUNDAMENTALS_V2, LATEST_VERSION, migrate
from signal_engine.collectors import yahoo
from signal_engine.collectors.sources import Window
from signal_engine.storage.records import Fundamental
from tests.fixtures.recorded import yahoo_raw
from tests.integration.conftest import store_at_version

RECORDING = "fundamentalsTimeSeries-AAPL-financials-quarterly.json"
FETCHED = datetime(2025, 2, 21, 11, 57, 48)






def revenue(rows: list[Fundamental]) -> dict[date, float]:
    return {row.period_end: row.value for row in rows if row.item == "TotalRevenue"}


def test_a_weekly_window_asks_for_the_periods_published_in_it() -> None:
    params = yahoo._timeseries_params("AAPL", Window(date(2025, 2, 14), date(2025, 2, 21)))
    asked_from = datetime.fromtimestamp(int(params["period1"]))
    assert asked_from <= datetime(2024, 10, 17)  # window start - 120 days: every period published in it
    parsed = yahoo.parse(yahoo_raw(RECORDING)).fundamentals
    assert date(2024, 12, 31) in revenue(parsed)


def test_each_value_is_known_from_its_fetch_or_its_publication_deadline(database: SqlDatabase) -> None:
    database.market.write_fundamentals(yahoo.parse(yahoo_raw(RECORDING)).fundamentals)
    known = {(row.period_end, row.item): row.known_at for row in database.market.read_fundamentals("AAPL")}
    assert known[(date(2024, 12, 31), "TotalRevenue")] == FETCHED  # seen before its deadline (2025-03-31)
    assert known[(date(2024, 6, 30), "TotalRevenue")] == datetime(2024, 9, 28)  # seen late: public by +90 days


def test_a_read_as_of_a_date_sees_only_what_was_public_then(database: SqlDatabase) -> None:
    database.market.write_fundamentals(yahoo.parse(yahoo_raw(RECORDING)).fundamentals)
    autumn = revenue(database.market.read_fundamentals("AAPL", as_of=datetime(2024, 10, 1)))
    assert autumn == {date(2024, 3, 31): 90_753_000_000, date(2024, 6, 30): 85_777_000_000}
    assert len(revenue(database.market.read_fundamentals("AAPL"))) == 4


def test_a_restated_value_is_a_new_version_and_the_old_one_stays_readable(database: SqlDatabase) -> None:
    rows = yahoo.parse(yahoo_raw(RECORDING)).fundamentals
    database.market.write_fundamentals(rows)
    later = datetime(2025, 5, 2, 12, 0)
    restated = [replace(r, value=r.value + 1e9, fetched_at=later) for r in rows
                if r.item == "TotalRevenue" and r.period_end == date(2024, 12, 31)]
    result = database.market.write_fundamentals(restated)
    assert (result.inserted, result.updated) == (0, 1)
    assert revenue(database.market.read_fundamentals("AAPL", as_of=datetime(2025, 3, 1)))[
        date(2024, 12, 31)] == 124_300_000_000
    assert revenue(database.market.read_fundamentals("AAPL"))[date(2024, 12, 31)] == 125_300_000_000
    assert database.market.write_fundamentals(restated).unchanged == 1


def test_a_version_6_store_with_fundamentals_is_upgraded_known_from_the_deadline(url: str) -> None:
    engine = store_at_version(url, 6)
    with engine.begin() as connection:
        connection.execute(FUNDAMENTALS_V2.insert(), [
            {"symbol": "AAPL", "source": "yahoo", "period_type": "annual", "period_end": date(2023, 9, 30),
             "item": "TotalRevenue", "value": 383_285_000_000.0, "currency": "USD"}])
    assert migrate(engine) == LATEST_VERSION
    engine.dispose()
    upgraded = SqlDatabase.connect(url)
    (row,) = upgraded.market.read_fundamentals("AAPL")
    assert (row.value, row.known_at) == (383_285_000_000.0, datetime(2024, 1, 28))
    assert upgraded.market.read_fundamentals("AAPL", as_of=datetime(2024, 1, 1)) == []
    upgraded.close()
