"""What the live-step tests share: head cuts of real price files, `signal-engine train` of the whole book on them,
SQLite stores holding some of the cuts, and the stored book read back table by table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.cli import main
from signal_engine.storage.ingest import ingest_prices

PriceCuts = dict[tuple[str, int], Path]
"""(symbol, rows) -> a CSV holding the first ``rows`` bars of the symbol."""


def cut_prices(folder: Path, sources: Mapping[str, Path], cuts: Iterable[int]) -> PriceCuts:
    """Per symbol (symbol -> its real price CSV), one file per cut holding the header and the first ``rows`` bars."""
    files: PriceCuts = {}
    counts = list(cuts)
    for symbol, source in sources.items():
        lines = source.read_text().splitlines(keepends=True)
        for rows in counts:
            path = folder / f"{symbol}_{rows}.csv"
            path.write_text("".join(lines[: rows + 1]))
            files[symbol, rows] = path
    return files


def train_book(folder: Path, config: str, prices: Mapping[str, Path]) -> Path:
    """`signal-engine train` with ``config`` on ``prices`` (symbol -> CSV) into ``folder/models``; the version
    folder."""
    (folder / "config.yaml").write_text(config)
    args = ["train", "--config", str(folder / "config.yaml"), "--registry", str(folder / "models")]
    for symbol, path in prices.items():
        args += ["--prices", str(path), "--symbol", symbol]
    assert main(args) == 0
    return folder / "models" / (folder / "models" / "CURRENT").read_text().strip()


def store_prices(path: Path, prices: PriceCuts, rows: Mapping[str, int]) -> SqlDatabase:
    """A SQLite store at ``path`` holding, per symbol, the first ``rows[symbol]`` bars."""
    database = SqlDatabase.connect(f"sqlite:///{path}")
    for symbol, n in rows.items():
        ingest_prices(prices[symbol, n], database.prices, symbol=symbol)
    return database


class Stores:
    """The stores ``step_books`` reads and writes, on one SQL database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.prices = database.prices
        self.books = database.books
        self.recent_bars = SqlRecentBars(database.engine)


def book_positions(database: SqlDatabase, book: str) -> pd.DataFrame:
    """Every stepped bar's positions (bar time x symbol), read from the store's table."""
    with database.engine.connect() as connection:
        rows = list(connection.execute(sa.text(
            "select bar_time, symbol, position from book_positions where book = :b order by bar_time"), {"b": book}))
    frame = pd.DataFrame(rows, columns=["bar_time", "symbol", "position"])
    return frame.pivot(index="bar_time", columns="symbol", values="position")


BOOK_TABLES = {
    "book_states": (("bar_time",), ("state", "inputs_digest")),
    "book_positions": (("bar_time", "symbol"), ("position", "contributions")),
    "book_events": (("bar_time", "seq"), ("component", "kind", "rule", "symbol", "model", "value", "threshold",
                                          "detail")),
}
"""What a step persists, per table: its key (less the book) and every other column but the wall-clock
``created_at``."""


def stored_book(database: SqlDatabase, book: str) -> dict[str, list[dict[str, Any]]]:
    """Every row the step committed for ``book`` (states, positions with their contributions, events), JSON columns
    parsed, in primary-key order: what two runs of the step must agree on."""
    stored: dict[str, list[dict[str, Any]]] = {}
    with database.engine.connect() as connection:
        for table, (key, values) in BOOK_TABLES.items():
            columns = key + values
            rows = connection.execute(sa.text(f"select {', '.join(columns)} from {table} where book = :b "
                                              f"order by {', '.join(key)}"), {"b": book})
            stored[table] = [{c: _parsed(c, v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return stored


def _parsed(column: str, value: Any) -> Any:
    if column in ("state", "contributions", "detail") and isinstance(value, str):
        return json.loads(value)
    return value
