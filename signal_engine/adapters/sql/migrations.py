"""The versioned schema: ordered migration steps applied at connect, recorded in ``schema_version``.

A step is applied once; a database at version N gets steps N+1.. in order. On MySQL the steps run
under a named lock (``GET_LOCK``) so two cold-starting Lambdas do not race each other. DDL commits
implicitly on MySQL, so each step is written to be re-runnable (``checkfirst``) in case it was cut
off before its version row was written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import chunks
from signal_engine.storage.records import PUBLICATION_DEADLINE_DAYS

LOCK_NAME = "signal_engine_migrations"
LOCK_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` gets a connection inside a transaction."""

    version: int
    description: str
    apply: Callable[[sa.Connection], None]


# The bars table as versions 1-4 created it (keyed without its source), kept so that old steps stay what they were.
_v1_metadata = sa.MetaData()
BARS_V1 = sa.Table(
    "bars", _v1_metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("timeframe", sa.String(8), primary_key=True),
    sa.Column("timestamp", sa.DateTime, primary_key=True),
    *(sa.Column(name, sa.Double(), nullable=False) for name in ("open", "high", "low", "close")),
    sa.Column("volume", sa.Double(), nullable=True), sa.Column("adj_close", sa.Double(), nullable=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
REBUILT_BARS = "bars_v5"
FUNDAMENTALS_V2 = sa.Table(
    "fundamentals", _v1_metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("period_type", sa.String(12), primary_key=True),
    sa.Column("period_end", sa.Date, primary_key=True),
    sa.Column("item", sa.String(96), primary_key=True),
    sa.Column("value", sa.Double(), nullable=False),
    sa.Column("currency", sa.String(8), nullable=False),
)
REBUILT_FUNDAMENTALS = "fundamentals_v7"


def _fundamentals_point_in_time(connection: sa.Connection) -> None:
    """Rebuild ``fundamentals`` keyed by ``known_at`` too; a stored row is known from its publication deadline
    (the period end plus ``PUBLICATION_DEADLINE_DAYS``), the latest it can have become public. Re-runnable."""
    inspector = sa.inspect(connection)
    if inspector.has_table("fundamentals"):
        if "known_at" in inspector.get_pk_constraint("fundamentals")["constrained_columns"]:
            return
        rebuilt = schema.fundamentals.to_metadata(sa.MetaData(), name=REBUILT_FUNDAMENTALS)
        rebuilt.drop(connection, checkfirst=True)
        rebuilt.create(connection)
        rows = [dict(row) for row in connection.execute(sa.select(FUNDAMENTALS_V2)).mappings()]
        for row in rows:
            deadline = row["period_end"] + timedelta(days=PUBLICATION_DEADLINE_DAYS.get(row["period_type"], 120))
            row["known_at"] = datetime(deadline.year, deadline.month, deadline.day)
            row["fetched_at"] = None
        for batch in chunks(rows):
            connection.execute(rebuilt.insert(), list(batch))
        connection.execute(sa.text("DROP TABLE fundamentals"))
        connection.execute(sa.text(f"ALTER TABLE {REBUILT_FUNDAMENTALS} RENAME TO fundamentals"))
    elif inspector.has_table(REBUILT_FUNDAMENTALS):
        connection.execute(sa.text(f"ALTER TABLE {REBUILT_FUNDAMENTALS} RENAME TO fundamentals"))
    else:
        schema.fundamentals.create(connection)


def _bars_keyed_by_source(connection: sa.Connection) -> None:
    """Rebuild ``bars`` with ``source`` in its primary key, keeping every stored row; add ``bar_disagreements``.

    Portable (SQLite cannot change a primary key in place): create ``bars_v5``, copy, drop ``bars``, rename.
    Re-runnable: MySQL commits each DDL statement, so a step cut off halfway is finished on the next run.
    """
    inspector = sa.inspect(connection)
    if inspector.has_table("bars"):
        if "source" not in inspector.get_pk_constraint("bars")["constrained_columns"]:
            rebuilt = schema.bars.to_metadata(sa.MetaData(), name=REBUILT_BARS)
            rebuilt.drop(connection, checkfirst=True)
            rebuilt.create(connection)
            columns = [column.name for column in schema.bars.columns]
            old = sa.table("bars", *(sa.column(name) for name in columns))
            connection.execute(rebuilt.insert().from_select(columns, sa.select(*(old.c[n] for n in columns))))
            connection.execute(sa.text("DROP TABLE bars"))
            connection.execute(sa.text(f"ALTER TABLE {REBUILT_BARS} RENAME TO bars"))
    elif inspector.has_table(REBUILT_BARS):
        connection.execute(sa.text(f"ALTER TABLE {REBUILT_BARS} RENAME TO bars"))
    else:
        schema.bars.create(connection)
    schema.bar_disagreements.create(connection, checkfirst=True)


def _implied_volatility(connection: sa.Connection) -> None:
    """The derived series' table and the index of option quotes by (underlying, as_of). Re-runnable."""
    schema.implied_volatility.create(connection, checkfirst=True)
    indexes = {index["name"] for index in sa.inspect(connection).get_indexes(schema.option_quotes.name)}
    if schema.option_quotes_by_time.name not in indexes:
        schema.option_quotes_by_time.create(connection)


def _create(*tables: sa.Table) -> Callable[[sa.Connection], None]:
    def apply(connection: sa.Connection) -> None:
        for table in tables:
            table.create(connection, checkfirst=True)

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "bars keyed by (symbol, timeframe, timestamp) and their restatements",
              _create(BARS_V1, schema.bar_restatements)),
    Migration(2, "quote statistics, fundamentals and option quotes",
              _create(schema.statistics, FUNDAMENTALS_V2, schema.option_quotes)),
    Migration(3, "signal audit log, positions and risk events",
              _create(schema.signal_audit, schema.positions, schema.risk_events)),
    Migration(4, "embedded document store (news and reports) for the local default",
              _create(schema.documents, schema.document_symbols)),
    Migration(5, "bars keyed by source too (a second source never overwrites the first) and bar disagreements",
              _bars_keyed_by_source),
    Migration(6, "corporate actions (splits, dividends) as their own records; bars are stored raw",
              _create(schema.corporate_actions)),
    Migration(7, "fundamentals by publication: point-in-time versions keyed by when they became known",
              _fundamentals_point_in_time),
    Migration(8, "live books: the book state, positions and events after each stepped bar",
              _create(schema.book_states, schema.book_positions, schema.book_events)),
    Migration(9, "implied volatility derived from the stored option chains per bar; option quotes indexed by time",
              _implied_volatility),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: sa.Connection) -> int:
    """The highest applied version, 0 for an empty database."""
    if not sa.inspect(connection).has_table(schema.schema_version.name):
        return 0
    version = connection.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    return int(version or 0)


def migrate(engine: sa.Engine) -> int:
    """Apply every pending step in order; returns the version the database is at afterwards."""
    with _migration_lock(engine):
        with engine.begin() as connection:
            schema.schema_version.create(connection, checkfirst=True)
        for step in MIGRATIONS:
            with engine.begin() as connection:
                if current_version(connection) >= step.version:
                    continue
                step.apply(connection)
                connection.execute(schema.schema_version.insert().values(
                    version=step.version, description=step.description,
                    applied_at=datetime.now(UTC).replace(tzinfo=None, microsecond=0)))
    with engine.connect() as connection:
        return current_version(connection)


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    if engine.dialect.name != "mysql":
        yield
        return
    with engine.connect() as connection:
        got = connection.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                                 {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT_SECONDS}).scalar()
        if got != 1:
            raise RuntimeError(f"could not take the schema migration lock {LOCK_NAME!r} in {LOCK_TIMEOUT_SECONDS} s")
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
