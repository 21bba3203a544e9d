"""MarketDataStore on SQL: statistics, fundamentals, option quotes and the implied volatility derived from them,
upserted by primary key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import chunks, existing_rows, in_transaction, key_of, upsert
from signal_engine.storage.records import (
    IMPLIED_VOL_HORIZON_DAYS,
    Fundamental,
    ImpliedVolatility,
    OptionQuote,
    Statistic,
    WriteResult,
)
from signal_engine.storage.times import naive_utc, utc_now

R = TypeVar("R")
STATISTIC_KEY = ("symbol", "source", "name", "as_of")
FUNDAMENTAL_KEY = ("symbol", "source", "period_type", "period_end", "item", "known_at")
OPTION_KEY = ("contract", "as_of")
IMPLIED_VOL_KEY = ("symbol", "timeframe", "timestamp", "horizon_days")


class SqlMarketDataStore:
    """Statistics, fundamentals and option quotes in their tables; one transaction per write.

    Parameters
    ----------
    engine
        A migrated SQLAlchemy engine (MySQL/MariaDB or SQLite).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def write_statistics(self, rows: Sequence[Statistic]) -> WriteResult:
        return self._write(schema.statistics, STATISTIC_KEY,
                           [{**dataclasses.asdict(r), "as_of": naive_utc(r.as_of)} for r in rows])

    def write_fundamentals(self, rows: Sequence[Fundamental]) -> WriteResult:
        """Point-in-time versions: a value first seen is known from ``first_known_at()``; a changed value is a new
        version known from its fetch; an unchanged one adds nothing."""
        latest = {(r.symbol, r.source, r.period_type, r.period_end, r.item): r for r in rows}
        return in_transaction(self._engine, lambda connection: _write_fundamentals(connection, latest))

    def write_option_quotes(self, rows: Sequence[OptionQuote]) -> WriteResult:
        return self._write(schema.option_quotes, OPTION_KEY,
                           [{**dataclasses.asdict(r), "as_of": naive_utc(r.as_of)} for r in rows])

    def read_statistics(self, symbol: str) -> list[Statistic]:
        table = schema.statistics
        return self._read(table, Statistic, table.c.symbol == symbol, (table.c.as_of, table.c.name))

    def read_fundamentals(self, symbol: str, as_of: datetime | None = None) -> list[Fundamental]:
        """Each period's items as known at ``as_of`` (the latest version by then; all latest when None)."""
        table = schema.fundamentals
        where = table.c.symbol == symbol
        if as_of is not None:
            where = sa.and_(where, table.c.known_at <= naive_utc(as_of))
        versions = self._read(table, Fundamental, where, (table.c.period_end, table.c.item, table.c.known_at))
        latest = {(f.source, f.period_type, f.period_end, f.item): f for f in versions}
        return list(latest.values())

    def read_option_quotes(self, underlying: str, since: datetime | None = None,
                           until: datetime | None = None) -> list[OptionQuote]:
        """The quotes of ``underlying`` fetched between ``since`` and ``until`` (inclusive; open when None), by
        ``as_of``, expiration and contract."""
        table = schema.option_quotes
        return self._read(table, OptionQuote, sa.and_(table.c.underlying == underlying,
                                                      *_window(table.c.as_of, since, until)),
                          (table.c.as_of, table.c.expiration, table.c.contract))

    def option_snapshot_times(self, underlying: str, since: datetime | None = None,
                              until: datetime | None = None) -> list[datetime]:
        """The distinct ``as_of`` of the stored quotes of ``underlying`` within [since, until], oldest first."""
        table = schema.option_quotes
        query = (sa.select(table.c.as_of).distinct()
                 .where(table.c.underlying == underlying, *_window(table.c.as_of, since, until))
                 .order_by(table.c.as_of))
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def write_implied_volatility(self, rows: Sequence[ImpliedVolatility]) -> WriteResult:
        """Upsert derived values by (symbol, timeframe, timestamp, horizon_days)."""
        return self._write(schema.implied_volatility, IMPLIED_VOL_KEY,
                           [{**dataclasses.asdict(r), "timestamp": naive_utc(r.timestamp),
                             "computed_at": naive_utc(r.computed_at)} for r in rows])

    def read_implied_volatility(self, symbol: str, timeframe: str, horizon_days: int = IMPLIED_VOL_HORIZON_DAYS,
                                start: datetime | None = None, end: datetime | None = None,
                                ) -> list[ImpliedVolatility]:
        """The stored derived values of one symbol's bars between ``start`` and ``end`` (inclusive), oldest first."""
        table = schema.implied_volatility
        where = sa.and_(table.c.symbol == symbol, table.c.timeframe == timeframe,
                        table.c.horizon_days == horizon_days, *_window(table.c.timestamp, start, end))
        return self._read(table, ImpliedVolatility, where, (table.c.timestamp,))

    def _write(self, table: sa.Table, key: Sequence[str], rows: list[dict[str, Any]]) -> WriteResult:
        latest = {key_of(row, key): row for row in rows}
        return in_transaction(self._engine, lambda connection: _write(connection, table, key, latest))

    def _read(self, table: sa.Table, record: Callable[..., R], where: sa.ColumnElement[bool],
              order: tuple[sa.ColumnElement[Any], ...]) -> list[R]:
        names = [f.name for f in dataclasses.fields(record) if f.name in table.c]  # type: ignore[arg-type]
        with self._engine.connect() as connection:  # plain tuples: a chain read is 10^5 rows, mappings cost 3x
            rows = connection.execute(sa.select(*(table.c[name] for name in names)).where(where).order_by(*order))
            return [record(**dict(zip(names, row, strict=True))) for row in rows]


def _window(column: sa.ColumnElement[datetime], since: datetime | None,
            until: datetime | None) -> list[sa.ColumnElement[bool]]:
    bounds = []
    if since is not None:
        bounds.append(column >= naive_utc(since))
    if until is not None:
        bounds.append(column <= naive_utc(until))
    return bounds


def _write_fundamentals(connection: sa.Connection, rows: dict[tuple[Any, ...], Fundamental]) -> WriteResult:
    table = schema.fundamentals
    period = (table.c.symbol, table.c.source, table.c.period_type, table.c.period_end, table.c.item)
    stored: dict[tuple[Any, ...], dict[str, Any]] = {}
    for batch in chunks(list(rows)):
        query = sa.select(table).where(sa.tuple_(*period).in_(list(batch))).order_by(table.c.known_at)
        for found in connection.execute(query).mappings():
            stored[tuple(found[c.name] for c in period)] = dict(found)  # the latest version wins
    new_rows: list[dict[str, Any]] = []
    inserted = updated = 0
    for key, item in rows.items():
        before = stored.get(key)
        if before is not None and math.isclose(before["value"], item.value, rel_tol=1e-12):
            continue
        if before is None:
            known_at, inserted = item.first_known_at(), inserted + 1
        else:
            known_at, updated = max(naive_utc(item.fetched_at or utc_now()), before["known_at"]), updated + 1
        new_rows.append({**dataclasses.asdict(item), "known_at": known_at,
                         "fetched_at": naive_utc(item.fetched_at) if item.fetched_at else None})
    upsert(connection, table, new_rows, FUNDAMENTAL_KEY)
    return WriteResult(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)


def _write(connection: sa.Connection, table: sa.Table, key: Sequence[str],
           rows: dict[tuple[Any, ...], dict[str, Any]]) -> WriteResult:
    stored = existing_rows(connection, table, key, rows)
    changed = [row for k, row in rows.items() if k not in stored or not _same(stored[k], row)]
    upsert(connection, table, changed, key)
    inserted = sum(1 for k in rows if k not in stored)
    return WriteResult(inserted=inserted, updated=len(changed) - inserted, unchanged=len(rows) - len(changed))


def _same(stored: dict[str, Any], incoming: dict[str, Any]) -> bool:
    for name, value in incoming.items():
        old = stored[name]
        if isinstance(value, float) and isinstance(old, float):
            if not math.isclose(old, value, rel_tol=1e-12):
                return False
        elif old != value:
            return False
    return True
