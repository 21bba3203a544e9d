"""Two sources side by side (on SQLite and MariaDB): Nasdaq after Yahoo changes nothing the models read,
a disagreement is recorded, and a store that already holds version-4 data is upgraded without loss."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.migrations import BARS_V1, LATEST_VERSION, migrate
from signal_engine.collectors import nasdaq, yahoo
from signal_engine.storage.records import Bar
from tests.fixtures.payloads import raw
from tests.fixtures.servers import drop_all_tables
from tests.integration.conftest import store_at_version


def yahoo_bars() -> list[Bar]:
    return yahoo.parse(raw("yahoo", "bars", "yahoo/chart_daily_AAPL.json")).bars


def nasdaq_bars() -> list[Bar]:
    return nasdaq.parse(raw("nasdaq", "bars", "nasdaq/historical_AAPL.json")).bars


def test_nasdaq_after_yahoo_changes_no_bar_the_models_read(database: SqlDatabase) -> None:
    database.prices.write_bars(yahoo_bars())
    before = database.prices.read_bars("AAPL", "1d").bars
    result = database.prices.write_bars(nasdaq_bars())
    after = database.prices.read_bars("AAPL", "1d").bars
    pd.testing.assert_frame_equal(before, after)
    assert (result.inserted, result.updated) == (4, 0)  # its own series, not an overwrite
    assert database.prices.restatements("AAPL", "1d") == []
    assert database.prices.primary_source("AAPL", "1d") == "yahoo"
    nasdaq_series = database.prices.read_bars("AAPL", "1d", source="nasdaq").bars
    assert nasdaq_series["close"].iloc[0] == 185.64
    assert result.disagreements == 0 and database.prices.disagreements("AAPL", "1d") == []  # within 0.5 %


def test_a_disagreement_beyond_the_tolerance_is_recorded_never_merged(database: SqlDatabase) -> None:
    database.prices.write_bars(yahoo_bars())
    before = database.prices.read_bars("AAPL", "1d").bars
    wrong = nasdaq_bars()
    wrong[2] = replace(wrong[2], close=wrong[2].close * 1.02, high=wrong[2].high * 1.02)
    result = database.prices.write_bars(wrong)
    assert result.disagreements == 1
    recorded = database.prices.disagreements("AAPL", "1d")
    assert {(d.source, d.other_source, d.field) for d in recorded} == {
        ("nasdaq", "yahoo", "close"), ("yahoo", "nasdaq", "close"), ("nasdaq", "yahoo", "high"),
        ("yahoo", "nasdaq", "high")}
    assert all(d.timestamp == datetime(2024, 1, 4) for d in recorded)
    assert recorded[0].relative_difference == pytest.approx(0.02, rel=1e-3)
    pd.testing.assert_frame_equal(before, database.prices.read_bars("AAPL", "1d").bars)
    database.prices.write_bars(wrong)  # collecting the same again records nothing new
    assert len(database.prices.disagreements("AAPL", "1d")) == 4


def test_a_configured_primary_source_is_the_one_read(url: str, database: SqlDatabase, tmp_path: Path) -> None:
    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.errors import ConfigError

    database.prices.write_bars([*yahoo_bars(), *nasdaq_bars()])
    settings = Settings.from_env({"SIGNAL_ENGINE_DATABASE_URL": url, "SIGNAL_ENGINE_OBJECT_STORE": str(tmp_path),
                                  "SIGNAL_ENGINE_PRIMARY_SOURCES": "aapl=nasdaq"})
    storage = bootstrap(settings)
    assert storage.prices.read_bars("AAPL", "1d").bars["close"].iloc[0] == 185.64
    storage.close()
    with pytest.raises(ConfigError, match=r"SIGNAL_ENGINE_PRIMARY_SOURCES: 'AAPL=bloomberg' is not SYMBOL=SOURCE"):
        _ = Settings(primary_sources="AAPL=bloomberg").primary_source_map


def test_a_version_4_store_with_data_is_upgraded_keeping_every_bar(url: str) -> None:
    engine = store_at_version(url, 4)
    with engine.begin() as connection:
        rows = [{"symbol": b.symbol, "timeframe": b.timeframe, "timestamp": b.timestamp, "open": b.open,
                 "high": b.high, "low": b.low, "close": b.close, "volume": b.volume, "adj_close": b.adj_close,
                 "source": b.source, "updated_at": datetime(2024, 1, 6)} for b in yahoo_bars()]
        connection.execute(BARS_V1.insert(), rows)
        assert sa.inspect(connection).get_pk_constraint("bars")["constrained_columns"] == [
            "symbol", "timeframe", "timestamp"]
    assert migrate(engine) == LATEST_VERSION
    with engine.connect() as connection:
        assert sa.inspect(connection).get_pk_constraint("bars")["constrained_columns"] == [
            "symbol", "timeframe", "timestamp", "source"]
        assert sa.inspect(connection).has_table("bar_disagreements")
    engine.dispose()
    upgraded = SqlDatabase.connect(url)
    assert upgraded.prices.read_bars("AAPL", "1d").bars["close"].tolist() == [b.adj_close for b in yahoo_bars()]
    assert upgraded.prices.write_bars(nasdaq_bars()).inserted == 4
    assert upgraded.prices.count_bars("AAPL") == 8
    upgraded.close()


def test_a_rebuild_cut_off_after_the_drop_is_finished_on_the_next_run(url: str) -> None:
    if url.startswith("mysql"):
        drop_all_tables(url)
    database = SqlDatabase.connect(url)
    database.prices.write_bars(yahoo_bars())
    with database.engine.begin() as connection:  # as if the step died between DROP TABLE and RENAME
        connection.execute(sa.text("ALTER TABLE bars RENAME TO bars_v5"))
        connection.execute(schema.schema_version.delete().where(schema.schema_version.c.version >= 5))
    database.close()
    again = SqlDatabase.connect(url)
    assert again.prices.count_bars("AAPL") == 4
    again.close()
