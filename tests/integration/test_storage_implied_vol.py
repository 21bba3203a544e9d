"""The implied-volatility series derived from stored option chains, on MariaDB and SQLite: derived point in time
at each bar's close from its raw close, stored once, exported with the bars and served with them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from signal_engine.adapters.local_bars import LocalBars
from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.migrations import LATEST_VERSION, MIGRATIONS, migrate
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.data.loader import load_prices
from signal_engine.storage.export import export_bars
from signal_engine.storage.implied_vol import derive_implied_volatility
from signal_engine.storage.records import Bar, CorporateAction, OptionQuote
from tests.integration.conftest import store_at_version

# Daily bars of XYZ, stored raw. Their closes are 16:00 New York = 21:00 UTC in January. A 2:1 split on 1 February
# halves every adjusted price before it, so the adjusted close (51.0 on 5 January) lies below every strike.
RAW_CLOSES = {datetime(2024, 1, 4): 101.0, datetime(2024, 1, 5): 102.0, datetime(2024, 1, 8): 101.0,
              datetime(2024, 1, 9): 120.0, datetime(2024, 1, 12): 103.0}
SPLIT = CorporateAction("XYZ", "split", datetime(2024, 2, 1).date(), 2.0, "test", datetime(2024, 2, 1))
FRIDAY_CLOSE = datetime(2024, 1, 5, 21, 0)
# Expiries 20 and 40 days after Friday's close (at 21:00 UTC, the expiry time), strikes 100 and 105.
NEAR, FAR = datetime(2024, 1, 25).date(), datetime(2024, 2, 14).date()
# 5 January 20:00 UTC (an hour before the close): ATM at 102 = 0.20 + 2/5 x 0.04 (near), 0.25 + 2/5 x 0.04 (far);
# 30 days lie halfway between the expiries in total variance.
FRIDAY_IV = 100 * math.sqrt((0.216**2 * 20 + 0.266**2 * 40) / 2 / 30)


def _bars(symbol: str = "XYZ") -> list[Bar]:
    return [Bar(symbol, "1d", day, close, close + 1, close - 1, close, 1e6, None, "test")
            for day, close in RAW_CLOSES.items()]


def _chain(as_of: datetime, ivs: dict[tuple[object, float], float]) -> list[OptionQuote]:
    return [OptionQuote(f"XYZ{expiration:%y%m%d}{side[0]}{strike:g}", "XYZ", side, expiration, strike, as_of,  # type: ignore[arg-type]
                        None, 1.0, 1.1, iv, None, None, "test")
            for (expiration, strike), iv in ivs.items() for side in ("call", "put")]


def _store(database: SqlDatabase) -> None:
    database.prices.write_bars(_bars())
    database.prices.write_corporate_actions([SPLIT])
    database.market.write_option_quotes([
        # known an hour before Friday's close: Friday's value
        *_chain(FRIDAY_CLOSE - timedelta(hours=1), {(NEAR, 100.0): 0.20, (NEAR, 105.0): 0.24,
                                                    (FAR, 100.0): 0.25, (FAR, 105.0): 0.29}),
        # fetched after Friday's close (Yahoo stamps 16:00:01): never Friday's, Monday's (3 days old, within 4)
        *_chain(FRIDAY_CLOSE + timedelta(seconds=1), {(NEAR, 100.0): 0.50, (NEAR, 105.0): 0.50,
                                                      (FAR, 100.0): 0.50, (FAR, 105.0): 0.50}),
        # Tuesday: the spot (120) lies above every strike, so that bar abstains
        *_chain(datetime(2024, 1, 9, 15, 0), {(NEAR, 100.0): 0.30, (NEAR, 105.0): 0.30}),
    ])


def _values(database: SqlDatabase) -> dict[datetime, float]:
    return {row.timestamp: row.implied_vol for row in database.market.read_implied_volatility("XYZ", "1d")}


def test_each_bar_gets_the_chain_known_at_its_close_at_its_raw_close(database: SqlDatabase) -> None:
    _store(database)
    assert database.prices.read_bars("XYZ", "1d").bars["close"].iloc[1] == pytest.approx(51.0)  # adjusted
    result = derive_implied_volatility(database.prices, database.market, "XYZ", "1d",
                                       now=lambda: datetime(2024, 1, 13, 6, 0))
    # Thursday has no chain yet; Tuesday's spot is above every strike; the 12th sees only Tuesday's chain (3 days
    # old), whose one expiry (13 days) does not reach the 30-day horizon: both abstain
    assert (result.stored, result.derived, result.abstained, result.without_chain) == (0, 2, 2, 1)
    values = _values(database)
    assert values == {datetime(2024, 1, 5): pytest.approx(FRIDAY_IV, rel=1e-12),
                      datetime(2024, 1, 8): pytest.approx(50.0, rel=1e-12)}
    assert pytest.approx(25.0445, abs=1e-4) == FRIDAY_IV  # sqrt(1.88168 / 30)
    friday = database.market.read_implied_volatility("XYZ", "1d")[0]
    assert (friday.horizon_days, friday.spot, friday.computed_at) == (30, 102.0, datetime(2024, 1, 13, 6, 0))
    assert friday.term_slope is None and friday.skew is None  # no 90-day expiry, no 90%/110% strikes


def test_a_second_run_recomputes_nothing_and_a_new_chain_adds_only_its_bar(database: SqlDatabase) -> None:
    _store(database)
    derive_implied_volatility(database.prices, database.market, "XYZ", "1d", now=lambda: datetime(2024, 1, 13))
    first = database.market.read_implied_volatility("XYZ", "1d")
    # a chain stored late for a bar that has a value already is not taken in: stored values are kept as they are
    database.market.write_option_quotes(_chain(FRIDAY_CLOSE - timedelta(minutes=1), {(NEAR, 100.0): 0.9,
                                                                                     (NEAR, 105.0): 0.9}))
    again = derive_implied_volatility(database.prices, database.market, "XYZ", "1d", now=lambda: datetime(2024, 2, 1))
    assert (again.stored, again.derived, again.abstained, again.without_chain) == (2, 0, 2, 1)
    assert database.market.read_implied_volatility("XYZ", "1d") == first
    database.market.write_option_quotes(_chain(datetime(2024, 1, 12, 18, 0), {(NEAR, 100.0): 0.40,
                                                                              (NEAR, 105.0): 0.40,
                                                                              (FAR, 100.0): 0.40,
                                                                              (FAR, 105.0): 0.40}))
    third = derive_implied_volatility(database.prices, database.market, "XYZ", "1d", now=lambda: datetime(2024, 2, 2))
    assert (third.stored, third.derived) == (2, 1)
    assert _values(database) == {**{row.timestamp: row.implied_vol for row in first},
                                 datetime(2024, 1, 12): pytest.approx(40.0, rel=1e-12)}


def test_option_quotes_are_read_by_fetch_time_window(database: SqlDatabase) -> None:
    _store(database)
    quotes = database.market.read_option_quotes("XYZ", since=FRIDAY_CLOSE - timedelta(minutes=30),
                                                until=datetime(2024, 1, 9, 15, 0))
    assert sorted({q.as_of for q in quotes}) == [FRIDAY_CLOSE + timedelta(seconds=1), datetime(2024, 1, 9, 15, 0)]
    assert len(database.market.read_option_quotes("XYZ")) == 8 + 8 + 4
    assert database.market.option_snapshot_times("XYZ", until=FRIDAY_CLOSE) == [FRIDAY_CLOSE - timedelta(hours=1)]


def test_the_export_writes_the_series_as_implied_vol_and_the_loader_reads_it_back(database: SqlDatabase,
                                                                                  tmp_path: Path) -> None:
    _store(database)
    database.prices.write_bars(_bars("PLAIN"))
    files = LocalFolderStore(tmp_path / "datasets")
    result = export_bars(database.prices, files, ["XYZ", "PLAIN"], market=database.market)
    assert [(s.symbol, s.implied_vol) for s in result.exported] == [("XYZ", 2), ("PLAIN", 0)]
    xyz = load_prices(tmp_path / "datasets" / "bars" / "1d" / "XYZ.csv", "XYZ").bars
    assert xyz["implied_vol"].dropna().to_dict() == {
        datetime(2024, 1, 5): pytest.approx(FRIDAY_IV, rel=1e-12), datetime(2024, 1, 8): pytest.approx(50.0)}
    assert xyz["implied_vol"].isna().sum() == 3
    plain = (tmp_path / "datasets" / "bars" / "1d" / "PLAIN.csv").read_text().splitlines()[0]
    assert plain == "Date,Open,High,Low,Close,Volume"


def test_stored_bars_are_served_with_their_implied_vol(database: SqlDatabase) -> None:
    _store(database)
    derive_implied_volatility(database.prices, database.market, "XYZ", "1d")
    for source in (SqlRecentBars(database.engine), LocalBars(database.prices, market=database.market,
                                                             datasets=False)):
        rows = source.recent_bars("XYZ", "1d", datetime(2024, 1, 9), 3)
        assert [r["timestamp"][:10] for r in rows] == ["2024-01-05", "2024-01-08", "2024-01-09"]
        assert rows[0]["implied_vol"] == pytest.approx(FRIDAY_IV, rel=1e-12)
        assert rows[1]["implied_vol"] == pytest.approx(50.0)
        assert "implied_vol" not in rows[2]  # abstained: the key is left out, as on request bars


def test_a_version_8_store_is_upgraded_keeping_its_chains_and_bars(url: str) -> None:
    engine = store_at_version(url, 8)
    with engine.begin() as connection:
        indexes = {index["name"] for index in sa.inspect(connection).get_indexes("option_quotes")}
        if schema.option_quotes_by_time.name in indexes:  # version 2 as it is written today creates it
            schema.option_quotes_by_time.drop(connection)
        assert not sa.inspect(connection).has_table("implied_volatility")
    with engine.begin() as connection:
        connection.execute(schema.bars.insert(), [
            {"symbol": b.symbol, "timeframe": b.timeframe, "timestamp": b.timestamp, "open": b.open, "high": b.high,
             "low": b.low, "close": b.close, "volume": b.volume, "adj_close": None, "source": b.source,
             "updated_at": datetime(2024, 1, 13)} for b in _bars()])
        connection.execute(schema.option_quotes.insert(), [
            {**vars(q)} for q in _chain(FRIDAY_CLOSE - timedelta(hours=1), {(NEAR, 100.0): 0.20, (NEAR, 105.0): 0.24,
                                                                            (FAR, 100.0): 0.25, (FAR, 105.0): 0.29})])
    assert migrate(engine) == LATEST_VERSION == 9
    assert migrate(engine) == LATEST_VERSION  # nothing left to apply
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        assert inspector.has_table("implied_volatility")
        assert schema.option_quotes_by_time.name in {index["name"] for index in inspector.get_indexes("option_quotes")}
    engine.dispose()
    upgraded = SqlDatabase.connect(url)
    assert upgraded.prices.count_bars("XYZ") == 5 and len(upgraded.market.read_option_quotes("XYZ")) == 8
    derive_implied_volatility(upgraded.prices, upgraded.market, "XYZ", "1d")
    # Monday 21:00 sees Friday's chain (3 days and an hour old): expiries 17 and 37 days away, ATM at 101
    monday = 100 * math.sqrt((0.208**2 * 17 + 13 / 20 * (0.258**2 * 37 - 0.208**2 * 17)) / 30)
    assert _values(upgraded) == {datetime(2024, 1, 5): pytest.approx(FRIDAY_IV, rel=1e-12),
                                 datetime(2024, 1, 8): pytest.approx(monday, rel=1e-12)}
    upgraded.close()


def test_the_migration_step_is_rerunnable(url: str) -> None:
    engine = store_at_version(url, 9)
    step = next(m for m in MIGRATIONS if m.version == 9)
    with engine.begin() as connection:
        step.apply(connection)  # cut off before its version row was written: applied again, without error
    engine.dispose()
