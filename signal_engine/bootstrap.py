"""The one place that picks adapters: settings (environment variables or arguments) in, wired stores out.

Defaults are embedded: SQLite at ``out/store/signal_engine.db`` for bars, statistics, ledger and documents,
and the folder ``out/store/objects`` for raw payloads. In AWS the same code gets MySQL, DocumentDB and S3:

==================================  ==========================================================================
``SIGNAL_ENGINE_DATABASE_URL``      ``sqlite:///PATH`` or ``mysql+pymysql://USER:PASSWORD@HOST:PORT/DB``
``SIGNAL_ENGINE_DATABASE_SECRET``   or an RDS secret's ARN/name (username, password, host, port, dbname)
``SIGNAL_ENGINE_DATABASE_CA_FILE``  the CA bundle for MySQL's TLS (certificate and host name verified)
``SIGNAL_ENGINE_DOCUMENT_URL``      empty (documents in the SQL database) or ``mongodb://...`` (DocumentDB)
``SIGNAL_ENGINE_DOCUMENT_SECRET``   or a DocumentDB secret's ARN/name
``SIGNAL_ENGINE_DOCUMENT_DATABASE`` the DocumentDB database name (``signal_engine``)
``SIGNAL_ENGINE_DOCUMENT_CA_FILE``  the CA bundle for DocumentDB's TLS
``SIGNAL_ENGINE_OBJECT_STORE``      a folder, or ``s3://BUCKET/PREFIX``
``SIGNAL_ENGINE_HTTP_TIMEOUT``      seconds per HTTP attempt of the collectors (10)
``SIGNAL_ENGINE_PRIMARY_SOURCES``   the bar source the models read, per symbol: ``AAPL=nasdaq,MSFT=yahoo``
                                    (default: yahoo, else nasdaq; the others are cross-checks)
==================================  ==========================================================================

In AWS (a Lambda function: ``AWS_LAMBDA_FUNCTION_NAME`` is set) MySQL and DocumentDB are reached only over TLS
that verifies the server against the CA files; a missing one is a ConfigError, never an unverified connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from signal_engine.adapters.object_stores import object_store
from signal_engine.collectors.http import HttpClient
from signal_engine.collectors.registry import REQUEST_HEADERS, SOURCES
from signal_engine.collectors.sources import Source
from signal_engine.errors import ConfigError
from signal_engine.ports import (
    AuditLog,
    BookStore,
    DocumentStore,
    MarketDataStore,
    ObjectStore,
    PositionBook,
    PriceStore,
    RiskLog,
)
from signal_engine.storage.primary_sources import PRIMARY_SOURCES_VARIABLE, primary_source_map

if TYPE_CHECKING:
    from signal_engine.serving.service import BarSource

DEFAULT_DATABASE_URL = "sqlite:///out/store/signal_engine.db"
DEFAULT_OBJECT_STORE = "out/store/objects"
DATABASE_NAME = "signal_engine"
_ENV = {
    "database_url": "SIGNAL_ENGINE_DATABASE_URL",
    "database_secret": "SIGNAL_ENGINE_DATABASE_SECRET",
    "document_url": "SIGNAL_ENGINE_DOCUMENT_URL",
    "document_secret": "SIGNAL_ENGINE_DOCUMENT_SECRET",
    "document_database": "SIGNAL_ENGINE_DOCUMENT_DATABASE",
    "document_ca_file": "SIGNAL_ENGINE_DOCUMENT_CA_FILE",
    "database_ca_file": "SIGNAL_ENGINE_DATABASE_CA_FILE",
    "object_store": "SIGNAL_ENGINE_OBJECT_STORE",
    "http_timeout": "SIGNAL_ENGINE_HTTP_TIMEOUT",
    "primary_sources": PRIMARY_SOURCES_VARIABLE,
}


@dataclass(frozen=True)
class Settings:
    """Where the stores are; every field has an environment variable (see the module docstring)."""

    database_url: str = DEFAULT_DATABASE_URL
    database_secret: str = ""
    document_url: str = ""
    document_secret: str = ""
    document_database: str = DATABASE_NAME
    document_ca_file: str = ""
    database_ca_file: str = ""
    object_store: str = DEFAULT_OBJECT_STORE
    http_timeout: float = 10.0
    # Whether the stores must be reached over verified TLS (true in AWS Lambda, see the module docstring).
    require_verified_tls: bool = False
    primary_sources: str = ""

    @property
    def primary_source_map(self) -> dict[str, str]:
        """``AAPL=nasdaq,MSFT=yahoo`` as a mapping; a malformed entry is a ConfigError naming it."""
        return primary_source_map(self.primary_sources)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (default ``os.environ``); keyword overrides that are not None win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {name: env[var] for name, var in _ENV.items() if env.get(var)}
        if "http_timeout" in values:
            try:
                values["http_timeout"] = float(values["http_timeout"])
            except ValueError:
                raise ConfigError(f"{_ENV['http_timeout']}={values['http_timeout']!r} is not a number of seconds") \
                    from None
        values["require_verified_tls"] = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return replace(cls(**values), **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Storage:
    """The wired stores: ``prices``, ``market``, ``documents``, ``objects``, ``audit``, ``positions``, ``risk``,
    ``books`` (live book states, in the SQL database) and ``recent_bars`` (the latest stored bars as the Signal
    API reads them)."""

    prices: PriceStore
    market: MarketDataStore
    documents: DocumentStore
    objects: ObjectStore
    audit: AuditLog
    positions: PositionBook
    risk: RiskLog
    books: BookStore
    recent_bars: BarSource
    schema_version: int
    closers: tuple[Callable[[], None], ...] = field(default=(), repr=False)

    def close(self) -> None:
        for close in self.closers:
            close()


def bootstrap(settings: Settings | None = None, *, aws_client: Callable[[str], Any] | None = None) -> Storage:
    """Connect (and migrate) the stores that ``settings`` name; ``aws_client(service)`` builds boto3 clients."""
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.adapters.sql.recent_bars import SqlRecentBars

    settings = settings or Settings.from_env()
    client = aws_client or _boto3_client
    database = SqlDatabase.connect(_database_url(settings, client), primary_sources=settings.primary_source_map,
                                   ca_file=settings.database_ca_file,
                                   require_verified_tls=settings.require_verified_tls)
    documents: DocumentStore = database.documents
    document_url = _document_url(settings, client)
    if document_url:
        from signal_engine.adapters.documentdb import DocumentDbStore, connect_documentdb

        documents = DocumentDbStore(connect_documentdb(document_url, settings.document_database))
    return Storage(prices=database.prices, market=database.market, documents=documents,
                   objects=object_store(settings.object_store, client), audit=database.ledger,
                   positions=database.ledger, risk=database.ledger, books=database.books,
                   recent_bars=SqlRecentBars(database.engine, settings.primary_source_map),
                   schema_version=database.schema_version, closers=(database.close,))


def build_source(name: str, settings: Settings | None = None, **client_options: Any) -> Source:
    """A source with a real network transport, timeouts, retries and rate limiting.

    The transport is curl_cffi impersonating Chrome (Yahoo refuses Python's own TLS client); without
    curl_cffi installed it falls back to urllib, which Nasdaq accepts and Yahoo mostly refuses with 429.
    """
    if name not in SOURCES:
        raise ConfigError(f"unknown source {name!r}; expected one of {', '.join(SOURCES)}")
    settings = settings or Settings.from_env()
    client = HttpClient(_transport(), timeout=settings.http_timeout, headers=REQUEST_HEADERS[name],
                        **client_options)
    return SOURCES[name](client)


def _transport() -> Any:
    try:
        from signal_engine.adapters.curl_transport import CurlCffiTransport

        return CurlCffiTransport()
    except ImportError:
        from signal_engine.adapters.urllib_transport import UrllibTransport

        return UrllibTransport()


def _database_url(settings: Settings, aws_client: Callable[[str], Any]) -> str:
    if settings.database_secret:
        from signal_engine.adapters.aws_secrets import mysql_url

        return mysql_url(aws_client("secretsmanager"), settings.database_secret, DATABASE_NAME)
    return settings.database_url


def _document_url(settings: Settings, aws_client: Callable[[str], Any]) -> str:
    url = settings.document_url
    if settings.document_secret:
        from signal_engine.adapters.aws_secrets import documentdb_url

        url = documentdb_url(aws_client("secretsmanager"), settings.document_secret)
    from signal_engine.adapters.aws_secrets import documentdb_client_url

    return documentdb_client_url(url, settings.document_ca_file, require_verified_tls=settings.require_verified_tls)


def _boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service)
