"""The latest bars of a symbol from the SQL ``bars`` table as JSON rows (the combiner's BarSource; no pandas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.bar_reads import corporate_actions, primary_source
from signal_engine.storage.adjust import read_factors
from signal_engine.storage.records import IMPLIED_VOL_HORIZON_DAYS, CorporateAction
from signal_engine.storage.times import naive_utc

IMPLIED_VOL = "implied_vol"  # the bar's key the Signal API's request bars and the experts' JSON rows use
SURFACE_KEYS = {"term_slope": "implied_term_slope", "skew": "implied_skew"}  # stored column -> the bar's key (% points)
PRICE_NAMES = ("open", "high", "low", "close")


class SqlRecentBars:
    """The last ``count`` bars at or before ``end`` exactly as ``SqlPriceStore.read_bars(symbol, timeframe,
    end=end)`` gives them, which is what the bars export writes into the training files: the primary source's bars
    only (``primary_sources``, else the store's ranking), stored raw and adjusted on read for that source's splits
    and dividends (volume for its splits), or by adj_close / close where a bar carries its own adjusted close.

    Point in time: like ``read_bars`` without ``as_of`` (and like the training files, adjusted with every action
    stored when they were exported), the bars are adjusted for every stored action, also those that go ex after
    ``end``. Those scale every served bar by one common factor, so the bars' returns are those known at ``end``;
    only the price level depends on later actions, as it does in the training files.

    Only the source's name, the window's bars and the actions that go ex after its first day are read: the
    factors of a window depend on nothing else (``storage.adjust.read_factors``), so a request does not read the
    history. A row carries ``implied_vol`` (annualised %) where the implied volatility derived from the stored
    option chains is stored for its bar (the ``implied_volatility`` table, horizon ``IMPLIED_VOL_HORIZON_DAYS``,
    as the bars export writes it into the training files); the key is left out where none is, as on request bars,
    and the HAR-implied volatility expert abstains there. The stored term slope and skew come the same way, as
    ``implied_term_slope`` and ``implied_skew``, each left out where it is missing.
    """

    def __init__(self, engine: sa.Engine, primary_sources: Mapping[str, str] | None = None) -> None:
        self._engine = engine
        self._primary = dict(primary_sources or {})

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None,
                    count: int) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            source = primary_source(connection, symbol, timeframe, self._primary)
            if source is None:
                return []
            rows = connection.execute(_window(symbol, timeframe, source, end, count)).all()[::-1]
            if not rows:
                return []
            actions = corporate_actions(connection, symbol, source, ex_after=rows[0].timestamp.date())
        return _json_rows(rows, actions)


def _window(symbol: str, timeframe: str, source: str, end: datetime | None, count: int) -> sa.Select[Any]:
    table, implied = schema.bars, schema.implied_volatility
    joined = table.outerjoin(implied, sa.and_(implied.c.symbol == table.c.symbol,
                                               implied.c.timeframe == table.c.timeframe,
                                               implied.c.timestamp == table.c.timestamp,
                                               implied.c.horizon_days == IMPLIED_VOL_HORIZON_DAYS))
    query = (sa.select(table.c.timestamp, *(table.c[name] for name in PRICE_NAMES), table.c.volume,
                       table.c.adj_close, implied.c.implied_vol, *(implied.c[name] for name in SURFACE_KEYS))
             .select_from(joined)
             .where(table.c.symbol == symbol, table.c.timeframe == timeframe, table.c.source == source))
    if end is not None:
        query = query.where(table.c.timestamp <= naive_utc(end))
    return query.order_by(table.c.timestamp.desc()).limit(count)


def _json_rows(rows: Sequence[Any], actions: Sequence[CorporateAction]) -> list[dict[str, Any]]:
    def column(name: str) -> np.ndarray:
        return np.array([getattr(row, name) for row in rows], dtype=float)  # None becomes NaN

    price_factor, volume_divisor = read_factors([row.timestamp.date() for row in rows], column("close"),
                                                column("adj_close"), actions)
    prices = {name: column(name) * price_factor for name in PRICE_NAMES}
    volume = column("volume") / volume_divisor
    bars = []
    for i, row in enumerate(rows):
        bar = {"timestamp": row.timestamp.isoformat(), **{name: float(prices[name][i]) for name in PRICE_NAMES},
               "volume": float(volume[i]) if np.isfinite(volume[i]) else None}
        extra = {IMPLIED_VOL: row.implied_vol, **{key: getattr(row, name) for name, key in SURFACE_KEYS.items()}}
        bars.append({**bar, **{key: value for key, value in extra.items() if value is not None}})
    return bars
