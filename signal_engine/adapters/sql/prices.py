"""PriceStore on SQL: idempotent, transactional bar upserts that record restatements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import existing_rows, in_transaction, upsert
from signal_engine.data.loader import PRICE_COLUMNS, PriceSeries
from signal_engine.errors import InputError
from signal_engine.storage.records import Bar, Restatement, WriteResult
from signal_engine.storage.times import naive_utc, utc_now

BAR_KEY = ("symbol", "timeframe", "timestamp")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "adj_close")
RELATIVE_TOLERANCE = 1e-12


class SqlPriceStore:
    """Bars in the ``bars`` table; changes to stored bars go to ``bar_restatements``.

    Parameters
    ----------
    engine
        A migrated SQLAlchemy engine (MySQL/MariaDB or SQLite).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def write_bars(self, bars: Sequence[Bar]) -> WriteResult:
        """One transaction: insert new bars, update and record restated ones, skip identical ones."""
        latest = {bar.key: bar for bar in map(_normalised, bars)}
        return in_transaction(self._engine, lambda connection: _write(connection, list(latest.values())))

    def read_bars(self, symbol: str, timeframe: str, start: datetime | None = None,
                  end: datetime | None = None) -> PriceSeries:
        """The stored bars as a PriceSeries, prices adjusted by adj_close / close where it is stored."""
        table = schema.bars
        query = (sa.select(table.c.timestamp, *(table.c[name] for name in VALUE_COLUMNS))
                 .where(table.c.symbol == symbol, table.c.timeframe == timeframe)
                 .order_by(table.c.timestamp))
        if start is not None:
            query = query.where(table.c.timestamp >= naive_utc(start))
        if end is not None:
            query = query.where(table.c.timestamp <= naive_utc(end))
        with self._engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).all(), columns=["timestamp", *VALUE_COLUMNS])
        source = f"store:{symbol}/{timeframe}"
        if frame.empty:
            raise InputError(source, "no bars stored for this symbol and timeframe; "
                             "expected `signal-engine ingest` or `signal-engine collect` to have stored some")
        return PriceSeries(symbol=symbol, source=source, bars=_as_price_frame(frame))

    def restatements(self, symbol: str, timeframe: str) -> list[Restatement]:
        """Recorded changes to stored bars, oldest first."""
        table = schema.bar_restatements
        query = (sa.select(table).where(table.c.symbol == symbol, table.c.timeframe == timeframe)
                 .order_by(table.c.id))
        with self._engine.connect() as connection:
            return [_restatement(row) for row in connection.execute(query).mappings()]

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


def _write(connection: sa.Connection, bars: list[Bar]) -> WriteResult:
    stored = existing_rows(connection, schema.bars, BAR_KEY, (bar.key for bar in bars))
    now = utc_now()
    new = [bar for bar in bars if bar.key not in stored]
    restated = [(_bar(stored[bar.key]), bar) for bar in bars
                if bar.key in stored and not _same(_bar(stored[bar.key]), bar)]
    if restated:
        connection.execute(schema.bar_restatements.insert(),
                           [_restatement_row(before, after, now) for before, after in restated])
    upsert(connection, schema.bars, [_row(bar, now) for bar in (*new, *(after for _, after in restated))], BAR_KEY)
    return WriteResult(inserted=len(new), updated=len(restated), unchanged=len(bars) - len(new) - len(restated))


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


def _as_price_frame(frame: pd.DataFrame) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]), name="timestamp")
    values = frame[list(VALUE_COLUMNS)].astype(float)
    adjustment = (values["adj_close"] / values["close"]).fillna(1.0).to_numpy()
    bars = pd.DataFrame({name: values[name].to_numpy() * adjustment for name in PRICE_COLUMNS}, index=index)
    if values["volume"].notna().any():
        bars["volume"] = values["volume"].to_numpy()
    return bars

