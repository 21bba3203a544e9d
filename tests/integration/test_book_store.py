"""The live book on SQLite and MariaDB: every bar stepped through the store ends where the batch run does; a repeated
step changes nothing; a crash between computing a bar and committing it (or inside the commit) leaves the previous
state; a missed day is caught up in order; an older bar, a restated bar or a concurrent step is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymysql
import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql import books as books_module
from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.books import BookConflictError
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.orchestration import OrchestrationConfig, OrchestrationResult, orchestrate
from signal_engine.orchestration.events import EventLog
from signal_engine.orchestration.inputs import Inputs, prepare
from signal_engine.orchestration.live import SteppedBar, advance_book, bar_time_of, seed_book
from signal_engine.orchestration.state import BookStateError
from signal_engine.orchestration.step import BarInputs, StaleBarError, bar_inputs_at
from tests.fixtures.orchestration_golden import Market, real_market

BOOK = "daily"
CONFIG = OrchestrationConfig(holding_discipline=True, drawdown_start=0.01, drawdown_limit=0.04,
                             emergency_drawdown=0.08, correlation_window=30)
COSTS = {"GOOG": 7.0}
TOL = 1e-12


@pytest.fixture(scope="module")
def market(goog_csv: Path, spx_csv: Path) -> Market:
    return real_market(goog_csv, spx_csv, bars=400)  # 140 bars of decisions after the 260 bars of warm-up


@pytest.fixture(scope="module")
def inputs(market: Market) -> Inputs:
    signals, closes, volumes = market
    return prepare(signals, closes, CONFIG, volumes)


@pytest.fixture(scope="module")
def bars(inputs: Inputs) -> list[BarInputs]:
    return [bar_inputs_at(inputs, i) for i in range(len(inputs.timeline))]


@pytest.fixture(scope="module")
def batch(market: Market) -> OrchestrationResult:
    signals, closes, volumes = market
    return orchestrate(signals, closes, CONFIG, 252.0, volumes=volumes, cost_bps=COSTS)


def advance(database: SqlDatabase, bars: list[BarInputs], inputs: Inputs, book: str = BOOK) -> list[SteppedBar]:
    return advance_book(database.books, book, bars, CONFIG, 252.0, inputs.specs, COSTS)


def counts(database: SqlDatabase) -> dict[str, int]:
    with database.engine.connect() as connection:
        return {t.name: int(connection.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                for t in (schema.book_states, schema.book_positions, schema.book_events)}


def latest_json(database: SqlDatabase, book: str = BOOK) -> str | None:
    latest = database.books.latest(book)
    return None if latest is None else latest[1].to_json()


def test_every_bar_stepped_through_the_store_gives_the_batch_book(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs, batch: OrchestrationResult
) -> None:
    for bar in bars:  # one run per bar, as the live book does after each collection
        (stepped,) = advance(database, [bar], inputs)
        assert not stepped.replayed
    latest = database.books.latest(BOOK)
    assert latest is not None and latest[0] == bar_time_of(bars[-1].timestamp)
    np.testing.assert_allclose(latest[1].positions, batch.positions.iloc[-1].to_numpy(), rtol=0, atol=TOL)
    for i in (0, 1, 57, len(bars) - 1):
        when = batch.positions.index[i]
        stored = {p.symbol: p for p in database.books.positions(BOOK, bar_time_of(when))}
        for symbol in batch.symbols:
            assert stored[symbol].position == pytest.approx(batch.positions.loc[when, symbol], abs=TOL)
            expected = batch.contributions[symbol].loc[when]
            assert stored[symbol].contributions == pytest.approx(expected.to_dict(), abs=TOL)
    log = EventLog()
    for event in database.books.events(BOOK):
        log.record(event)
    assert len(log) == len(batch.events) > 20
    pd.testing.assert_frame_equal(log.to_frame(), batch.events, rtol=0, atol=TOL)
    assert counts(database) == {"book_states": len(bars), "book_positions": 2 * len(bars),
                                "book_events": len(batch.events)}


def test_a_repeated_step_changes_nothing_and_returns_the_stored_result(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs
) -> None:
    first = advance(database, bars[:30], inputs)
    before, stored = counts(database), latest_json(database)
    again = advance(database, bars[20:30], inputs)
    assert all(s.replayed for s in again)
    assert counts(database) == before and latest_json(database) == stored
    for original, replayed in zip(first[20:30], again, strict=True):
        assert replayed.bar_time == original.bar_time
        assert replayed.state.to_json() == original.state.to_json()
        assert replayed.positions == original.positions
        assert replayed.events == original.events
    (last,) = advance(database, bars[29:30], inputs)  # the latest bar once more
    assert last.replayed and counts(database) == before and latest_json(database) == stored
    mixed = advance(database, bars[28:32], inputs)  # two stepped bars, then two new ones
    assert [s.replayed for s in mixed] == [True, True, False, False]
    assert counts(database)["book_states"] == 32


def test_a_restated_bar_already_stepped_is_refused(database: SqlDatabase, bars: list[BarInputs],
                                                   inputs: Inputs) -> None:
    advance(database, bars[:10], inputs)
    stored = latest_json(database)
    restated = replace(bars[8], asset_returns=bars[8].asset_returns + 0.01)
    with pytest.raises(BookStateError, match=f"bar {bar_time_of(bars[8].timestamp)} was already stepped with other"):
        advance(database, [restated], inputs)
    assert latest_json(database) == stored


def test_an_older_bar_that_was_never_stepped_is_refused_naming_both_bars(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs
) -> None:
    advance(database, bars[:5] + bars[6:9], inputs)  # bar 5 was never seen
    before, stored = counts(database), latest_json(database)
    missed, latest = bar_time_of(bars[5].timestamp), bar_time_of(bars[8].timestamp)
    with pytest.raises(StaleBarError, match=f"bar {missed} is older than the book's latest bar {latest} and was never"):
        advance(database, [bars[5]], inputs)
    assert counts(database) == before and latest_json(database) == stored


def test_a_missed_day_is_caught_up_in_order_and_ends_where_stepping_every_day_does(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs
) -> None:
    for bar in bars[:40]:
        advance(database, [bar], inputs, book="every_day")
    advance(database, bars[:25], inputs, book="missed")
    # bars 25..27 were missed (no run after their collection); the next run is given them with bar 28 and beyond
    caught_up = advance(database, bars[25:40], inputs, book="missed")
    assert [s.bar_time for s in caught_up] == [bar_time_of(b.timestamp) for b in bars[25:40]]
    assert latest_json(database, "missed") == latest_json(database, "every_day")
    for bar in bars[24:29]:
        when = bar_time_of(bar.timestamp)
        every, missed = database.books.stepped("every_day", when), database.books.stepped("missed", when)
        assert every is not None and missed is not None and every[0].to_json() == missed[0].to_json()
        assert database.books.positions("missed", when) == [replace(p, book="missed") for p in
                                                            database.books.positions("every_day", when)]
    assert [e.timestamp for e in database.books.events("missed")] == [
        e.timestamp for e in database.books.events("every_day")]
    with pytest.raises(BookStateError, match="increasing time order"):
        advance(database, [bars[41], bars[40]], inputs, book="missed")


def test_a_crash_between_computing_a_bar_and_committing_it_leaves_the_previous_state(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    advance(database, bars[:12], inputs)
    before, stored = counts(database), latest_json(database)
    positions = database.books.positions(BOOK)
    computed: list[str] = []

    def crash(book: str, bar_time: Any, state: Any, *args: Any, **kwargs: Any) -> None:
        computed.append(state.to_json())  # the new state was computed ...
        raise RuntimeError("process killed before the commit")  # ... and never committed

    monkeypatch.setattr(database.books, "commit_step", crash)
    with pytest.raises(RuntimeError, match="process killed"):
        advance(database, bars[12:15], inputs)
    monkeypatch.undo()
    assert len(computed) == 1 and computed[0] != stored
    assert counts(database) == before and latest_json(database) == stored
    assert database.books.positions(BOOK) == positions
    resumed = advance(database, bars[12:15], inputs)  # the next run steps the bar again, and the rest
    assert [s.replayed for s in resumed] == [False] * 3 and resumed[0].state.to_json() == computed[0]


def test_a_failure_inside_the_commit_transaction_writes_nothing_of_that_bar(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    advance(database, bars[:12], inputs)
    before, stored = counts(database), latest_json(database)
    positions = database.books.positions(BOOK)
    written = books_module._insert_positions

    def positions_then_crash(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        written(connection, rows)  # the state and positions rows are written in the transaction ...
        raise RuntimeError("crash before the events")  # ... which then fails

    monkeypatch.setattr(books_module, "_insert_positions", positions_then_crash)
    with pytest.raises(RuntimeError, match="crash before the events"):
        advance(database, bars[12:13], inputs)
    monkeypatch.undo()
    assert counts(database) == before and latest_json(database) == stored
    assert database.books.positions(BOOK) == positions
    assert not advance(database, bars[12:13], inputs)[0].replayed


def test_a_step_that_does_not_follow_the_latest_stored_bar_is_refused(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs
) -> None:
    (first,) = advance(database, bars[:1], inputs)
    (second,) = advance(database, bars[1:2], inputs)
    before = counts(database)
    # a second process stepped bar 1 from bar 0 too and commits after the first process did
    with pytest.raises(BookConflictError, match=f"stepped from {first.bar_time}, but the book's latest stored bar is "
                                                f"{second.bar_time}"):
        database.books.commit_step(BOOK, bar_time_of(bars[2].timestamp), second.state, second.positions, (),
                                   previous=first.bar_time, inputs_digest="x")
    assert counts(database) == before


def test_a_book_refuses_other_settings(database: SqlDatabase, bars: list[BarInputs], inputs: Inputs) -> None:
    advance(database, bars[:3], inputs)
    with pytest.raises(BookStateError, match=r"config\.correlation_window=30, given 63"):
        advance_book(database.books, BOOK, bars[3:4], replace(CONFIG, correlation_window=63), 252.0, inputs.specs,
                     COSTS)
    assert database.books.latest("unknown") is None and database.books.positions("unknown") == []


class KillOnInsert:
    """Kills the writing connection from a second session when an INSERT into ``table`` starts."""

    def __init__(self, database: SqlDatabase, table: str, times: int) -> None:
        self.url, self.table, self.times_left = database.engine.url, table, times
        sa.event.listen(database.engine, "before_cursor_execute", self)

    def __call__(self, connection: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(f"INSERT INTO {self.table}") and self.times_left:
            self.times_left -= 1
            thread = connection.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
            admin = pymysql.connect(host=self.url.host, port=self.url.port or 3306, user=self.url.username,
                                    password=self.url.password, database=self.url.database)
            try:
                with admin.cursor() as kill:
                    kill.execute(f"KILL CONNECTION {int(thread)}")
            finally:
                admin.close()


@pytest.fixture
def mariadb(mariadb_database: SqlDatabase) -> SqlDatabase:
    return mariadb_database


def test_mariadb_killing_the_connection_mid_commit_keeps_the_previous_state(
    mariadb: SqlDatabase, bars: list[BarInputs], inputs: Inputs
) -> None:
    advance(mariadb, bars[:6], inputs)
    before, stored = counts(mariadb), latest_json(mariadb)
    killer = KillOnInsert(mariadb, "book_positions", times=2)  # the state row is in; both attempts die next
    with pytest.raises(sa.exc.OperationalError):
        advance(mariadb, bars[6:7], inputs)
    assert killer.times_left == 0
    assert counts(mariadb) == before and latest_json(mariadb) == stored
    (stepped,) = advance(mariadb, bars[6:7], inputs)
    assert not stepped.replayed and counts(mariadb)["book_states"] == 7


def test_a_book_seeded_with_the_batch_state_continues_as_if_every_bar_had_been_stepped(
    database: SqlDatabase, bars: list[BarInputs], inputs: Inputs, market: Market
) -> None:
    signals, closes, volumes = market
    cut = len(bars) - 5
    last = bars[cut - 1].timestamp

    def upto(series: Any) -> Any:
        return {k: v.loc[v.index <= last] for k, v in series.items()}

    head = orchestrate({s: upto(models) for s, models in signals.items()}, upto(closes), CONFIG, 252.0,
                       volumes=None if volumes is None else upto(volumes), cost_bps=COSTS)
    assert head.final_state is not None and head.final_state.bar_time == bars[cut - 1].timestamp
    assert seed_book(database.books, BOOK, head.final_state, head.last_events)
    assert not seed_book(database.books, BOOK, head.final_state, head.last_events)  # the same state: nothing new
    stored_events = database.books.events(BOOK)
    assert [e.kind for e in stored_events] == [e.kind for e in head.last_events]
    advance(database, bars[cut:], inputs)
    reference = SqlDatabase.connect("sqlite://")
    try:
        advance(reference, bars, inputs)
        assert latest_json(database) == latest_json(reference)
    finally:
        reference.close()
    with pytest.raises(BookStateError, match="never overwritten"):
        seed_book(database.books, BOOK, head.final_state)


def test_the_books_stored_and_what_the_api_reads_of_them(database: SqlDatabase, bars: list[BarInputs],
                                                         inputs: Inputs) -> None:
    assert database.books.books() == [] and database.books.span(BOOK) is None
    advance(database, bars[:6], inputs, book="hourly")
    advance(database, bars[:40], inputs)
    assert database.books.books() == ["daily", "hourly"]
    times = [bar_time_of(b.timestamp) for b in bars[:40]]
    span = database.books.span(BOOK)
    assert span is not None and (span.first, span.latest, span.bars) == (times[0], times[-1], 40)
    assert database.books.bar_times(BOOK) == times
    assert database.books.bar_times(BOOK, until=times[9] + (times[10] - times[9]) / 2, last=3) == times[7:10]
    latest = database.books.latest(BOOK)
    assert latest is not None and database.books.state_document(BOOK, times[-1]) == json.loads(latest[1].to_json())
    assert database.books.state_document(BOOK, times[-1] + (times[-1] - times[-2])) is None
    rows = database.books.event_rows(BOOK, since=times[20], until=times[30])
    expected = [e for e in database.books.events(BOOK) if times[20] < bar_time_of(e.timestamp) <= times[30]]
    assert len(rows) == len(expected) > 0
    for row, event in zip(rows, expected, strict=True):
        assert (row.bar_time, row.component, row.kind, row.rule, row.symbol, row.model) == (
            bar_time_of(event.timestamp), event.component, event.kind, event.rule, event.symbol, event.model)
        assert json.dumps([row.value, row.threshold, row.detail]) == json.dumps(
            [event.value, event.threshold, dict(event.detail)])
