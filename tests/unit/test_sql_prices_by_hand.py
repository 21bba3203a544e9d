"""The SQL price store against values worked out by hand (issue 25's mutation pass), on an in-memory SQLite store.

Every function of ``signal_engine/adapters/sql/prices.py`` is pinned here in about a second, so its mutants die
without the MariaDB round trips of tests/integration/test_storage_sql.py (which runs the same store on both
databases). Prices are binary fractions, so adjusted prices and relative differences are exact; the store's clock
is set by the tests, so ``recorded_at`` and ``updated_at`` are known.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql import prices, schema
from signal_engine.adapters.sql.migrations import migrate
from signal_engine.adapters.sql.prices import Disagreement, SqlPriceStore
from signal_engine.errors import InputError
from signal_engine.storage.records import Bar, CorporateAction, Restatement, WriteResult

START = datetime(2024, 1, 2)
FIRST_WRITE = datetime(2024, 2, 1, 9, 30)
SECOND_WRITE = datetime(2024, 2, 2, 9, 30)
THIRD_WRITE = datetime(2024, 2, 3, 9, 30)


def day(n: int) -> datetime:
    return START + timedelta(days=n)


def bar(n: int = 0, source: str = "yahoo", symbol: str = "AAPL", timeframe: str = "1d", **changes: object) -> Bar:
    """Day ``n``: open 8+n, high 10+n, low 6+n, close 9+n, volume 1000+n, no adjusted close."""
    made = Bar(symbol, timeframe, day(n), 8.0 + n, 10.0 + n, 6.0 + n, 9.0 + n, 1000.0 + n, None, source)
    return replace(made, **changes)  # type: ignore[arg-type]


class Clock:
    """The store's ``utc_now``, set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = FIRST_WRITE
        monkeypatch.setattr(prices, "utc_now", lambda: self.now)


def _reverse_unordered_selects(connection: Any, _record: Any) -> None:
    """SQLite returns rows in the reverse of its scan order where a query has no ORDER BY: a read that relies on
    the primary key's order instead of asking for one shows."""
    connection.execute("PRAGMA reverse_unordered_selects = ON")


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    created = sa.create_engine("sqlite://")
    sa.event.listen(created, "connect", _reverse_unordered_selects)
    migrate(created)
    yield created
    created.dispose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def store(engine: sa.Engine, clock: Clock) -> SqlPriceStore:
    return SqlPriceStore(engine)


def stored_rows(engine: sa.Engine) -> list[dict[str, object]]:
    """The bars table as it is, read without the store."""
    table = schema.bars
    with engine.connect() as connection:
        query = sa.select(table).order_by(table.c.symbol, table.c.timeframe, table.c.source, table.c.timestamp)
        return [dict(row) for row in connection.execute(query).mappings()]


def row_of(made: Bar, updated_at: datetime) -> dict[str, object]:
    return {"symbol": made.symbol, "timeframe": made.timeframe, "timestamp": made.timestamp, "source": made.source,
            "open": made.open, "high": made.high, "low": made.low, "close": made.close, "volume": made.volume,
            "adj_close": made.adj_close, "updated_at": updated_at}


def frame(rows: dict[datetime, tuple[float, ...]], volume: bool = True) -> pd.DataFrame:
    """The expected read: {timestamp: (open, high, low, close[, volume])}."""
    columns = ["open", "high", "low", "close", *(["volume"] if volume else [])]
    index = pd.DatetimeIndex(list(rows), name="timestamp")
    return pd.DataFrame([list(values) for values in rows.values()], index=index, columns=columns, dtype=float)


# --- writes: inserts, idempotent re-writes, restatements -------------------------------------------------------


def test_new_bars_are_inserted_value_for_value(engine: sa.Engine, store: SqlPriceStore) -> None:
    written = [bar(2), bar(0, adj_close=4.5), bar(1, volume=None)]
    assert store.write_bars(written) == WriteResult(inserted=3, updated=0, unchanged=0, disagreements=0)
    assert stored_rows(engine) == [row_of(bar(0, adj_close=4.5), FIRST_WRITE), row_of(bar(1, volume=None), FIRST_WRITE),
                                   row_of(bar(2), FIRST_WRITE)]
    assert store.restatements("AAPL", "1d") == []


def test_writing_the_same_bars_again_changes_nothing(engine: sa.Engine, store: SqlPriceStore, clock: Clock) -> None:
    written = [bar(0), bar(1, adj_close=5.0, volume=None)]
    store.write_bars(written)
    clock.now = SECOND_WRITE
    assert store.write_bars(written) == WriteResult(inserted=0, updated=0, unchanged=2, disagreements=0)
    assert [row["updated_at"] for row in stored_rows(engine)] == [FIRST_WRITE, FIRST_WRITE]  # not even rewritten
    assert store.restatements("AAPL", "1d") == []


def test_a_difference_below_the_relative_tolerance_is_no_restatement(store: SqlPriceStore) -> None:
    store.write_bars([bar(0)])
    within = bar(0, close=9.0 * (1 + 2.0**-45))  # 2.8e-14 relative: float noise
    assert store.write_bars([within]) == WriteResult(unchanged=1)
    beyond = bar(0, close=9.0 * (1 + 2.0**-30))  # 9.3e-10 relative: a real change
    assert store.write_bars([beyond]) == WriteResult(updated=1)


RESTATED = bar(0, volume=1000.0, adj_close=4.5)


@pytest.mark.parametrize(("field", "after"), [
    ("open", 8.5), ("high", 10.5), ("low", 5.5), ("close", 9.5), ("volume", 1500.0), ("adj_close", 4.25),
    ("volume", None), ("adj_close", None),
])
def test_a_restatement_of_each_column_is_written_recorded_and_counted(
        engine: sa.Engine, store: SqlPriceStore, clock: Clock, field: str, after: float | None) -> None:
    others = [bar(1), bar(2)]
    store.write_bars([RESTATED, *others])
    restated = replace(RESTATED, **{field: after})  # type: ignore[arg-type]
    clock.now = SECOND_WRITE
    result = store.write_bars([*others, restated])
    assert result == WriteResult(inserted=0, updated=1, unchanged=2, disagreements=0)
    assert store.restatements("AAPL", "1d") == [Restatement(before=RESTATED, after=restated, recorded_at=SECOND_WRITE)]
    assert stored_rows(engine) == [row_of(restated, SECOND_WRITE), row_of(bar(1), FIRST_WRITE),
                                   row_of(bar(2), FIRST_WRITE)]


@pytest.mark.parametrize("field", ["volume", "adj_close"])
def test_a_value_arriving_where_there_was_none_is_a_restatement(store: SqlPriceStore, field: str) -> None:
    before = replace(bar(0), **{field: None})  # type: ignore[arg-type]
    store.write_bars([before])
    after = replace(before, **{field: 4.0})  # type: ignore[arg-type]
    assert store.write_bars([after]) == WriteResult(updated=1)
    (recorded,) = store.restatements("AAPL", "1d")
    assert (getattr(recorded.before, field), getattr(recorded.after, field)) == (None, 4.0)


def test_restatements_are_listed_oldest_first_per_symbol_and_timeframe(store: SqlPriceStore, clock: Clock) -> None:
    versions = [bar(0), bar(0, close=9.5), bar(0, close=9.25)]
    hourly = [bar(0, timeframe="1h"), bar(0, timeframe="1h", close=1.5)]
    other = [bar(0, symbol="MSFT"), bar(0, symbol="MSFT", open=1.5)]
    for now, batch in zip((FIRST_WRITE, SECOND_WRITE, THIRD_WRITE), (
            [versions[0], hourly[0], other[0]], [versions[1], hourly[1], other[1]], [versions[2]]), strict=True):
        clock.now = now
        store.write_bars(batch)
    assert store.restatements("AAPL", "1d") == [Restatement(versions[0], versions[1], SECOND_WRITE),
                                                Restatement(versions[1], versions[2], THIRD_WRITE)]
    assert store.restatements("AAPL", "1h") == [Restatement(hourly[0], hourly[1], SECOND_WRITE)]
    assert store.restatements("MSFT", "1d") == [Restatement(other[0], other[1], SECOND_WRITE)]
    assert store.restatements("MSFT", "1h") == []


def test_restatements_are_listed_in_the_order_recorded_not_by_bar_time(store: SqlPriceStore, clock: Clock) -> None:
    store.write_bars([bar(0), bar(1)])
    clock.now = SECOND_WRITE
    store.write_bars([bar(1, close=1.0)])
    clock.now = THIRD_WRITE
    store.write_bars([bar(0, close=2.0)])
    assert store.restatements("AAPL", "1d") == [Restatement(bar(1), bar(1, close=1.0), SECOND_WRITE),
                                                Restatement(bar(0), bar(0, close=2.0), THIRD_WRITE)]


def test_the_last_of_duplicate_keys_in_a_batch_wins(engine: sa.Engine, store: SqlPriceStore) -> None:
    assert store.write_bars([bar(0, close=9.5), bar(0, close=9.25)]) == WriteResult(inserted=1)
    assert stored_rows(engine) == [row_of(bar(0, close=9.25), FIRST_WRITE)]


def test_timestamps_are_stored_as_naive_utc_whole_seconds(engine: sa.Engine, store: SqlPriceStore) -> None:
    new_york = timezone(timedelta(hours=-5))
    aware = bar(0, timestamp=datetime(2024, 1, 2, 9, 30, 0, 250000, tzinfo=new_york))
    naive = bar(0, timestamp=datetime(2024, 1, 2, 14, 30), close=9.5)  # the same time: the same key, last wins
    assert store.write_bars([aware, naive]) == WriteResult(inserted=1)
    (row,) = stored_rows(engine)
    assert (row["timestamp"], row["close"]) == (datetime(2024, 1, 2, 14, 30), 9.5)
    assert store.write_bars([aware]) == WriteResult(updated=1)  # the same key again, at close 9.0
    (recorded,) = store.restatements("AAPL", "1d")
    assert recorded.after == bar(0, timestamp=datetime(2024, 1, 2, 14, 30))


def test_symbols_timeframes_and_sources_are_separate_keys(engine: sa.Engine, store: SqlPriceStore) -> None:
    batch = [bar(0), bar(0, symbol="MSFT"), bar(0, timeframe="1h"), bar(0, source="nasdaq")]
    assert store.write_bars(batch) == WriteResult(inserted=4)
    assert store.write_bars(batch) == WriteResult(unchanged=4)
    assert len(stored_rows(engine)) == 4
    assert (store.count_bars(), store.count_bars("AAPL"), store.count_bars("MSFT"), store.count_bars("GOOG")) == (
        4, 3, 1, 0)


def test_a_batch_with_a_bad_bar_writes_nothing(engine: sa.Engine, store: SqlPriceStore, clock: Clock) -> None:
    store.write_bars([bar(0), bar(1)])
    clock.now = SECOND_WRITE
    with pytest.raises(sa.exc.IntegrityError):
        store.write_bars([bar(0, close=9.5), bar(2), bar(3, close=None)])  # no close: NOT NULL
    assert stored_rows(engine) == [row_of(bar(0), FIRST_WRITE), row_of(bar(1), FIRST_WRITE)]
    assert store.restatements("AAPL", "1d") == []


# --- reads: ordering, ranges, point in time, adjustment --------------------------------------------------------


def test_bars_are_read_in_time_order_with_the_label_of_the_store(store: SqlPriceStore) -> None:
    store.write_bars([bar(2), bar(0), bar(1), bar(0, symbol="MSFT", close=1.0), bar(0, timeframe="1h", close=2.0)])
    series = store.read_bars("AAPL", "1d")
    assert (series.symbol, series.source) == ("AAPL", "store:AAPL/1d")
    pd.testing.assert_frame_equal(series.bars, frame({
        day(0): (8.0, 10.0, 6.0, 9.0, 1000.0), day(1): (9.0, 11.0, 7.0, 10.0, 1001.0),
        day(2): (10.0, 12.0, 8.0, 11.0, 1002.0)}))
    assert store.read_bars("AAPL", "1h").bars["close"].tolist() == [2.0]
    assert store.read_bars("MSFT", "1d").bars["close"].tolist() == [1.0]


def test_bars_without_any_volume_are_read_without_the_column(store: SqlPriceStore) -> None:
    store.write_bars([bar(0, volume=None), bar(1, volume=None)])
    pd.testing.assert_frame_equal(store.read_bars("AAPL", "1d").bars, frame(
        {day(0): (8.0, 10.0, 6.0, 9.0), day(1): (9.0, 11.0, 7.0, 10.0)}, volume=False))
    store.write_bars([bar(2)])  # one bar with a volume: the column, NaN where none is stored
    assert store.read_bars("AAPL", "1d").bars["volume"].tolist() == pytest.approx([float("nan")] * 2 + [1002.0],
                                                                                  nan_ok=True)


def test_start_and_end_are_inclusive_and_as_of_cuts_like_end(store: SqlPriceStore) -> None:
    store.write_bars([bar(n) for n in range(5)])

    def days(**limits: datetime) -> list[datetime]:
        return list(store.read_bars("AAPL", "1d", **limits).bars.index)  # type: ignore[arg-type]

    assert days(start=day(1), end=day(3)) == [day(1), day(2), day(3)]
    assert days(end=day(3), as_of=day(1)) == [day(0), day(1)]  # the earlier of end and as_of
    assert days(end=day(1), as_of=day(3)) == [day(0), day(1)]
    assert days(as_of=day(2) + timedelta(hours=12)) == [day(0), day(1), day(2)]
    assert days(start=day(4)) == [day(4)]
    new_york = timezone(timedelta(hours=-5))
    assert days(start=datetime(2024, 1, 3, 19, tzinfo=new_york),  # day 2 at 00:00 UTC
                end=datetime(2024, 1, 4, 19, tzinfo=new_york)) == [day(2), day(3)]
    assert days(as_of=datetime(2024, 1, 3, 19, tzinfo=new_york)) == [day(0), day(1), day(2)]


def test_reading_nothing_stored_names_the_store_and_what_is_expected(store: SqlPriceStore) -> None:
    store.write_bars([bar(3), bar(4), bar(0, symbol="MSFT", timeframe="1h")])
    nothing = ("store:{}: no bars stored for this symbol and timeframe; expected `signal-engine ingest` or "
               "`signal-engine collect` to have stored some")
    for symbol, timeframe, limits in [("MSFT", "1d", {}), ("AAPL", "1h", {}), ("GOOG", "1d", {}),
                                      ("AAPL", "1d", {"end": day(2)}), ("AAPL", "1d", {"as_of": day(2)})]:
        with pytest.raises(InputError) as raised:
            store.read_bars(symbol, timeframe, **limits)  # type: ignore[arg-type]
        assert str(raised.value) == nothing.format(f"{symbol}/{timeframe}")
    with pytest.raises(InputError) as raised:
        store.read_bars("AAPL", "1d", start=day(5))
    assert str(raised.value) == "store:AAPL/1d: no bars stored from 2024-01-07 00:00:00; expected an earlier --start"


def split(ex_day: int, ratio: float, known_at: datetime = START, source: str = "yahoo") -> CorporateAction:
    return CorporateAction("AAPL", "split", day(ex_day).date(), ratio, source, known_at)


def dividend(ex_day: int, cash: float, known_at: datetime = START, source: str = "yahoo") -> CorporateAction:
    return CorporateAction("AAPL", "dividend", day(ex_day).date(), cash, source, known_at)


def test_splits_and_dividends_are_applied_on_read(store: SqlPriceStore) -> None:
    """Raw closes 9, 10, 11, 12; a dividend of 2.5 going ex on day 2 (the close before it 10: factor 0.75) and a
    2:1 split going ex on day 3 (prices before it halved, volume doubled; the dividend leaves volume alone)."""
    store.write_bars([bar(n) for n in range(4)])
    store.write_corporate_actions([dividend(2, 2.5), split(3, 2.0)])
    pd.testing.assert_frame_equal(store.read_bars("AAPL", "1d").bars, frame({
        day(0): (8 * 0.375, 10 * 0.375, 6 * 0.375, 9 * 0.375, 2000.0),
        day(1): (9 * 0.375, 11 * 0.375, 7 * 0.375, 10 * 0.375, 2002.0),
        day(2): (5.0, 6.0, 4.0, 5.5, 2004.0),
        day(3): (11.0, 13.0, 9.0, 12.0, 1003.0)}))


def test_a_stored_adjusted_close_overrides_the_actions(store: SqlPriceStore) -> None:
    """Day 0 carries its own adjusted close (a quarter of its close): its prices take that factor and its volume
    stays; day 1 has none, so the 2:1 split of day 2 halves its prices and doubles its volume."""
    store.write_bars([bar(0, adj_close=2.25), bar(1), bar(2)])
    store.write_corporate_actions([split(2, 2.0)])
    pd.testing.assert_frame_equal(store.read_bars("AAPL", "1d").bars, frame({
        day(0): (2.0, 2.5, 1.5, 2.25, 1000.0),
        day(1): (4.5, 5.5, 3.5, 5.0, 2002.0),
        day(2): (10.0, 12.0, 8.0, 11.0, 1002.0)}))


def test_a_read_as_of_a_time_applies_only_the_actions_known_then(store: SqlPriceStore) -> None:
    """A 2:1 split going ex on day 2 that the source reported at noon on day 3."""
    store.write_bars([bar(n) for n in range(5)])
    store.write_corporate_actions([split(2, 2.0, known_at=day(3) + timedelta(hours=12))])
    before = store.read_bars("AAPL", "1d", as_of=day(3)).bars
    assert before["close"].tolist() == [9.0, 10.0, 11.0, 12.0]  # raw: as it was read then
    assert before["volume"].tolist() == [1000.0, 1001.0, 1002.0, 1003.0]
    after = store.read_bars("AAPL", "1d", as_of=day(3) + timedelta(hours=12)).bars
    assert after["close"].tolist() == [4.5, 5.0, 11.0, 12.0]
    assert after["volume"].tolist() == [2000.0, 2002.0, 1002.0, 1003.0]
    new_york = timezone(timedelta(hours=-5))
    aware = store.read_bars("AAPL", "1d", as_of=datetime(2024, 1, 5, 6, 59, tzinfo=new_york)).bars  # 11:59 UTC
    assert aware["close"].tolist() == [9.0, 10.0, 11.0, 12.0]
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [4.5, 5.0, 11.0, 12.0, 13.0]


def test_the_actions_applied_are_the_read_sources_own(store: SqlPriceStore) -> None:
    store.write_bars([bar(0), bar(1), bar(0, source="nasdaq"), bar(1, source="nasdaq")])
    store.write_corporate_actions([split(1, 2.0, source="nasdaq")])
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [9.0, 10.0]
    assert store.read_bars("AAPL", "1d", source="nasdaq").bars["close"].tolist() == [4.5, 10.0]


# --- sources --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sources", "primary"), [
    (["zeta", "nasdaq", "alpha"], "nasdaq"),  # a known source before the alphabet
    (["nasdaq", "yahoo"], "yahoo"),           # yahoo before nasdaq
    (["zeta", "beta"], "beta"),               # else alphabetically first
    (["zeta"], "zeta"),
])
def test_the_primary_source_is_yahoo_then_nasdaq_then_the_first_by_name(
        store: SqlPriceStore, sources: list[str], primary: str) -> None:
    store.write_bars([bar(0, source=name) for name in sources])
    store.write_bars([bar(0, symbol="MSFT", source="aaa"), bar(0, timeframe="1h", source="aaa")])
    assert store.primary_source("AAPL", "1d") == primary
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [9.0]
    assert store.primary_source("AAPL", "1h") == "aaa"
    assert store.primary_source("GOOG", "1d") is None


def test_a_configured_primary_source_is_read_and_others_only_on_request(engine: sa.Engine, clock: Clock) -> None:
    store = SqlPriceStore(engine, primary_sources={"AAPL": "nasdaq"})
    store.write_bars([bar(0), bar(0, source="nasdaq", close=9.25), bar(0, symbol="MSFT", close=1.0),
                      bar(0, symbol="MSFT", source="nasdaq", close=1.25)])
    assert (store.primary_source("AAPL", "1d"), store.primary_source("MSFT", "1d")) == ("nasdaq", "yahoo")
    assert store.primary_source("AAPL", "1h") == "nasdaq"  # configured, whether stored or not
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [9.25]
    assert store.read_bars("AAPL", "1d", source="yahoo").bars["close"].tolist() == [9.0]
    assert store.read_bars("MSFT", "1d").bars["close"].tolist() == [1.0]
    assert SqlPriceStore(engine).primary_source("AAPL", "1d") == "yahoo"  # none configured


# --- disagreements between sources -----------------------------------------------------------------------------


def test_a_disagreement_beyond_the_default_tolerance_is_recorded_both_ways(store: SqlPriceStore) -> None:
    """Default tolerance 0.5 %: the close 129 against 128 is 1/128 = 0.78 % higher (recorded), the high 127
    against 128 is 1/128 lower (recorded), the open 128.5 against 128 is 0.39 % (not)."""
    store.write_bars([bar(0, open=128.0, high=128.0, close=128.0), bar(1)])
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [128.0, 10.0]
    nasdaq = bar(0, source="nasdaq", open=128.5, high=127.0, close=129.0)
    assert store.write_bars([nasdaq, bar(1, source="nasdaq")]) == WriteResult(inserted=2, disagreements=1)
    assert store.disagreements("AAPL", "1d") == [
        Disagreement("AAPL", "1d", day(0), "nasdaq", "yahoo", "close", 129.0, 128.0, 1 / 128, FIRST_WRITE),
        Disagreement("AAPL", "1d", day(0), "nasdaq", "yahoo", "high", 127.0, 128.0, 1 / 128, FIRST_WRITE),
        Disagreement("AAPL", "1d", day(0), "yahoo", "nasdaq", "close", 128.0, 129.0, 1 / 128, FIRST_WRITE),
        Disagreement("AAPL", "1d", day(0), "yahoo", "nasdaq", "high", 128.0, 127.0, 1 / 128, FIRST_WRITE)]
    assert store.read_bars("AAPL", "1d").bars["close"].tolist() == [128.0, 10.0]  # never merged
    assert store.write_bars([nasdaq]) == WriteResult(unchanged=1)  # an unchanged bar is not compared again
    assert len(store.disagreements("AAPL", "1d")) == 4
    assert store.disagreements("AAPL", "1h") == [] and store.disagreements("MSFT", "1d") == []


def test_the_tolerance_is_strict_and_relative_to_the_other_sources_value(engine: sa.Engine, clock: Clock) -> None:
    store = SqlPriceStore(engine, tolerance=0.25)
    store.write_bars([bar(0, close=128.0), bar(1, close=128.0), bar(2, close=128.0)])
    at_limit, beyond, below = bar(0, close=160.0), bar(1, close=161.0), bar(2, close=95.0)  # +25 %, +25.8 %, -25.8 %
    result = store.write_bars([replace(b, source="nasdaq") for b in (at_limit, beyond, below)])
    assert result == WriteResult(inserted=3, disagreements=2)
    recorded = store.disagreements("AAPL", "1d")
    assert [(d.timestamp, d.source, d.value, d.relative_difference) for d in recorded] == [
        (day(1), "nasdaq", 161.0, 33 / 128), (day(1), "yahoo", 128.0, 33 / 128),
        (day(2), "nasdaq", 95.0, 33 / 128), (day(2), "yahoo", 128.0, 33 / 128)]


def test_a_zero_price_is_compared_against_a_floor_not_divided_by(engine: sa.Engine, clock: Clock) -> None:
    store = SqlPriceStore(engine, tolerance=0.5)
    store.write_bars([bar(0, low=0.0), bar(1, low=0.0)])
    result = store.write_bars([bar(0, source="nasdaq", low=2.0**-40), bar(1, source="nasdaq", low=2.0**-41)])
    assert result == WriteResult(inserted=2, disagreements=1)  # 0.91 against the floor 1e-12, then 0.45
    (first, _) = store.disagreements("AAPL", "1d")
    assert (first.timestamp, first.field, first.relative_difference) == (day(0), "low", 2.0**-40 / 1e-12)


def test_sources_written_together_and_several_others_each_count_one_bar(store: SqlPriceStore) -> None:
    """In one batch each bar is compared with the other: the last written one's difference is kept (1/128
    relative to the first's close of 128). A third source disagreeing on the same bar still counts one bar."""
    assert store.write_bars([bar(0, close=128.0), bar(0, source="nasdaq", close=129.0)]) == WriteResult(
        inserted=2, disagreements=1)
    assert [(d.source, d.relative_difference) for d in store.disagreements("AAPL", "1d")] == [
        ("nasdaq", 1 / 128), ("yahoo", 1 / 128)]
    assert store.write_bars([bar(0, source="alpha", close=127.0)]) == WriteResult(inserted=1, disagreements=1)
    assert sorted((d.source, d.other_source) for d in store.disagreements("AAPL", "1d")) == [
        ("alpha", "nasdaq"), ("alpha", "yahoo"), ("nasdaq", "alpha"), ("nasdaq", "yahoo"), ("yahoo", "alpha"),
        ("yahoo", "nasdaq")]


def test_disagreements_are_listed_by_bar_time_source_and_field(store: SqlPriceStore) -> None:
    """On day 0 Nasdaq differs from Yahoo in its close and from Alpha in its high; on day 1 Zeta differs from Alpha
    in its close and from Yahoo in its high: by field, close first, whichever other source sorts first."""
    store.write_bars([bar(0), bar(0, source="alpha", high=14.0, close=12.0),
                      bar(1), bar(1, source="alpha", high=15.0, close=13.0)])
    store.write_bars([bar(0, source="nasdaq", close=12.0), bar(1, source="zeta", high=15.0)])
    assert [(d.timestamp, d.source, d.other_source, d.field) for d in store.disagreements("AAPL", "1d")
            if d.source in ("nasdaq", "zeta")] == [
        (day(0), "nasdaq", "yahoo", "close"), (day(0), "nasdaq", "alpha", "high"),
        (day(1), "zeta", "alpha", "close"), (day(1), "zeta", "yahoo", "high")]


def test_a_restated_bar_is_compared_again(store: SqlPriceStore, clock: Clock) -> None:
    store.write_bars([bar(0, close=128.0), bar(0, source="nasdaq", close=128.0)])
    clock.now = SECOND_WRITE
    assert store.write_bars([bar(0, source="nasdaq", close=132.0)]) == WriteResult(updated=1, disagreements=1)
    assert [(d.value, d.other_value, d.recorded_at) for d in store.disagreements("AAPL", "1d")] == [
        (132.0, 128.0, SECOND_WRITE), (128.0, 132.0, SECOND_WRITE)]


# --- corporate actions -----------------------------------------------------------------------------------------


def test_corporate_actions_are_inserted_and_read_by_ex_date_then_kind(store: SqlPriceStore) -> None:
    actions = [split(3, 2.0), dividend(1, 0.5), dividend(3, 0.25), split(1, 4.0, source="nasdaq"),
               replace(split(1, 3.0), symbol="MSFT")]
    assert store.write_corporate_actions(actions) == WriteResult(inserted=5)
    assert store.corporate_actions("AAPL") == [dividend(1, 0.5), split(1, 4.0, source="nasdaq"), dividend(3, 0.25),
                                               split(3, 2.0)]
    assert store.corporate_actions("AAPL", source="yahoo") == [dividend(1, 0.5), dividend(3, 0.25), split(3, 2.0)]
    assert store.corporate_actions("MSFT") == [replace(split(1, 3.0), symbol="MSFT")]
    assert store.corporate_actions("GOOG") == []


def test_a_corporate_action_keeps_the_earliest_time_it_was_known(store: SqlPriceStore) -> None:
    noon = datetime(2024, 1, 5, 12)
    store.write_corporate_actions([split(3, 2.0, known_at=noon), dividend(1, 0.5, known_at=noon)])
    assert store.write_corporate_actions([split(3, 2.0, known_at=noon), dividend(1, 0.5, known_at=noon)]) == (
        WriteResult(unchanged=2))
    later, earlier = noon + timedelta(days=1), noon - timedelta(hours=1)
    assert store.write_corporate_actions([split(3, 2.0, known_at=later)]) == WriteResult(unchanged=1)
    assert store.write_corporate_actions([split(3, 2.0 * (1 + 2.0**-45), known_at=later)]) == WriteResult(
        unchanged=1)  # float noise (2.8e-14 relative) is no change
    assert store.write_corporate_actions([split(3, 2.0, known_at=earlier)]) == WriteResult(updated=1)
    assert store.corporate_actions("AAPL")[1] == split(3, 2.0, known_at=earlier)
    assert store.write_corporate_actions([dividend(1, 0.75, known_at=later)]) == WriteResult(updated=1)
    assert store.corporate_actions("AAPL")[0] == dividend(1, 0.75, known_at=noon)  # a new amount, known since noon
    tokyo = timezone(timedelta(hours=9))
    assert store.write_corporate_actions([
        dividend(1, 0.75, known_at=datetime(2024, 1, 5, 19, 0, 0, 500000, tzinfo=tokyo)),  # 10:00 UTC
        dividend(1, 0.75, known_at=datetime(2024, 1, 5, 10, 30, tzinfo=UTC))]) == WriteResult(updated=1)
    assert store.corporate_actions("AAPL")[0].known_at == datetime(2024, 1, 5, 10, 30)  # the last of the batch


def test_a_new_corporate_action_is_stored_known_at_naive_utc(store: SqlPriceStore) -> None:
    tokyo = timezone(timedelta(hours=9))
    store.write_corporate_actions([dividend(1, 0.5, known_at=datetime(2024, 1, 5, 19, 0, 0, 500000, tzinfo=tokyo))])
    assert store.corporate_actions("AAPL") == [dividend(1, 0.5, known_at=datetime(2024, 1, 5, 10))]


def test_each_action_of_a_batch_is_counted(store: SqlPriceStore) -> None:
    noon = datetime(2024, 1, 5, 12)
    store.write_corporate_actions([split(3, 2.0, known_at=noon), dividend(1, 0.5, known_at=noon)])
    assert store.write_corporate_actions([split(3, 2.0, known_at=noon), dividend(2, 0.25)]) == WriteResult(
        inserted=1, unchanged=1)  # an unchanged action does not end the batch
    assert store.corporate_actions("AAPL")[1] == dividend(2, 0.25)
    later = noon + timedelta(days=1)
    assert store.write_corporate_actions([split(3, 2.0 * (1 + 2.0**-35), known_at=later),
                                          dividend(1, 0.5 * (1 - 2.0**-35), known_at=later)]) == (
        WriteResult(updated=2))  # 2.9e-11 relative: beyond the tolerance of 1e-12
    assert store.corporate_actions("AAPL") == [dividend(1, 0.5 * (1 - 2.0**-35), known_at=noon), dividend(2, 0.25),
                                               split(3, 2.0 * (1 + 2.0**-35), known_at=noon)]
