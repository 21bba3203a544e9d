"""The MySQL upsert without a server: SQLAlchemy's own MySQL compiler renders the statement the price store sends.

The MariaDB tests run the path only when a server is up; this runs in every test run and checks what MySQL
would be sent: ``ON DUPLICATE KEY UPDATE`` sets every non-key column from the inserted row and no key column, and
the key the store upserts by is a key of the table (else MySQL would never see a duplicate and add rows).
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import upsert_statement
from signal_engine.adapters.sql.prices import ACTION_KEY, BAR_KEY, DISAGREEMENT_KEY
from signal_engine.errors import ConfigError

UPSERTS = [(schema.bars, BAR_KEY), (schema.bar_disagreements, DISAGREEMENT_KEY),
           (schema.corporate_actions, ACTION_KEY), (schema.positions, ("symbol",))]


def _table_keys(table: sa.Table) -> list[set[str]]:
    keys = [{column.name for column in table.primary_key.columns}]
    keys += [{column.name for column in constraint.columns} for constraint in table.constraints
             if isinstance(constraint, sa.UniqueConstraint)]
    keys += [{column.name for column in index.columns} for index in table.indexes if index.unique]
    return keys


@pytest.mark.parametrize(("table", "key"), UPSERTS, ids=[table.name for table, _ in UPSERTS])
@pytest.mark.parametrize("is_mariadb", [False, True], ids=["mysql", "mariadb"])
def test_the_mysql_upsert_updates_every_value_column_from_the_inserted_row(
        table: sa.Table, key: tuple[str, ...], is_mariadb: bool) -> None:
    sql = str(upsert_statement("mysql", table, key).compile(dialect=mysql.dialect(is_mariadb=is_mariadb)))
    insert, _, update = sql.partition(" ON DUPLICATE KEY UPDATE ")
    assert update, sql
    assert insert.startswith(f"INSERT INTO {table.name} (")
    assignments = dict(re.findall(r"(\w+) = VALUES\((\w+)\)", update))
    values = [column.name for column in table.columns if column.name not in key]
    assert list(assignments) == values, "each non-key column, and only those, is set"
    assert all(target == source for target, source in assignments.items()), "each from its own inserted value"
    assert set(key) in _table_keys(table), f"{table.name}: {key} is not a primary or unique key"


@pytest.mark.parametrize(("table", "key"), UPSERTS, ids=[table.name for table, _ in UPSERTS])
def test_the_sqlite_upsert_conflicts_on_the_key_and_sets_the_value_columns(
        table: sa.Table, key: tuple[str, ...]) -> None:
    sql = str(upsert_statement("sqlite", table, key).compile(dialect=sqlite.dialect()))
    conflict = re.search(r"ON CONFLICT \(([^)]*)\) DO UPDATE SET (.*)$", sql, re.S)
    assert conflict is not None, sql
    assert [name.strip() for name in conflict.group(1).split(",")] == list(key)
    assert dict(re.findall(r"(\w+) = excluded\.(\w+)", conflict.group(2))) == {
        column.name: column.name for column in table.columns if column.name not in key}


def test_an_unknown_dialect_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="'postgresql'; expected mysql or sqlite"):
        upsert_statement("postgresql", schema.bars, BAR_KEY)
