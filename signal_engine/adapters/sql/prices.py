"""PriceStore on SQL: idempotent, transactional bar upserts that record restatements and cross-source disagreements.

Bars are keyed by (symbol, timeframe, timestamp, source): each source keeps its own series, so a second
source never overwrites the first. Readers get one source per symbol, the primary: the one named in
``primary_sources``, else the first of ``bar_reads.PRIMARY_ORDER`` that has bars, else the alphabetically first; the
others are cross-checks. A bar that differs from another source's bar at the same time by more than
``tolerance`` (relative, on open/high/low/close) is recorded in ``bar_disagreements``, never merged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from signal_engine.adapters.sql import bar_reads, schema
from signal_engine.adapters.sql.engine import chunks, existing_rows, in_transaction, key_of, upsert
from signal_engine.data.loader import PRICE_COLUMNS, PriceSeries
from signal_engine.errors import InputError
from signal_engine.storage.adjust import known, read_factors
from signal_engine.storage.records import Bar, CorporateAction, Restatement, WriteResult
from signal_engine.storage.times import naive_utc, utc_now

BAR_KEY = ("symbol", "timeframe", "timestamp", "source")
ACTION_KEY = ("symbol", "kind", "ex_date", "source")
DISAGREEMENT_KEY = ("symbol", "timeframe", "timestamp", "source", "other_source", "field")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "adj_close")
PRICE_FIELDS = ("open", "high", "low", "close")
RELATIVE_TOLERANCE = 1e-12
CROSS_SOURCE_TOLERANCE = 0.005  # 0.5 %: more than rounding to the cent and consolidated-vs-listing prints
BarKey = tuple[str, str, datetime, str]


@dataclass(frozen=True)
class Disagreement:
    """A bar of ``source`` whose ``field`` differs from ``other_source``'s bar at the same time beyond tolerance."""

    symbol: str
    timeframe: str
    timestamp: datetime
    source: str
    other_source: str
    field: str
    value: float
    other_value: float
    relative_difference: float
    recorded_at: datetime


class SqlPriceStore:
    """Bars in the ``bars`` table; changes to stored bars go to ``bar_restatements``.

    Parameters
    ----------
    engine
        A migrated SQLAlchemy engine (MySQL/MariaDB or SQLite).
    primary_sources
        The source whose bars the models read, per symbol (others are cross-checks).
    tolerance
        Relative difference between two sources' prices beyond which a disagreement is recorded.
    """

    def __init__(self, engine: sa.Engine, primary_sources: Mapping[str, str] | None = None,
                 tolerance: float = CROSS_SOURCE_TOLERANCE) -> None:
        self._engine = engine
        self._primary = dict(primary_sources or {})
        self._tolerance = tolerance

    def write_bars(self, bars: Sequence[Bar]) -> WriteResult:
        """One transaction: insert new bars, update and record restated ones (same source), skip identical ones,
        and record where another source's bar at the same time disagrees."""
        latest = {_key(bar): bar for bar in map(_normalised, bars)}
        return in_transaction(self._engine,
                              lambda connection: _write(connection, list(latest.values()), self._tolerance))

    def primary_source(self, symbol: str, timeframe: str) -> str | None:
        """The source whose bars are read for this symbol, or None when none is stored."""
        with self._engine.connect() as connection:
            return bar_reads.primary_source(connection, symbol, timeframe, self._primary)

    def read_bars(self, symbol: str, timeframe: str, start: datetime | None = None,
                  end: datetime | None = None, source: str | None = None,
                  as_of: datetime | None = None) -> PriceSeries:
        """The primary source's (or ``source``'s) bars as a PriceSeries, adjusted as known at ``as_of``.

        Bars are stored raw; the splits and dividends of that source known by ``as_of`` (all when None) are
        applied on read, so a split never leaves a cliff and a read as of an earlier time gives the history
        as it was then (bars after ``as_of`` are left out). A bar stored with its own adjusted close (CSV
        ingest) keeps that adjustment. Bars of other sources are never mixed in.
        """
        table = schema.bars
        chosen = source or self.primary_source(symbol, timeframe)
        query = (sa.select(table.c.timestamp, *(table.c[name] for name in VALUE_COLUMNS))
                 .where(table.c.symbol == symbol, table.c.timeframe == timeframe, table.c.source == chosen)
                 .order_by(table.c.timestamp))
        last = min((naive_utc(t) for t in (end, as_of) if t is not None), default=None)
        if last is not None:
            query = query.where(table.c.timestamp <= last)
        with self._engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).all(), columns=["timestamp", *VALUE_COLUMNS])
        label = f"store:{symbol}/{timeframe}"
        if frame.empty:
            raise InputError(label, "no bars stored for this symbol and timeframe; "
                             "expected `signal-engine ingest` or `signal-engine collect` to have stored some")
        actions = known(self.corporate_actions(symbol, source=chosen), None if as_of is None else naive_utc(as_of))
        bars = _as_price_frame(frame, actions)
        if start is not None:
            bars = bars.loc[bars.index >= pd.Timestamp(naive_utc(start))]
        if bars.empty:
            raise InputError(label, f"no bars stored from {start}; expected an earlier --start")
        return PriceSeries(symbol=symbol, source=label, bars=bars)

    def raw_closes(self, symbol: str, timeframe: str, start: datetime | None = None,
                   end: datetime | None = None) -> list[tuple[datetime, float]]:
        """The primary source's closes as stored, before any split or dividend adjustment, oldest first."""
        table = schema.bars
        chosen = self.primary_source(symbol, timeframe)
        query = (sa.select(table.c.timestamp, table.c.close)
                 .where(table.c.symbol == symbol, table.c.timeframe == timeframe, table.c.source == chosen)
                 .order_by(table.c.timestamp))
        if start is not None:
            query = query.where(table.c.timestamp >= naive_utc(start))
        if end is not None:
            query = query.where(table.c.timestamp <= naive_utc(end))
        with self._engine.connect() as connection:
            return [(row.timestamp, float(row.close)) for row in connection.execute(query)]

    def write_corporate_actions(self, actions: Sequence[CorporateAction]) -> WriteResult:
        """Upsert splits and dividends; ``known_at`` keeps the earliest time a source reported each one."""
        latest: dict[tuple[str, str, date, str], CorporateAction] = {
            (a.symbol, a.kind, a.ex_date, a.source): a for a in actions}
        return in_transaction(self._engine, lambda connection: _write_actions(connection, latest))

    def corporate_actions(self, symbol: str, source: str | None = None) -> list[CorporateAction]:
        """The stored splits and dividends of a symbol (of one source, or all), by ex-date."""
        with self._engine.connect() as connection:
            return bar_reads.corporate_actions(connection, symbol, source)

    def restatements(self, symbol: str, timeframe: str) -> list[Restatement]:
        """Recorded changes to stored bars, oldest first."""
        table = schema.bar_restatements
        query = (sa.select(table).where(table.c.symbol == symbol, table.c.timeframe == timeframe)
                 .order_by(table.c.id))
        with self._engine.connect() as connection:
            return [_restatement(row) for row in connection.execute(query).mappings()]

    def disagreements(self, symbol: str, timeframe: str) -> list[Disagreement]:
        """Recorded cross-source disagreements, oldest bar first."""
        table = schema.bar_disagreements
        query = (sa.select(table).where(table.c.symbol == symbol, table.c.timeframe == timeframe)
                 .order_by(table.c.timestamp, table.c.source, table.c.field))
        with self._engine.connect() as connection:
            return [Disagreement(**dict(row)) for row in connection.execute(query).mappings()]

    def count_bars(self, symbol: str | None = None) -> int:
        """Stored bars of one symbol, or of all."""
        query = sa.select(sa.func.count()).select_from(schema.bars)
        if symbol is not None:
            query = query.where(schema.bars.c.symbol == symbol)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


def _normalised(bar: Bar) -> Bar:
    return Bar(bar.symbol, bar.timeframe, naive_utc(bar.timestamp), bar.open, bar.high, bar.low, bar.close,
               bar.volume, bar.adj_close, bar.source)


def _key(bar: Bar) -> BarKey:
    return (bar.symbol, bar.timeframe, bar.timestamp, bar.source)


def _write(connection: sa.Connection, bars: list[Bar], tolerance: float) -> WriteResult:
    stored = existing_rows(connection, schema.bars, BAR_KEY, (_key(bar) for bar in bars))
    now = utc_now()
    new = [bar for bar in bars if _key(bar) not in stored]
    restated = [(_bar(stored[_key(bar)]), bar) for bar in bars
                if _key(bar) in stored and not _same(_bar(stored[_key(bar)]), bar)]
    if restated:
        connection.execute(schema.bar_restatements.insert(),
                           [_restatement_row(before, after, now) for before, after in restated])
    upsert(connection, schema.bars, [_row(bar, now) for bar in (*new, *(after for _, after in restated))], BAR_KEY)
    flagged = _record_disagreements(connection, [*new, *(after for _, after in restated)], tolerance, now)
    return WriteResult(inserted=len(new), updated=len(restated), unchanged=len(bars) - len(new) - len(restated),
                       disagreements=flagged)


def _record_disagreements(connection: sa.Connection, bars: list[Bar], tolerance: float, now: datetime) -> int:
    """Compare each written bar with other sources' bars at the same time; record (both ways) what differs."""
    if not bars:
        return 0
    table = schema.bars
    others: dict[tuple[str, str, datetime], list[dict[str, Any]]] = {}
    keys = list({(bar.symbol, bar.timeframe, bar.timestamp) for bar in bars})
    columns = (table.c.symbol, table.c.timeframe, table.c.timestamp)
    for batch in chunks(keys):
        for row in connection.execute(sa.select(table).where(sa.tuple_(*columns).in_(list(batch)))).mappings():
            others.setdefault((row["symbol"], row["timeframe"], row["timestamp"]), []).append(dict(row))
    rows: list[dict[str, Any]] = []
    for bar in bars:
        for other in others.get((bar.symbol, bar.timeframe, bar.timestamp), []):
            if other["source"] == bar.source:
                continue
            for name in PRICE_FIELDS:
                mine, theirs = float(getattr(bar, name)), float(other[name])
                difference = abs(mine - theirs) / max(abs(theirs), 1e-12)
                if difference > tolerance:
                    common = {"symbol": bar.symbol, "timeframe": bar.timeframe, "timestamp": bar.timestamp,
                              "field": name, "relative_difference": difference, "recorded_at": now}
                    rows.append({**common, "source": bar.source, "other_source": other["source"],
                                 "value": mine, "other_value": theirs})
                    rows.append({**common, "source": other["source"], "other_source": bar.source,
                                 "value": theirs, "other_value": mine})
    unique = {key_of(row, DISAGREEMENT_KEY): row for row in rows}
    upsert(connection, schema.bar_disagreements, list(unique.values()), DISAGREEMENT_KEY)
    return len({(row["symbol"], row["timeframe"], row["timestamp"]) for row in unique.values()})


def _same(stored: Bar, incoming: Bar) -> bool:
    for name in VALUE_COLUMNS:
        a, b = getattr(stored, name), getattr(incoming, name)
        if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE)):
            return False
    return True


def _row(bar: Bar, now: datetime) -> dict[str, Any]:
    return {"symbol": bar.symbol, "timeframe": bar.timeframe, "timestamp": bar.timestamp,
            **{name: getattr(bar, name) for name in VALUE_COLUMNS}, "source": bar.source, "updated_at": now}


def _bar(row: dict[str, Any], prefix: str = "") -> Bar:
    return Bar(symbol=row["symbol"], timeframe=row["timeframe"], timestamp=row["timestamp"],
               **{name: row[prefix + name] for name in VALUE_COLUMNS}, source=row[prefix + "source"])


def _restatement_row(before: Bar, after: Bar, now: datetime) -> dict[str, Any]:
    return {"symbol": after.symbol, "timeframe": after.timeframe, "timestamp": after.timestamp,
            **{f"old_{name}": getattr(before, name) for name in (*VALUE_COLUMNS, "source")},
            **{f"new_{name}": getattr(after, name) for name in (*VALUE_COLUMNS, "source")},
            "recorded_at": now}


def _restatement(row: sa.RowMapping) -> Restatement:
    values = dict(row)
    return Restatement(before=_bar(values, "old_"), after=_bar(values, "new_"), recorded_at=values["recorded_at"])


def _as_price_frame(frame: pd.DataFrame, actions: Sequence[CorporateAction]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]), name="timestamp")
    values = frame[list(VALUE_COLUMNS)].astype(float)
    prices, volumes = read_factors([t.date() for t in index], values["close"].to_numpy(),
                                   values["adj_close"].to_numpy(), actions)
    bars = pd.DataFrame({name: values[name].to_numpy() * prices for name in PRICE_COLUMNS}, index=index)
    if values["volume"].notna().any():
        bars["volume"] = values["volume"].to_numpy() / volumes
    return bars


def _write_actions(connection: sa.Connection,
                   actions: dict[tuple[str, str, date, str], CorporateAction]) -> WriteResult:
    stored = existing_rows(connection, schema.corporate_actions, ACTION_KEY, actions)
    rows, inserted, updated = [], 0, 0
    for key, action in actions.items():
        known_at = naive_utc(action.known_at)
        before = stored.get(key)
        if before is None:
            inserted += 1
        elif math.isclose(before["value"], action.value, rel_tol=RELATIVE_TOLERANCE) and before["known_at"] <= known_at:
            continue
        else:
            updated += 1
            known_at = min(known_at, before["known_at"])
        rows.append({"symbol": action.symbol, "kind": action.kind, "ex_date": action.ex_date,
                     "source": action.source, "value": action.value, "known_at": known_at})
    upsert(connection, schema.corporate_actions, rows, ACTION_KEY)
    return WriteResult(inserted=inserted, updated=updated, unchanged=len(actions) - inserted - updated)

