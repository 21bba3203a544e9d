"""AAPL's 4:1 split of 2020-08-31, collected before and after (on SQLite and MariaDB): raw prices are kept,
adjusted prices have no cliff, and a read as of a time before the split gives the history as it was then.

Before: ``yahoo/chart_AAPL_2020-08-27_to_2020-08-28_before_split.json``, the chart as Yahoo answered on
2020-08-28 (unadjusted then; prices as published that day, composed into the chart shape by us, see the
fixtures README). After: node-yahoo-finance2's real recording of the chart from 2020-08-31 to 2020-11-07,
fetched 2025-02-20, with the split and a dividend in ``events``; and its real recording of 2020-01-02,
fetched the same day, which arrives split-adjusted (75.09, not 300.35).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from signal_engine.bootstrap import Settings, Storage, bootstrap
from signal_engine.collectors import yahoo
from signal_engine.collectors.service import write_parsed
from tests.fixtures.payloads import raw
from tests.fixtures.recorded import yahoo_raw
from tests.fixtures.servers import delete_all_rows, mysql_url_or_skip

BEFORE = "yahoo/chart_AAPL_2020-08-27_to_2020-08-28_before_split.json"
BEFORE_FETCHED = datetime(2020, 8, 28, 22, 0)


@pytest.fixture(params=["sqlite", "mariadb"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    url = f"sqlite:///{tmp_path}/store.db" if request.param == "sqlite" else mysql_url_or_skip()
    stores = bootstrap(Settings(database_url=url, object_store=str(tmp_path / "objects")))
    if url.startswith("mysql"):
        delete_all_rows(url)
    yield stores
    stores.close()


def collect_before_and_after(storage: Storage) -> None:
    write_parsed(yahoo.parse(raw("yahoo", "bars", BEFORE, params={"period1": "1598486400", "period2": "1598745600"},
                                 fetched_at=BEFORE_FETCHED)), storage)
    write_parsed(yahoo.parse(yahoo_raw("chart-AAPL-2020-08-31-to-2020-11-07.json")), storage)


def test_the_split_and_the_dividend_are_their_own_records_known_from_the_fetch(storage: Storage) -> None:
    collect_before_and_after(storage)
    actions = storage.prices.corporate_actions("AAPL")
    assert [(a.kind, a.ex_date, a.value) for a in actions] == [("split", date(2020, 8, 31), 4.0),
                                                              ("dividend", date(2020, 11, 6), 0.205)]
    assert actions[0].known_at == datetime(2025, 2, 20, 11, 47, 42)


def test_raw_prices_are_kept_and_adjusted_ones_have_no_cliff(storage: Storage) -> None:
    collect_before_and_after(storage)
    raw_series = storage.prices.read_bars("AAPL", "1d", end=datetime(2020, 9, 1), as_of=BEFORE_FETCHED)
    assert raw_series.bars["close"].tolist() == [500.04, 499.23]  # as of before the split: as it was
    adjusted = storage.prices.read_bars("AAPL", "1d").bars
    closes = adjusted["close"]
    assert closes[datetime(2020, 8, 28)] == pytest.approx(499.23 / 4 * (1 - 0.205 / 118.69), rel=1e-3)
    jump = closes[datetime(2020, 8, 31)] / closes[datetime(2020, 8, 28)] - 1
    assert jump == pytest.approx(129.04 / 124.8075 - 1, abs=1e-3)  # the real +3.4 %, not -74 %
    assert adjusted["volume"][datetime(2020, 8, 28)] == 46907200 * 4
    assert (closes.pct_change().abs().dropna() < 0.11).all()


def test_the_dividend_adjustment_matches_yahoos_own_adjusted_close(storage: Storage) -> None:
    """Yahoo's 2025 adjclose also holds the 17 later dividends, which this store never saw: compare the
    adjustment across the 2020-11-06 dividend only (each bar's factor relative to the last bar's)."""
    collect_before_and_after(storage)
    recorded = yahoo.parse(yahoo_raw("chart-AAPL-2020-08-31-to-2020-11-07.json")).bars
    ours = storage.prices.read_bars("AAPL", "1d").bars["close"]
    last = recorded[-1]
    assert last.timestamp == datetime(2020, 11, 6)
    for bar in recorded:
        theirs = (bar.adj_close / bar.close) / (last.adj_close / last.close)  # type: ignore[operator]
        assert ours[bar.timestamp] / bar.close == pytest.approx(theirs, rel=1e-5), bar.timestamp


def test_a_split_adjusted_old_window_is_stored_raw_so_nothing_is_restated(storage: Storage) -> None:
    collect_before_and_after(storage)
    write_parsed(yahoo.parse(yahoo_raw("chart-AAPL-2020-01-01-to-2020-01-03.json")), storage)
    stored = storage.prices.read_bars("AAPL", "1d", end=datetime(2020, 1, 3), as_of=datetime(2020, 1, 3)).bars
    assert stored["close"].iloc[0] == pytest.approx(300.35, abs=0.01)  # 75.0875 x 4: the raw close of 2020-01-02
    again = yahoo.parse(raw("yahoo", "bars", BEFORE, fetched_at=BEFORE_FETCHED))
    assert write_parsed(again, storage)["bars"].unchanged == 2
    assert storage.prices.restatements("AAPL", "1d") == []


def test_a_read_as_of_before_the_dividend_applies_the_split_only(storage: Storage) -> None:
    collect_before_and_after(storage)
    storage.prices.write_corporate_actions([replace(a, known_at=datetime(2020, 8, 31, 23))
                                            for a in storage.prices.corporate_actions("AAPL") if a.kind == "split"])
    as_of_september = storage.prices.read_bars("AAPL", "1d", as_of=datetime(2020, 9, 30)).bars["close"]
    assert as_of_september[datetime(2020, 8, 28)] == pytest.approx(499.23 / 4)
    assert as_of_september.index[-1] <= datetime(2020, 9, 30)
