"""`signal-engine paper` on real prices (a daily and an hourly series: two books): each book replayed bar by bar
through the stores holds the positions the backtest reported, a second run changes nothing, and a step reads
nothing after its bar."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.cli import load_configs, main
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.paper.replay import replay_book
from signal_engine.paper.run import PaperOutput, book_plan, run_paper
from signal_engine.storage.records import Bar, WriteResult
from tests.fixtures.configs import TWO_MODEL_BOOK

pytestmark = pytest.mark.slow

# 100 bars of each series after the walk-forward's first 450 (FEW_REFITS: its min_test_bars, the fewest a run takes),
# in books of two timeframe models (TWO_MODEL_BOOK): replayed, stepped and compared bar by bar, each bar through the
# stores (which sets the time); the parity, the store and the ledger do not depend on how many bars or models.
ROWS = 550


def _head(source: Path, folder: Path) -> Path:
    path = folder / source.name
    path.write_text("".join(source.read_text().splitlines(keepends=True)[: ROWS + 1]))
    return path


@pytest.fixture(scope="module")
def short_goog(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _head(goog_csv, tmp_path_factory.mktemp("prices"))


@pytest.fixture(scope="module")
def short_eurusd(eurusd_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _head(eurusd_csv, tmp_path_factory.mktemp("prices"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "two-model-book.yaml"
    path.write_text(TWO_MODEL_BOOK)
    return path


@pytest.fixture(scope="module")
def paper(short_goog: Path, short_eurusd: Path, config_file: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> PaperOutput:
    out = tmp_path_factory.mktemp("paper")
    database = SqlDatabase.connect(f"sqlite:///{out / 'store.db'}")
    config, orchestration = load_configs("quick", config_file)  # as `paper --config` reads it
    try:
        return run_paper([load_prices(short_goog), load_prices(short_eurusd)], out, config, prices=database.prices,
                         bars=SqlRecentBars(database.engine), books=database.books, orchestration=orchestration,
                         jobs=1)
    finally:
        database.close()


def test_the_replayed_book_holds_the_backtests_positions_to_the_last_bit(paper: PaperOutput) -> None:
    replayed = pd.read_csv(paper.signals_path)
    backtest = pd.read_csv(paper.backtest.signals_path)
    assert len(replayed) == len(backtest) > 100
    pd.testing.assert_frame_equal(replayed.drop(columns="position"), backtest.drop(columns="position"))
    assert np.max(np.abs(replayed["position"] - backtest["position"])) <= 1e-12
    assert [b.replay.name for b in paper.books] == ["daily", "1h"]
    for book, batch in zip(paper.books, paper.backtest.portfolio.books, strict=True):  # type: ignore[union-attr]
        expected = batch.result.positions.loc[:, list(book.replay.symbols)].to_numpy()
        assert np.max(np.abs(book.replay.positions - expected)) <= 1e-12
        assert paper.summary["books"][book.replay.name]["max_abs_position_difference"] <= 1e-12
        assert np.abs(expected).max() > 0.05  # the book trades: the parity is not of zeros


def test_the_store_keeps_the_book_at_its_last_bar(paper: PaperOutput) -> None:
    database = SqlDatabase.connect(f"sqlite:///{paper.signals_path.parent / 'store.db'}")
    try:
        for book, batch in zip(paper.books, paper.backtest.portfolio.books, strict=True):  # type: ignore[union-attr]
            name = book.replay.name
            latest = database.books.latest(name)
            assert latest is not None and latest[0] == book.replay.timeline[-1].to_pydatetime()
            final = batch.result.final_state
            assert final is not None and latest[1].to_json() == final.to_json()  # what `demo` seeds its book with
            (stored,) = database.books.positions(name)
            assert stored.position == book.replay.positions[-1, 0]
        assert database.prices.count_bars("GOOG") == database.prices.count_bars("EURUSD") == ROWS
    finally:
        database.close()


def test_the_ledger_fills_every_order_at_the_next_close_and_compounds_its_returns(paper: PaperOutput) -> None:
    out = paper.signals_path.parent
    orders, fills = pd.read_csv(out / "orders.csv"), pd.read_csv(out / "fills.csv")
    ledger = pd.read_csv(out / "ledger.csv", parse_dates=["timestamp"])
    for name, placed in orders.groupby("book"):  # the last bar's order has no next close yet
        assert int((fills["book"] == name).sum()) in (len(placed), len(placed) - 1)
    assert (pd.to_datetime(fills["filled_at"]) > pd.to_datetime(fills["decided_at"])).all()
    for _, account in ledger.groupby("book"):
        equity = np.cumprod(1.0 + account["net_return"].to_numpy())
        np.testing.assert_allclose(account["equity"], equity, rtol=1e-9)
    summary = json.loads((out / "paper.json").read_text())["books"]
    assert {s["band"]["expectation"] for s in summary.values()} == {"in_sample"}
    band = pd.read_csv(out / "band.csv")
    assert len(band) == len(ledger) and (band["band_low"] <= band["band_high"]).all()
    assert set(ledger["book"]) == set(band["book"]) == {"daily", "1h"}


def test_a_second_run_steps_nothing_and_writes_the_same_signals(paper: PaperOutput, short_goog: Path,
                                                                short_eurusd: Path, config_file: Path) -> None:
    out = paper.signals_path.parent
    first = paper.signals_path.read_bytes()
    assert main(["paper", "--prices", str(short_goog), "--prices", str(short_eurusd), "--out", str(out),
                 "--config", str(config_file), "--jobs", "1"]) == 0
    for summary in json.loads((out / "paper.json").read_text())["books"].values():
        assert (summary["stepped"], summary["replayed"]) == (0, summary["bars"])
    assert paper.signals_path.read_bytes() == first


class _Spy:
    """A price store and bar source that fail the test on any read past the bar being stepped."""

    def __init__(self, database: SqlDatabase) -> None:
        self.prices, self.bars = database.prices, SqlRecentBars(database.engine)
        self.latest: datetime | None = None

    def write_bars(self, bars: list[Bar]) -> WriteResult:
        self.latest = max([self.latest, *(b.timestamp for b in bars)] if self.latest else [b.timestamp for b in bars])
        return self.prices.write_bars(bars)

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None, count: int) -> list[dict[str, Any]]:
        assert end is not None and self.latest is not None and end <= self.latest
        rows = self.bars.recent_bars(symbol, timeframe, end, count)
        assert all(pd.Timestamp(r["timestamp"]) <= pd.Timestamp(end) for r in rows)
        return rows


def test_a_step_reads_nothing_after_its_bar_and_truncated_prices_change_no_earlier_position(
        paper: PaperOutput, short_goog: Path, tmp_path: Path) -> None:
    book = paper.backtest.portfolio.books[0]  # type: ignore[union-attr]
    series = load_prices(short_goog)
    full = paper.books[0].replay
    cut = full.timeline[len(full.timeline) // 2]
    truncated = PriceSeries(series.symbol, series.source, series.bars.loc[series.bars.index <= cut])
    plan = book_plan(book, [truncated])
    plan = replace(plan, timeline=plan.timeline[plan.timeline <= cut])
    database = SqlDatabase.connect(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        spy = _Spy(database)
        replayed = replay_book(plan, spy, spy, database.books)  # type: ignore[arg-type]
    finally:
        database.close()
    assert len(replayed.timeline) == int((full.timeline <= cut).sum())
    np.testing.assert_array_equal(replayed.positions, full.positions[: len(replayed.timeline)])
