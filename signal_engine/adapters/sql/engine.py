"""Engines for the supported URLs and the one transaction helper every SQL adapter writes through."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from signal_engine.errors import ConfigError

T = TypeVar("T")
SUPPORTED = "sqlite:///PATH or mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE"
CHUNK_ROWS = 1000
MYSQL_CONNECT_ARGS = {"connect_timeout": 10, "read_timeout": 120, "write_timeout": 120, "charset": "utf8mb4"}


def mysql_connect_args(ca_file: str = "", *, require_verified_tls: bool = False) -> dict[str, Any]:
    """PyMySQL's connect arguments; with ``ca_file``, TLS that verifies the server's certificate and host name.

    Without a CA file PyMySQL only uses TLS opportunistically and accepts any certificate, which is what a local
    MariaDB needs but not RDS: ``require_verified_tls`` (set in AWS) turns a missing bundle into a ConfigError.
    """
    if not ca_file:
        if require_verified_tls:
            raise ConfigError(
                "MySQL needs verified TLS here but no CA bundle is set: set SIGNAL_ENGINE_DATABASE_CA_FILE to the "
                "Amazon RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem; the "
                "Lambda packages carry it when built with `make package-lambdas RDS_CA_BUNDLE=global-bundle.pem`)")
        return dict(MYSQL_CONNECT_ARGS)
    if not Path(ca_file).is_file():
        raise ConfigError(f"SIGNAL_ENGINE_DATABASE_CA_FILE {ca_file!r} does not exist; expected the Amazon RDS CA "
                          "bundle (PEM)")
    return {**MYSQL_CONNECT_ARGS, "ssl_ca": ca_file, "ssl_verify_cert": True, "ssl_verify_identity": True}


def create_store_engine(url: str, *, ca_file: str = "", require_verified_tls: bool = False) -> sa.Engine:
    """An engine for a SQLite file or a MySQL/MariaDB server; anything else is a ConfigError.

    ``ca_file`` and ``require_verified_tls`` apply to MySQL (see ``mysql_connect_args``).
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"database URL {url!r} is not a URL; expected {SUPPORTED}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            sa.event.listen(engine, "connect", _write_ahead_log)
        return engine
    if parsed.get_backend_name() == "mysql" and parsed.get_driver_name() == "pymysql":
        connect_args = mysql_connect_args(ca_file, require_verified_tls=require_verified_tls)
        return sa.create_engine(parsed, pool_pre_ping=True, pool_recycle=1800, connect_args=connect_args)
    raise ConfigError(f"database URL {parsed.render_as_string(hide_password=True)!r} is not supported; "
                      f"expected {SUPPORTED}")


def _write_ahead_log(connection: Any, _record: Any) -> None:
    """A SQLite file in write-ahead-log mode with ``synchronous=NORMAL``: a commit no longer waits for the disk
    (about 0.5 ms instead of 15 ms: a book stepped bar by bar commits twice a bar), readers (``serve``) do not
    block the writer, and a crash of the process still loses no committed transaction (a power cut may lose the
    last few, never corrupting the file)."""
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def in_transaction(engine: sa.Engine, work: Callable[[sa.Connection], T], attempts: int = 2) -> T:
    """Run ``work`` in one transaction; if the server drops the connection, roll back and run it again.

    A failure of any other kind, or on the last attempt, propagates after the rollback, so a batch is
    either written whole or not at all.
    """
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                return work(connection)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def chunks(rows: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` rows."""
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def key_of(row: Mapping[Any, Any], key_columns: Sequence[str]) -> tuple[Any, ...]:
    """The primary-key tuple of a row."""
    return tuple(row[name] for name in key_columns)


def existing_rows(connection: sa.Connection, table: sa.Table, key_columns: Sequence[str],
                  keys: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Stored rows with the given keys, locked for update where the database supports it."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    columns = [table.c[name] for name in key_columns]
    for batch in chunks(list(keys)):
        query = sa.select(table).where(sa.tuple_(*columns).in_(list(batch))).with_for_update()
        for row in connection.execute(query).mappings():
            found[key_of(row, key_columns)] = dict(row)
    return found


def upsert(connection: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
           key_columns: Sequence[str]) -> None:
    """Insert rows, updating the non-key columns of rows whose key exists, in batches of CHUNK_ROWS."""
    if not rows:
        return
    statement = upsert_statement(connection.dialect.name, table, key_columns)
    for batch in chunks(rows):
        connection.execute(statement, list(batch))


def upsert_statement(dialect: str, table: sa.Table, key_columns: Sequence[str]) -> sa.Insert:
    """``INSERT .. ON DUPLICATE KEY UPDATE`` (MySQL) or ``INSERT .. ON CONFLICT DO UPDATE`` (SQLite)."""
    updated = [column.name for column in table.columns if column.name not in key_columns]
    if dialect == "mysql":
        mysql = mysql_insert(table)
        return mysql.on_duplicate_key_update({name: mysql.inserted[name] for name in updated})
    if dialect == "sqlite":
        sqlite = sqlite_insert(table)
        return sqlite.on_conflict_do_update(index_elements=list(key_columns),
                                            set_={name: sqlite.excluded[name] for name in updated})
    raise ConfigError(f"no upsert for database dialect {dialect!r}; expected mysql or sqlite")
