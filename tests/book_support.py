"""A live book in a SQLite store for the Signal API's tests: GOOG and SPX (shipped by `backtesting` and `arch`) with
the point-in-time momentum calls of tests/fixtures/orchestration_golden.py, stepped bar by bar through
``advance_book`` as the live book does. Built once per test process (``book_database``); tests copy the file."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.data.datasets import export_dataset
from signal_engine.orchestration import OrchestrationConfig
from signal_engine.orchestration.inputs import prepare
from signal_engine.orchestration.live import advance_book
from signal_engine.orchestration.step import bar_inputs_at
from tests.fixtures.orchestration_golden import COSTS, real_market

BOOK = "daily"
# every path-dependent part at work (as the golden holding_band_lookback config), so bars carry many events
CONFIG = OrchestrationConfig(holding_discipline=True, drawdown_start=0.01, drawdown_limit=0.04,
                             emergency_drawdown=0.08, max_net_exposure=0.3, correlation_window=30)
BARS = 330
"""The last 330 common bars of GOOG and SPX (2012-2013): 70 bars of decisions after the warm-up."""


@functools.cache
def book_database() -> Path:
    """A migrated SQLite file holding the book ``daily`` (GOOG, SPX) stepped over every bar, one run per bar."""
    folder = Path(tempfile.mkdtemp(prefix="book-store-"))
    market = real_market(export_dataset("GOOG", folder), export_dataset("SPX", folder), bars=BARS)
    signals, closes, volumes = market
    inputs = prepare(signals, closes, CONFIG, volumes)
    path = folder / "book.db"
    database = SqlDatabase.connect(f"sqlite:///{path}")
    try:
        for i in range(len(inputs.timeline)):
            advance_book(database.books, BOOK, [bar_inputs_at(inputs, i)], CONFIG, 252.0, inputs.specs, COSTS)
    finally:
        database.close()
    return path


def copy_of_book_database(folder: Path) -> str:
    """A fresh copy of ``book_database()`` in ``folder``, as a database URL."""
    target = folder / "book.db"
    shutil.copyfile(book_database(), target)
    return f"sqlite:///{target}"
