"""One migrated SQL database and the stores on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from signal_engine.adapters.sql.books import SqlBookStore
from signal_engine.adapters.sql.documents import SqlDocumentStore
from signal_engine.adapters.sql.engine import create_store_engine
from signal_engine.adapters.sql.ledger import SqlLedger
from signal_engine.adapters.sql.market import SqlMarketDataStore
from signal_engine.adapters.sql.migrations import migrate
from signal_engine.adapters.sql.prices import SqlPriceStore


@dataclass(frozen=True)
class SqlDatabase:
    """A database brought to the latest schema version, with its price, market, ledger, document and book stores."""

    engine: sa.Engine
    schema_version: int
    prices: SqlPriceStore
    market: SqlMarketDataStore
    ledger: SqlLedger
    documents: SqlDocumentStore
    books: SqlBookStore

    @classmethod
    def connect(cls, url: str, primary_sources: Mapping[str, str] | None = None, *, ca_file: str = "",
                require_verified_tls: bool = False) -> SqlDatabase:
        """Create the engine for ``url`` (TLS options: ``create_store_engine``) and apply pending migrations;
        ``primary_sources``: the bar source read per symbol."""
        engine = create_store_engine(url, ca_file=ca_file, require_verified_tls=require_verified_tls)
        version = migrate(engine)
        return cls(engine, version, SqlPriceStore(engine, primary_sources), SqlMarketDataStore(engine),
                   SqlLedger(engine), SqlDocumentStore(engine), SqlBookStore(engine))

    def close(self) -> None:
        self.engine.dispose()
