"""The Signal API's store-sourced bars (``SqlRecentBars``, the combiner Lambda's BarSource) are the tail of
``SqlPriceStore.read_bars``, the bars the models are trained on: same source, same split and dividend adjustment,
same volume, on MariaDB and SQLite."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import numpy as np
import pytest

from signal_engine.adapters.local_bars import LocalBars
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.prices import SqlPriceStore
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.storage.records import IMPLIED_VOL_HORIZON_DAYS, Bar, CorporateAction, ImpliedVolatility

# Raw daily closes of ABC from Yahoo (the primary source). A 2:1 split goes ex on 5 January (the close halves) and
# a dividend of 0.51 on 9 January: 1 - 0.51 / 51 (the raw close of the 8th) = 0.99 on every earlier bar.
YAHOO = {datetime(2024, 1, 2): 100.0, datetime(2024, 1, 3): 102.0, datetime(2024, 1, 4): 104.0,
         datetime(2024, 1, 5): 52.0, datetime(2024, 1, 8): 51.0, datetime(2024, 1, 9): 50.0,
         datetime(2024, 1, 10): 50.5}
# Nasdaq disagrees on 4 January (110 against 104: beyond 0.5 %) and has a bar on the 11th that Yahoo lacks.
NASDAQ = {**YAHOO, datetime(2024, 1, 4): 110.0, datetime(2024, 1, 11): 49.0}
ACTIONS = [CorporateAction("ABC", "split", date(2024, 1, 5), 2.0, source, datetime(2024, 1, 5))
           for source in ("yahoo", "nasdaq")] + [
    CorporateAction("ABC", "dividend", date(2024, 1, 9), 0.51, "yahoo", datetime(2024, 1, 9)),
    CorporateAction("ABC", "dividend", date(2024, 1, 9), 1.02, "nasdaq", datetime(2024, 1, 9))]
IMPLIED = ImpliedVolatility("ABC", "1d", datetime(2024, 1, 8), IMPLIED_VOL_HORIZON_DAYS, 23.5, 51.0,
                            datetime(2024, 1, 9))
ENDS = [None, datetime(2024, 1, 10), datetime(2024, 1, 9, 12, 0), datetime(2024, 1, 8), datetime(2024, 1, 4),
        datetime(2024, 1, 2)]
COUNTS = [1, 2, 3, 5, 7, 50]


def _bars(source: str, closes: dict[datetime, float]) -> list[Bar]:
    # 2 January carries its own adjusted close (as a CSV ingest stores it): kept, its volume left as stored;
    # 10 January has no volume
    return [Bar("ABC", "1d", day, close, close + 1, close - 1, close,
                None if day == datetime(2024, 1, 10) else 1e6, 49.0 if day == datetime(2024, 1, 2) else None, source)
            for day, close in closes.items()]


def _store(database: SqlDatabase) -> None:
    database.prices.write_bars(_bars("yahoo", YAHOO))
    assert database.prices.write_bars(_bars("nasdaq", NASDAQ)).disagreements == 1
    database.prices.write_corporate_actions(ACTIONS)
    database.market.write_implied_volatility([IMPLIED])


def _tail_of_read_bars(prices: SqlPriceStore, end: datetime | None, count: int) -> list[dict[str, Any]]:
    """The last ``count`` bars of ``read_bars(end=end)`` as JSON rows, with the stored implied volatility."""
    bars = prices.read_bars("ABC", "1d", end=end).bars.iloc[-count:]
    rows = []
    for timestamp, bar in bars.iterrows():
        row = {"timestamp": timestamp.isoformat(), **{name: float(bar[name]) for name in ("open", "high", "low",
                                                                                            "close")},
               "volume": float(bar["volume"]) if np.isfinite(bar["volume"]) else None}
        rows.append({**row, "implied_vol": IMPLIED.implied_vol} if timestamp == IMPLIED.timestamp else row)
    return rows


@pytest.mark.parametrize("primary", [{}, {"ABC": "nasdaq"}])
def test_served_bars_are_the_tail_of_read_bars(database: SqlDatabase, primary: dict[str, str]) -> None:
    _store(database)
    prices = SqlPriceStore(database.engine, primary)
    served = SqlRecentBars(database.engine, primary)
    local = LocalBars(prices, market=database.market, datasets=False)
    for end in ENDS:
        for count in COUNTS:
            expected = _tail_of_read_bars(prices, end, count)
            assert served.recent_bars("ABC", "1d", end, count) == expected, (end, count)
            assert local.recent_bars("ABC", "1d", end, count) == expected, (end, count)


def test_served_prices_are_split_and_dividend_adjusted_from_one_source(database: SqlDatabase) -> None:
    _store(database)
    rows = SqlRecentBars(database.engine).recent_bars("ABC", "1d", None, 7)
    assert [row["timestamp"][:10] for row in rows] == [f"2024-01-{day:02d}" for day in (2, 3, 4, 5, 8, 9, 10)]
    by_day = {row["timestamp"][:10]: row for row in rows}
    assert by_day["2024-01-03"]["close"] == pytest.approx(102.0 / 2 * 0.99, rel=1e-12)  # 50.49
    assert by_day["2024-01-03"]["high"] == pytest.approx(103.0 / 2 * 0.99, rel=1e-12)
    assert by_day["2024-01-03"]["volume"] == pytest.approx(2e6, rel=1e-12)  # twice the shares before the split
    assert by_day["2024-01-04"]["close"] == pytest.approx(104.0 / 2 * 0.99, rel=1e-12)  # Yahoo's, not Nasdaq's 110
    assert by_day["2024-01-05"]["close"] == pytest.approx(52.0 * 0.99, rel=1e-12)
    assert by_day["2024-01-09"]["close"] == by_day["2024-01-09"]["open"] == 50.0  # on and after the ex-date: raw
    assert by_day["2024-01-02"]["close"] == pytest.approx(49.0, rel=1e-12)  # its own adjusted close
    assert by_day["2024-01-02"]["volume"] == 1e6
    assert by_day["2024-01-10"]["volume"] is None
    assert by_day["2024-01-08"]["implied_vol"] == 23.5
    assert all("implied_vol" not in row for day, row in by_day.items() if day != "2024-01-08")


def test_bars_before_a_split_are_served_adjusted_for_it(database: SqlDatabase) -> None:
    # as read_bars(end=...) gives them: the split after `end` halves them; the dividend after `end` scales them by
    # the last raw close at or before `end` (104): 104 / 2 x (1 - 0.51 / 104) = 52 - 0.255
    _store(database)
    [row] = SqlRecentBars(database.engine).recent_bars("ABC", "1d", datetime(2024, 1, 4), 1)
    assert row["timestamp"] == "2024-01-04T00:00:00"
    assert row["close"] == pytest.approx(51.745, rel=1e-12)


def test_an_unknown_symbol_has_no_bars(database: SqlDatabase) -> None:
    _store(database)
    assert SqlRecentBars(database.engine).recent_bars("XYZ", "1d", None, 5) == []
    assert SqlRecentBars(database.engine).recent_bars("ABC", "1d", datetime(2023, 12, 31), 5) == []


def test_the_source_read_is_yahoo_else_nasdaq_else_the_alphabetically_first(database: SqlDatabase) -> None:
    day = datetime(2024, 1, 2)
    served = SqlRecentBars(database.engine)
    for source, close, expected in [("zeta", 10.0, "zeta"), ("csv", 20.0, "csv"), ("nasdaq", 30.0, "nasdaq"),
                                    ("yahoo", 40.0, "yahoo"), ("alpha", 50.0, "yahoo")]:
        database.prices.write_bars([Bar("ABC", "1d", day, close, close, close, close, None, None, source)])
        assert database.prices.primary_source("ABC", "1d") == expected
        [row] = served.recent_bars("ABC", "1d", None, 5)
        assert row["close"] == {"zeta": 10.0, "csv": 20.0, "nasdaq": 30.0, "yahoo": 40.0}[expected]
