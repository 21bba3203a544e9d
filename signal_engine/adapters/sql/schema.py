"""Tables of the relational store, in SQLAlchemy Core; the same DDL runs on MySQL/MariaDB and SQLite.

Prices are DOUBLE (MySQL's FLOAT is single precision, which would make every re-collected bar look
restated); times are naive UTC DATETIME.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()


def _symbol(name: str = "symbol", primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(32), nullable=False, primary_key=primary_key)


def _price(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double(), nullable=nullable)


schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

bars = sa.Table(
    "bars", metadata,
    _symbol(primary_key=True),
    sa.Column("timeframe", sa.String(8), primary_key=True),
    sa.Column("timestamp", sa.DateTime, primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),  # since version 5: one series per source
    _price("open"), _price("high"), _price("low"), _price("close"),
    _price("volume", nullable=True), _price("adj_close", nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

bar_disagreements = sa.Table(
    "bar_disagreements", metadata,
    _symbol(primary_key=True),
    sa.Column("timeframe", sa.String(8), primary_key=True),
    sa.Column("timestamp", sa.DateTime, primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("other_source", sa.String(32), primary_key=True),
    sa.Column("field", sa.String(16), primary_key=True),
    _price("value"), _price("other_value"), _price("relative_difference"),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

bar_restatements = sa.Table(
    "bar_restatements", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _symbol(), sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=False),
    _price("old_open"), _price("old_high"), _price("old_low"), _price("old_close"),
    _price("old_volume", nullable=True), _price("old_adj_close", nullable=True),
    sa.Column("old_source", sa.String(32), nullable=False),
    _price("new_open"), _price("new_high"), _price("new_low"), _price("new_close"),
    _price("new_volume", nullable=True), _price("new_adj_close", nullable=True),
    sa.Column("new_source", sa.String(32), nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Index("ix_bar_restatements_key", "symbol", "timeframe", "timestamp"),
)

corporate_actions = sa.Table(
    "corporate_actions", metadata,
    _symbol(primary_key=True),
    sa.Column("kind", sa.String(12), primary_key=True),
    sa.Column("ex_date", sa.Date, primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    _price("value"),
    sa.Column("known_at", sa.DateTime, nullable=False),
)

statistics = sa.Table(
    "statistics", metadata,
    _symbol(primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("as_of", sa.DateTime, primary_key=True),
    _price("value"),
)

fundamentals = sa.Table(
    "fundamentals", metadata,
    _symbol(primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("period_type", sa.String(12), primary_key=True),
    sa.Column("period_end", sa.Date, primary_key=True),
    sa.Column("item", sa.String(96), primary_key=True),
    sa.Column("known_at", sa.DateTime, primary_key=True),  # since version 7: point-in-time versions
    _price("value"),
    sa.Column("currency", sa.String(8), nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=True),
)

option_quotes = sa.Table(
    "option_quotes", metadata,
    sa.Column("contract", sa.String(40), primary_key=True),
    sa.Column("as_of", sa.DateTime, primary_key=True),
    _symbol("underlying"),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("expiration", sa.Date, nullable=False),
    _price("strike"),
    *(_price(name, nullable=True) for name in ("last_price", "bid", "ask", "implied_volatility", "volume",
                                                "open_interest")),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Index("ix_option_quotes_underlying", "underlying", "expiration"),
)
# Since version 9: the windowed read of a symbol's chains by fetch time (``read_option_quotes(since=, until=)``).
option_quotes_by_time = sa.Index("ix_option_quotes_as_of", option_quotes.c.underlying, option_quotes.c.as_of)

# Since version 9: the implied volatility derived from the stored chains, per bar (records.ImpliedVolatility).
implied_volatility = sa.Table(
    "implied_volatility", metadata,
    _symbol(primary_key=True),
    sa.Column("timeframe", sa.String(8), primary_key=True),
    sa.Column("timestamp", sa.DateTime, primary_key=True),
    sa.Column("horizon_days", sa.Integer, primary_key=True, autoincrement=False),
    _price("implied_vol"), _price("spot"),
    _price("term_slope", nullable=True), _price("skew", nullable=True),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)

signal_audit = sa.Table(
    "signal_audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _symbol(), sa.Column("timeframe", sa.String(8), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("signal", sa.String(8), nullable=False),
    _price("score"), _price("confidence"), _price("position"),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("served_at", sa.DateTime, nullable=False),
    sa.Index("ix_signal_audit_symbol", "symbol", "as_of"),
)

positions = sa.Table(
    "positions", metadata,
    _symbol(primary_key=True),
    _price("quantity"), _price("exposure"),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

risk_events = sa.Table(
    "risk_events", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _symbol(), sa.Column("kind", sa.String(48), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Index("ix_risk_events_symbol", "symbol", "occurred_at"),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("kind", sa.String(12), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.Column("content", sa.JSON, nullable=False),
)

document_symbols = sa.Table(
    "document_symbols", metadata,
    sa.Column("kind", sa.String(12), primary_key=True),
    _symbol(primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.Index("ix_document_symbols_time", "kind", "symbol", "published_at"),
)

# Live books (version 8): the book state after each bar (JSON text: docs/book-state.md), positions and events.
_BOOK_STATE_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")


def _book(primary_key: bool = True) -> sa.Column[str]:
    return sa.Column("book", sa.String(64), nullable=False, primary_key=primary_key)


book_states = sa.Table(
    "book_states", metadata,
    _book(),
    sa.Column("bar_time", sa.DateTime, primary_key=True),
    sa.Column("state", _BOOK_STATE_TEXT, nullable=False),
    sa.Column("inputs_digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

book_positions = sa.Table(
    "book_positions", metadata,
    _book(),
    sa.Column("bar_time", sa.DateTime, primary_key=True),
    _symbol(primary_key=True),
    _price("position"),
    sa.Column("contributions", sa.JSON, nullable=False),
)

book_events = sa.Table(
    "book_events", metadata,
    _book(),
    sa.Column("bar_time", sa.DateTime, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("component", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("model", sa.String(32), nullable=False),
    _price("value", nullable=True), _price("threshold", nullable=True),  # NULL for NaN
    sa.Column("detail", sa.JSON, nullable=False),
)
