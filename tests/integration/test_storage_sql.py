"""The SQL stores behave the same on MariaDB (a real server) and on the embedded SQLite default."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate
from signal_engine.errors import InputError
from signal_engine.storage.records import (
    Bar,
    Document,
    Fundamental,
    OptionQuote,
    Position,
    RiskEvent,
    SignalAudit,
    Statistic,
)
from tests.fixtures.servers import drop_all_tables

START = datetime(2024, 1, 2)




@pytest.fixture
def fresh_url(url: str) -> str:
    """A database with no tables at all (SQLite: a new file; MariaDB: every table dropped)."""
    if url.startswith("mysql"):
        drop_all_tables(url)
    return url




def bars(count: int, symbol: str = "AAPL", start: datetime = START, shift: float = 0.0) -> list[Bar]:
    return [Bar(symbol, "1d", start + timedelta(days=i), 100.0 + i + shift, 101.5 + i + shift, 99.25 + i + shift,
                100.75 + i + shift, 1e6 + i, None, "test") for i in range(count)]


def test_a_new_database_is_migrated_to_the_latest_version(fresh_url: str) -> None:
    database = SqlDatabase.connect(fresh_url)
    with database.engine.connect() as connection:
        versions = connection.execute(sa.select(schema.schema_version.c.version).order_by("version")).scalars().all()
    database.close()
    assert database.schema_version == LATEST_VERSION
    assert versions == [m.version for m in MIGRATIONS]


def test_connecting_again_applies_nothing(url: str, database: SqlDatabase) -> None:
    again = SqlDatabase.connect(url)
    with again.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.schema_version)).scalar() == len(
            MIGRATIONS)
    again.close()


def test_a_database_at_an_older_version_gets_only_the_later_steps(fresh_url: str) -> None:
    engine = sa.create_engine(fresh_url)
    with engine.begin() as connection:
        schema.schema_version.create(connection)
        MIGRATIONS[0].apply(connection)
        connection.execute(schema.schema_version.insert().values(version=1, description="x", applied_at=START))
    assert migrate(engine) == LATEST_VERSION
    with engine.connect() as connection:
        assert current_version(connection) == LATEST_VERSION
        assert sa.inspect(connection).has_table("risk_events")
    engine.dispose()


def test_new_bars_are_inserted(database: SqlDatabase) -> None:
    result = database.prices.write_bars(bars(30))
    assert (result.inserted, result.updated, result.unchanged) == (30, 0, 0)
    assert database.prices.count_bars("AAPL") == 30


def test_writing_the_same_bars_again_adds_no_rows(database: SqlDatabase) -> None:
    database.prices.write_bars(bars(30))
    result = database.prices.write_bars(bars(30))
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 30)
    assert database.prices.count_bars() == 30 and database.prices.restatements("AAPL", "1d") == []


def test_a_restated_bar_is_updated_in_place_and_recorded(database: SqlDatabase) -> None:
    original = bars(5)
    database.prices.write_bars(original)
    corrected = replace(original[2], close=original[2].close + 0.5)
    result = database.prices.write_bars([*original[:2], corrected, *bars(2, start=START + timedelta(days=5))])
    (recorded,) = database.prices.restatements("AAPL", "1d")
    assert (result.inserted, result.updated, result.unchanged) == (2, 1, 2)
    assert (recorded.before, recorded.after) == (original[2], corrected)
    assert database.prices.read_bars("AAPL", "1d").bars["close"].iloc[2] == corrected.close


@pytest.mark.parametrize(("field", "before", "after"), [
    ("volume", 1e6, 1.2e6),            # a late volume correction
    ("adj_close", 100.0, 99.1),        # a dividend adjustment: prices the same, the adjusted close moves
    ("adj_close", None, 99.1),         # an adjusted close that arrives later
])
def test_a_restatement_of_volume_or_adjusted_close_alone_is_recorded(
        database: SqlDatabase, field: str, before: float | None, after: float) -> None:
    original = replace(bars(1)[0], **{field: before})  # type: ignore[arg-type]
    database.prices.write_bars([original])
    restated = replace(original, **{field: after})  # type: ignore[arg-type]
    result = database.prices.write_bars([restated])
    (recorded,) = database.prices.restatements("AAPL", "1d")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 0)
    assert (getattr(recorded.before, field), getattr(recorded.after, field)) == (before, after)


def test_the_last_of_duplicate_keys_in_a_batch_wins(database: SqlDatabase) -> None:
    first, second = bars(1), bars(1, shift=1.0)
    assert database.prices.write_bars([*first, *second]).inserted == 1
    assert database.prices.read_bars("AAPL", "1d").bars["open"].iloc[0] == second[0].open


def test_prices_round_trip_exactly(database: SqlDatabase) -> None:
    awkward = Bar("AAPL", "1d", START, 0.1 + 0.2, 187.14999389648438, 1e-7, 123456789.123456789, 3.0, None, "t")
    database.prices.write_bars([awkward])
    assert database.prices.write_bars([awkward]).unchanged == 1


def test_reading_bars_applies_the_adjusted_close_and_the_range(database: SqlDatabase) -> None:
    adjusted = [replace(bar, adj_close=bar.close / 2) for bar in bars(10)]
    database.prices.write_bars(adjusted)
    series = database.prices.read_bars("AAPL", "1d", start=START + timedelta(days=2), end=START + timedelta(days=4))
    assert list(series.bars.index) == [START + timedelta(days=d) for d in (2, 3, 4)]
    assert series.bars["high"].iloc[0] == pytest.approx(adjusted[2].high / 2)
    assert series.bars["volume"].iloc[0] == adjusted[2].volume


def test_reading_a_symbol_with_no_bars_is_an_input_error(database: SqlDatabase) -> None:
    with pytest.raises(InputError, match="no bars stored"):
        database.prices.read_bars("NONE", "1d")


def test_statistics_upsert_by_symbol_name_and_time(database: SqlDatabase) -> None:
    rows = [Statistic("AAPL", "trailingPE", START, 29.5, "yahoo"), Statistic("AAPL", "beta", START, 1.29, "yahoo")]
    assert database.market.write_statistics(rows).inserted == 2
    result = database.market.write_statistics([rows[0], replace(rows[1], value=1.3)])
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    assert sorted(s.value for s in database.market.read_statistics("AAPL")) == [1.3, 29.5]


def test_fundamentals_upsert_by_period_and_item(database: SqlDatabase) -> None:
    row = Fundamental("AAPL", "TotalRevenue", "annual", date(2023, 9, 30), 383285000000.0, "yahoo")
    database.market.write_fundamentals([row])
    assert database.market.write_fundamentals([row]).unchanged == 1
    assert database.market.read_fundamentals("AAPL") == [replace(row, known_at=datetime(2024, 1, 28))]  # +120 days


def test_option_quotes_round_trip_with_missing_values(database: SqlDatabase) -> None:
    quote = OptionQuote("AAPL240112P00180000", "AAPL", "put", date(2024, 1, 12), 180.0, START, 1.1, 1.08, 1.12,
                        0.1936, None, 22015.0, "yahoo")
    assert database.market.write_option_quotes([quote, quote]).inserted == 1
    assert database.market.read_option_quotes("AAPL") == [quote]


def test_the_ledger_keeps_signals_positions_and_risk_events(database: SqlDatabase) -> None:
    audit = SignalAudit("AAPL", "1d", START, "buy", 0.4, 0.7, 0.25, "moe-1", {"bars": ["AAPL/1d/2024-01-02"]}, START)
    database.ledger.record_signal(audit)
    database.ledger.set_position(Position("AAPL", 10.0, 0.25, START))
    database.ledger.set_position(Position("AAPL", 12.0, 0.3, START + timedelta(days=1)))
    database.ledger.record_risk_event(RiskEvent("AAPL", "vol_cap", {"from": 0.4, "to": 0.25}, START))
    assert database.ledger.signals("AAPL") == [audit]
    assert database.ledger.positions() == [Position("AAPL", 12.0, 0.3, START + timedelta(days=1))]
    assert database.ledger.risk_events("AAPL")[0].detail == {"from": 0.4, "to": 0.25}


def test_the_embedded_document_store_upserts_by_stable_id(database: SqlDatabase) -> None:
    doc = Document("n1", "news", "yahoo", ("AAPL", "MSFT"), START, "headline", url="https://x.test/1")
    assert database.documents.write_documents([doc]).inserted == 1
    assert database.documents.write_documents([doc]).unchanged == 1
    assert database.documents.write_documents([replace(doc, symbols=("AAPL",))]).updated == 1
    assert database.documents.read_documents("news", "AAPL") == [replace(doc, symbols=("AAPL",))]
    assert database.documents.read_documents("news", "MSFT") == []
