"""Stores for the SQL storage tests: each test runs on SQLite and on MariaDB (skipped, saying why, without it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.migrations import MIGRATIONS
from tests.fixtures.servers import delete_all_rows, drop_all_tables, mysql_url_or_skip


@pytest.fixture(params=["sqlite", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db" if request.param == "sqlite" else mysql_url_or_skip()


@pytest.fixture
def database(url: str) -> Iterator[SqlDatabase]:
    connected = SqlDatabase.connect(url)
    if url.startswith("mysql"):
        delete_all_rows(url)
    yield connected
    connected.close()


@pytest.fixture
def mariadb_database() -> Iterator[SqlDatabase]:
    """A store on the test MariaDB alone, emptied first (skipped, saying why, without a server)."""
    url = mysql_url_or_skip()
    connected = SqlDatabase.connect(url)
    delete_all_rows(url)
    yield connected
    connected.close()


def store_at_version(url: str, version: int) -> sa.Engine:
    """A store left at schema ``version`` (the first ``version`` migrations applied), as an older release left it."""
    if url.startswith("mysql"):
        drop_all_tables(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        schema.schema_version.create(connection)
        for step in MIGRATIONS[:version]:
            step.apply(connection)
            connection.execute(schema.schema_version.insert().values(version=step.version, description="v",
                                                                    applied_at=datetime(2024, 1, 1)))
    return engine
