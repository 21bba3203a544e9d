"""A SQLite store file commits through a write-ahead log without waiting for the disk, and keeps what it
committed when the process dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from signal_engine.adapters.sql.engine import create_store_engine


def test_a_store_file_uses_a_write_ahead_log_with_normal_sync(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_a_committed_row_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    script = (
        "import os, sqlalchemy as sa\n"
        "from signal_engine.adapters.sql.engine import create_store_engine\n"
        f"engine = create_store_engine('sqlite:///{path}')\n"
        "with engine.begin() as c:\n"
        "    c.exec_driver_sql('CREATE TABLE t (a INTEGER)')\n"
        "    c.exec_driver_sql('INSERT INTO t VALUES (1)')\n"
        "os._exit(9)\n"  # no close, no checkpoint: the row lives only in the log
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 9
    engine = create_store_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT a FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()


def test_an_in_memory_store_is_left_as_sqlite_makes_it() -> None:
    engine = create_store_engine("sqlite://")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "memory"
