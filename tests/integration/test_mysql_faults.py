"""Faults against a real MariaDB: the server dropping the connection mid-batch, and re-runs of a window."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.engine import CHUNK_ROWS
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.bootstrap import Storage
from signal_engine.collectors import nasdaq
from signal_engine.collectors.service import CollectRequest, collect
from signal_engine.storage.records import Bar
from tests.fixtures.payloads import ok, scripted_client

BATCH = CHUNK_ROWS * 2 + 500  # three INSERT statements in one transaction


@pytest.fixture
def database(mariadb_database: SqlDatabase) -> SqlDatabase:
    return mariadb_database


class KillOnInsert:
    """Kills the writing connection from a second session when the n-th bars INSERT of a batch starts."""

    def __init__(self, database: SqlDatabase, at_statement: int, times: int) -> None:
        self.url = database.engine.url
        self.at_statement = at_statement
        self.times_left = times
        self.seen = 0
        sa.event.listen(database.engine, "before_cursor_execute", self)

    def __call__(self, connection: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("INSERT INTO bars") or self.times_left == 0:
            return
        self.seen += 1
        if self.seen % self.at_statement == 0:
            self.times_left -= 1
            self._kill(connection.connection.dbapi_connection.thread_id())  # type: ignore[union-attr]

    def _kill(self, thread_id: int) -> None:
        admin = pymysql.connect(host=self.url.host, port=self.url.port or 3306, user=self.url.username,
                                password=self.url.password, database=self.url.database)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"KILL CONNECTION {int(thread_id)}")
        finally:
            admin.close()


def batch(count: int = BATCH, shift: float = 0.0) -> list[Bar]:
    start = datetime(2000, 1, 3)
    return [Bar("SPX", "1d", start + timedelta(days=i), 10.0 + i + shift, 11.0 + i + shift, 9.0 + i + shift,
                10.5 + i + shift, 1000.0, None, "test") for i in range(count)]


def test_a_connection_lost_mid_batch_leaves_no_rows_and_a_retry_completes(database: SqlDatabase) -> None:
    KillOnInsert(database, at_statement=2, times=2)  # kills both attempts of the first write
    with pytest.raises(sa.exc.OperationalError):
        database.prices.write_bars(batch())
    assert database.prices.count_bars() == 0
    assert database.prices.write_bars(batch()).inserted == BATCH
    assert database.prices.count_bars() == BATCH


def test_the_store_retries_once_by_itself_after_a_dropped_connection(database: SqlDatabase) -> None:
    killer = KillOnInsert(database, at_statement=2, times=1)
    result = database.prices.write_bars(batch())
    assert killer.times_left == 0
    assert (result.inserted, database.prices.count_bars()) == (BATCH, BATCH)


def test_a_failed_restatement_batch_leaves_the_stored_bars_and_log_untouched(database: SqlDatabase) -> None:
    database.prices.write_bars(batch())
    KillOnInsert(database, at_statement=2, times=2)
    with pytest.raises(sa.exc.OperationalError):
        database.prices.write_bars(batch(shift=0.25))
    stored = database.prices.read_bars("SPX", "1d").bars
    assert stored["open"].iloc[-1] == batch()[-1].open
    assert database.prices.restatements("SPX", "1d") == []


def test_a_retried_restatement_is_recorded_once(database: SqlDatabase) -> None:
    database.prices.write_bars(batch(10))
    KillOnInsert(database, at_statement=1, times=1)
    changed = [replace(bar, close=bar.close + 0.1) for bar in batch(10)]
    assert database.prices.write_bars(changed).updated == 10
    assert len(database.prices.restatements("SPX", "1d")) == 10


def test_a_second_collection_of_the_same_window_writes_zero_new_rows(database: SqlDatabase, tmp_path: Any) -> None:
    storage = Storage(prices=database.prices, market=database.market, documents=database.documents,
                      objects=LocalFolderStore(tmp_path), audit=database.ledger, positions=database.ledger,
                      risk=database.ledger, books=database.books,
                      recent_bars=SqlRecentBars(database.engine), schema_version=database.schema_version)
    client, _ = scripted_client({"/historical": [ok("nasdaq/historical_AAPL.json")]})
    request = CollectRequest("nasdaq", "bars", ("AAPL",), date(2024, 1, 2), date(2024, 1, 5))
    first = collect(request, nasdaq.NasdaqSource(client), storage)
    second = collect(request, nasdaq.NasdaqSource(client), storage)
    assert first.written["bars"].inserted == 4
    assert (second.written["bars"].inserted, second.written["bars"].updated) == (0, 0)
    assert database.prices.count_bars() == 4
