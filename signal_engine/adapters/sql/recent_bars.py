"""The latest bars of a symbol from the SQL ``bars`` table as JSON rows (the combiner's BarSource; no pandas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.storage.records import IMPLIED_VOL_HORIZON_DAYS

IMPLIED_VOL = "implied_vol"  # the bar's key the Signal API's request bars and the experts' JSON rows use


class SqlRecentBars:
    """Reads ``bars`` (MySQL in AWS, SQLite locally) newest first and returns them oldest first.

    Prices are adjusted by adj_close / close where it is stored, as ``SqlPriceStore.read_bars`` does (the
    models are trained on adjusted prices). A row carries ``implied_vol`` (annualised %) where the implied
    volatility derived from the stored option chains is stored for its bar (the ``implied_volatility`` table,
    horizon ``IMPLIED_VOL_HORIZON_DAYS``, as the bars export writes it into the training files); the key is left
    out where none is, as on request bars, and the HAR-implied volatility expert abstains there.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None,
                    count: int) -> list[dict[str, Any]]:
        table, implied = schema.bars, schema.implied_volatility
        joined = table.outerjoin(implied, sa.and_(implied.c.symbol == table.c.symbol,
                                                   implied.c.timeframe == table.c.timeframe,
                                                   implied.c.timestamp == table.c.timestamp,
                                                   implied.c.horizon_days == IMPLIED_VOL_HORIZON_DAYS))
        query = sa.select(table.c.timestamp, table.c.open, table.c.high, table.c.low, table.c.close,
                          table.c.volume, table.c.adj_close, implied.c.implied_vol).select_from(joined)
        query = query.where(table.c.symbol == symbol, table.c.timeframe == timeframe)
        if end is not None:
            query = query.where(table.c.timestamp <= end)
        query = query.order_by(table.c.timestamp.desc()).limit(count)
        with self._engine.connect() as connection:
            rows = list(connection.execute(query))
        return [_row(row) for row in reversed(rows)]


def _row(row: Any) -> dict[str, Any]:
    factor = row.adj_close / row.close if row.adj_close is not None and row.close else 1.0
    bar = {"timestamp": row.timestamp.isoformat(), "open": row.open * factor, "high": row.high * factor,
           "low": row.low * factor, "close": row.close * factor, "volume": row.volume}
    return bar if row.implied_vol is None else {**bar, IMPLIED_VOL: row.implied_vol}
