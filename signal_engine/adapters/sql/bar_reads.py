"""The queries every read of stored bars shares (no pandas: the combiner Lambda reads bars through them too).

``SqlPriceStore.read_bars`` (training files, local serving) and ``SqlRecentBars`` (the Signal API in AWS) choose
the same source and apply the same corporate actions through these, so a served bar is the bar the models were
trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.storage.records import CorporateAction

PRIMARY_ORDER = ("yahoo", "nasdaq")


def primary_source(connection: sa.Connection, symbol: str, timeframe: str,
                   configured: Mapping[str, str]) -> str | None:
    """The source whose bars are read: ``configured[symbol]``, else the first of ``PRIMARY_ORDER`` that has bars,
    else the alphabetically first; None when none is stored (and none configured)."""
    if symbol in configured:
        return configured[symbol]
    table = schema.bars
    of_symbol = (table.c.symbol == symbol, table.c.timeframe == timeframe)
    for name in PRIMARY_ORDER:  # one probe each, which stops at the first bar of that source
        if connection.execute(sa.select(table.c.source).where(*of_symbol, table.c.source == name).limit(1)).first():
            return name
    stored = connection.execute(sa.select(table.c.source).distinct().where(*of_symbol)).scalars()
    return min(stored, default=None)


def corporate_actions(connection: sa.Connection, symbol: str, source: str | None = None,
                      ex_after: date | None = None) -> list[CorporateAction]:
    """The stored splits and dividends of a symbol (of one source, or all; going ex after ``ex_after``, or all),
    by ex-date then kind."""
    table = schema.corporate_actions
    query = sa.select(table).where(table.c.symbol == symbol).order_by(table.c.ex_date, table.c.kind)
    if source is not None:
        query = query.where(table.c.source == source)
    if ex_after is not None:
        query = query.where(table.c.ex_date > ex_after)
    return [CorporateAction(**dict(row)) for row in connection.execute(query).mappings()]
