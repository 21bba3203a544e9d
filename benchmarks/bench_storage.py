"""Bars upserted per second into MariaDB: one batched write against one write per bar, in one run.

    eval "$(bash .ci/run mariadb)"    # starts the test MariaDB and exports SIGNAL_ENGINE_TEST_MYSQL_URL
    .venv/bin/python benchmarks/bench_storage.py [--url mysql+pymysql://...] [--bars 20000 --row-bars 2000]

Both paths go through the real adapter (``SqlPriceStore.write_bars``): the batched path writes all bars in
one transaction (existing rows read in chunks, ``INSERT .. ON DUPLICATE KEY UPDATE`` in batches of 1,000);
the row-by-row path calls it once per bar, so each bar is its own transaction, as a naive collector would
write. Also timed: re-writing the same batch (every bar unchanged: reads only) and restating it (every bar
changed: updates plus one restatement record each). Runs in the ``signal_engine_bench`` database on the
same server, so the test database is left alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DATABASE = "signal_engine_bench"


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds to write ``rows`` bars."""

    label: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def storage_api() -> tuple[Any, Any, Any]:
    """SqlDatabase, Bar and the test helper that empties a database (the checkout's, installed or not)."""
    root = str(Path(__file__).resolve().parents[1])
    if importlib.util.find_spec("tests") is None or importlib.util.find_spec("signal_engine") is None:
        sys.path.insert(0, root)
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.storage.records import Bar
    from tests.fixtures.servers import drop_all_tables

    return SqlDatabase, Bar, drop_all_tables


def synthetic_bars(bar_type: Any, count: int, symbol: str) -> list[Any]:
    start = datetime(1990, 1, 1)
    return [bar_type(symbol, "1d", start + timedelta(days=i), 100.0 + i * 0.01, 101.0 + i * 0.01, 99.0 + i * 0.01,
                     100.5 + i * 0.01, 1e6 + i, None, "bench") for i in range(count)]


def timed(label: str, rows: int, action: Callable[[], object]) -> Timing:
    started = time.perf_counter()
    action()
    return Timing(label, rows, time.perf_counter() - started)


def run(url: str, bars: int, row_bars: int) -> list[Timing]:
    sql_database, bar_type, drop_all_tables = storage_api()
    drop_all_tables(url)
    database = sql_database.connect(url)
    try:
        batch = synthetic_bars(bar_type, bars, "BATCH")
        single = synthetic_bars(bar_type, row_bars, "SINGLE")
        timings = [
            timed("batched, new bars (one transaction)", bars, lambda: database.prices.write_bars(batch)),
            timed("row by row, new bars (one transaction each)", row_bars,
                  lambda: [database.prices.write_bars([bar]) for bar in single]),
            timed("batched, same bars again (unchanged)", bars, lambda: database.prices.write_bars(batch)),
            timed("batched, every bar restated", bars,
                  lambda: database.prices.write_bars([replace(bar, close=bar.close + 0.01) for bar in batch])),
        ]
        assert database.prices.count_bars() == bars + row_bars
        assert len(database.prices.restatements("BATCH", "1d")) == bars
        return timings
    finally:
        database.close()
        drop_all_tables(url)


def bench_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SIGNAL_ENGINE_TEST_MYSQL_URL"),
                        help="a mysql+pymysql:// URL on the server (default: $SIGNAL_ENGINE_TEST_MYSQL_URL)")
    parser.add_argument("--bars", type=int, default=20_000, help="bars in the batched write")
    parser.add_argument("--row-bars", type=int, default=2_000, help="bars written one by one")
    args = parser.parse_args()
    if not args.url:
        print("no MariaDB: run `eval \"$(bash .ci/run mariadb)\"` first, or pass --url", file=sys.stderr)
        return 2
    timings = run(bench_url(args.url), args.bars, args.row_bars)
    width = max(len(t.label) for t in timings)
    for t in timings:
        print(f"{t.label:<{width}}  {t.rows:>7,} bars  {t.seconds:8.3f} s  {t.rows_per_second:>10,.0f} bars/s")
    speedup = timings[0].rows_per_second / timings[1].rows_per_second
    print(f"batched / row-by-row: {speedup:.1f}x the bars per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
