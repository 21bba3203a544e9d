"""The live book step on real prices: `signal-engine train` writes the whole book, `signal-engine step` steps it over
the bars stored after training, through the Signal API's own MoE path, idempotently, after a crash, in pieces, and
without reading a bar after the one it decides."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.cli import load_configs, main
from signal_engine.data.loader import load_prices
from signal_engine.live.books import BookStepReport, step_books
from signal_engine.live.models import LiveTimeframeModel
from signal_engine.pipeline import backtest_series
from signal_engine.serving.book_bundle import BOOK_FILE, BookBundle
from signal_engine.serving.bundle import BundleError
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from signal_engine.storage.ingest import ingest_prices
from tests.fixtures.configs import TWO_MODEL_BOOK
from tests.live_step_support import PriceCuts, Stores, book_positions, cut_prices, store_prices, train_book

pytestmark = pytest.mark.slow

CONFIG = TWO_MODEL_BOOK
# Each step of a bar asks every model's experts over the bar's window (which sets the time): 20 live bars, enough
# for a crash at the 15th commit, and a symbol stopping LIVE - MIDWAY bars early is past ENDED_AFTER_BARS.
TRAINED = 650
MIDWAY = 660
LIVE = 670


@pytest.fixture(scope="module")
def prices(goog_csv: Path, eurusd_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> PriceCuts:
    """Head cuts of real daily (GOOG, and the same bars as GOOGB: a second symbol of the daily book) and hourly
    (EURUSD) bars: the first TRAINED rows train, the rows up to LIVE arrive later."""
    return cut_prices(tmp_path_factory.mktemp("prices"), {"GOOG": goog_csv, "GOOGB": goog_csv, "EURUSD": eurusd_csv},
                      (TRAINED, MIDWAY, LIVE - 2, LIVE))


@pytest.fixture(scope="module")
def version(prices: PriceCuts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    training = {symbol: prices[symbol, TRAINED] for symbol in ("GOOG", "GOOGB", "EURUSD")}
    return train_book(tmp_path_factory.mktemp("train"), CONFIG, training)


def _step(database: SqlDatabase, version: Path, **kwargs: Any) -> dict[str, BookStepReport]:
    return {r.book: r for r in step_books(Stores(database), version, **kwargs)}


ALL_LIVE = {"GOOG": LIVE, "GOOGB": LIVE, "EURUSD": LIVE}


@pytest.fixture(scope="module")
def stepped(version: Path, prices: PriceCuts, tmp_path_factory: pytest.TempPathFactory,
            ) -> tuple[SqlDatabase, dict[str, BookStepReport]]:
    database = store_prices(tmp_path_factory.mktemp("live") / "store.db", prices, ALL_LIVE)
    return database, _step(database, version)


def test_training_writes_the_whole_book_and_serving_loads_it(version: Path) -> None:
    bundle = BookBundle.load(version)
    daily, hourly = bundle.book("daily"), bundle.book("1h")
    assert daily.symbols == ("GOOG", "GOOGB") and hourly.symbols == ("EURUSD",)
    assert [m.spec.name for m in daily.models] == ["short", "medium"]
    assert [m.spec.horizon for m in daily.models] == [5, 20] and [m.spec.horizon for m in hourly.models] == [6, 24]
    assert daily.models[0].bundle == "."  # the MoE's own horizon: the version's bundle
    assert daily.models[1].bundle == "books/daily/medium"
    assert daily.timeframes == {"GOOG": "1d", "GOOGB": "1d"} and hourly.timeframes == {"EURUSD": "1h"}
    assert daily.periods_per_year == pytest.approx(252, rel=0.05)
    assert hourly.periods_per_year > 4000
    assert set(daily.cost_bps) == {"GOOG", "GOOGB"}
    assert daily.config.timeframes == ("short", "medium")
    assert bundle.bundles["books/daily/medium"].symbols == ("GOOG", "GOOGB")


def test_the_seed_is_the_state_the_backtests_book_ends_in(version: Path, prices: PriceCuts,
                                                          tmp_path: Path) -> None:
    """`signal-engine backtest` on the training bars with the training config: its books' final states are the
    bundle's seeds, to the last bit, so a live book starts where the backtest's book ended."""
    bundle = BookBundle.load(version)
    (tmp_path / "config.yaml").write_text(CONFIG)
    config, orchestration = load_configs("quick", tmp_path / "config.yaml")
    series = [load_prices(prices[s, TRAINED], s) for s in ("GOOG", "GOOGB", "EURUSD")]
    output = backtest_series(series, tmp_path / "backtest", config, orchestration=orchestration, jobs=1)
    assert output.portfolio is not None
    for book in output.portfolio.books:
        final = book.result.final_state
        assert final is not None
        assert final.to_json() == bundle.seed_state(bundle.book(book.name)).to_json()  # type: ignore[union-attr]


@pytest.mark.parametrize("damage, named", [
    (lambda root: (root / BOOK_FILE).unlink(), "book.json: missing"),
    (lambda root: (root / "books" / "daily" / "medium" / "bundle.json").unlink(), "books/daily/medium/bundle.json"),
    (lambda root: shutil.rmtree(root / "books" / "1h" / "medium" / "experts"), "books/1h/medium/experts/manifest.json"),
    (lambda root: _edit(root, lambda d: d["books"][0]["cost_bps"].pop("GOOGB")), "cost_bps' lacks GOOGB"),
    (lambda root: _edit(root, lambda d: d["books"][0]["orchestration"].pop("max_asset_short_exposure")),
     "max_asset_short_exposure"),
    (lambda root: _edit(root, lambda d: d["books"][1].pop("periods_per_year")), "books[1].periods_per_year"),
    (lambda root: (root / "books" / "daily" / "seed.json").unlink(), "books/daily/seed.json: missing"),
    (lambda root: _edit(root, lambda d: d["books"][0]["cost_bps"].update(GOOG=99.0)), "seed.json: .*cost"),
])
def test_serving_refuses_a_bundle_that_lacks_part_of_the_book(version: Path, tmp_path: Path, damage: Any,
                                                               named: str) -> None:
    copy = tmp_path / version.name
    shutil.copytree(version, copy)
    damage(copy)
    with pytest.raises(BundleError, match=named.replace("[", r"\[").replace("]", r"\]")):
        BookBundle.load(copy)


def _edit(root: Path, change: Any) -> None:
    document = json.loads((root / BOOK_FILE).read_text())
    change(document)
    (root / BOOK_FILE).write_text(json.dumps(document))


def test_the_step_starts_after_the_training_data_and_steps_every_new_bar(
        stepped: tuple[SqlDatabase, dict[str, BookStepReport]], prices: PriceCuts) -> None:
    database, reports = stepped
    daily, hourly = reports["daily"], reports["1h"]
    assert daily.seeded and hourly.seeded  # a new book starts from the bundle's seed, at the last training bar
    assert daily.stepped == hourly.stepped == LIVE - TRAINED  # then steps only the bars after the training data
    goog = pd.read_csv(prices["GOOG", LIVE], parse_dates=["Date"])
    assert daily.latest_bar == goog["Date"].iloc[-1].to_pydatetime()
    positions = book_positions(database, "daily")
    assert list(positions.index[:2]) == [f"{goog['Date'].iloc[i]}.000000" for i in (TRAINED - 1, TRAINED)]
    assert len(positions) == LIVE - TRAINED + 1 and positions.abs().to_numpy().max() > 0  # the book trades
    assert not daily.waiting and not daily.ended


def test_a_second_step_changes_nothing(stepped: tuple[SqlDatabase, dict[str, BookStepReport]],
                                       version: Path) -> None:
    database, reports = stepped
    before = book_positions(database, "daily")
    again = _step(database, version)
    assert again["daily"].stepped == again["1h"].stepped == 0
    assert again["daily"].positions == reports["daily"].positions
    pd.testing.assert_frame_equal(book_positions(database, "daily"), before)


def test_steps_in_pieces_after_missed_runs_end_where_one_step_does(
        stepped: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path, prices: PriceCuts,
        tmp_path: Path) -> None:
    database, _ = stepped
    pieces = store_prices(tmp_path / "pieces.db", prices, {"GOOG": MIDWAY, "GOOGB": MIDWAY, "EURUSD": MIDWAY})
    first = _step(pieces, version)
    assert first["daily"].stepped == MIDWAY - TRAINED
    for symbol in ALL_LIVE:  # the collectors catch up: LIVE - MIDWAY more bars arrive at once
        ingest_prices(prices[symbol, LIVE], pieces.prices, symbol=symbol)
    assert _step(pieces, version)["daily"].stepped == LIVE - MIDWAY
    for book in ("daily", "1h"):
        pd.testing.assert_frame_equal(book_positions(pieces, book), book_positions(database, book))
        assert pieces.books.latest(book)[1].to_json() == database.books.latest(book)[1].to_json()  # type: ignore[index]


def test_a_crash_before_the_commit_leaves_the_previous_state_and_the_rerun_ends_where_one_step_does(
        stepped: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path, prices: PriceCuts,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database, _ = stepped
    crashing = store_prices(tmp_path / "crash.db", prices, ALL_LIVE)
    commit = crashing.books.commit_step
    calls = {"n": 0}

    def crash_at_the_15th(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 15:
            raise ConnectionError("database went away")
        commit(*args, **kwargs)

    monkeypatch.setattr(crashing.books, "commit_step", crash_at_the_15th)
    with pytest.raises(ConnectionError):
        _step(crashing, version, books=["daily"])
    assert len(book_positions(crashing, "daily")) == 14  # the seed and 13 bars committed, the 14th bar not
    monkeypatch.setattr(crashing.books, "commit_step", commit)
    assert _step(crashing, version, books=["daily"])["daily"].stepped == LIVE - TRAINED - 13
    pd.testing.assert_frame_equal(book_positions(crashing, "daily"), book_positions(database, "daily"))
    assert crashing.books.latest("daily")[1].to_json() == database.books.latest("daily")[1].to_json()  # type: ignore[index]


def test_the_step_at_a_bar_reads_nothing_after_it(
        stepped: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path, prices: PriceCuts,
        tmp_path: Path) -> None:
    """A store that holds bars up to row MIDWAY only gives the same positions up to there as the full store."""
    database, _ = stepped
    truncated = store_prices(tmp_path / "truncated.db", prices, {"GOOG": MIDWAY, "GOOGB": MIDWAY, "EURUSD": MIDWAY})
    _step(truncated, version)
    for book in ("daily", "1h"):
        short = book_positions(truncated, book)
        pd.testing.assert_frame_equal(short, book_positions(database, book).loc[short.index])


def test_a_lagging_symbol_holds_the_book_back_and_an_ended_one_does_not(
        version: Path, prices: PriceCuts, tmp_path: Path) -> None:
    goog = pd.read_csv(prices["GOOG", LIVE], parse_dates=["Date"])["Date"]
    lagging = store_prices(tmp_path / "lag.db", prices, {"GOOG": LIVE, "GOOGB": LIVE - 2, "EURUSD": TRAINED})
    report = _step(lagging, version, books=["daily"])["daily"]
    assert report.waiting == ("GOOGB",) and report.ended == ()
    assert report.stepped == LIVE - 2 - TRAINED and report.latest_bar == goog.iloc[LIVE - 3].to_pydatetime()
    ingest_prices(prices["GOOGB", LIVE], lagging.prices, symbol="GOOGB")  # its collector catches up
    report = _step(lagging, version, books=["daily"])["daily"]
    assert report.stepped == 2 and report.waiting == () and report.latest_bar == goog.iloc[-1].to_pydatetime()
    ended = store_prices(tmp_path / "ended.db", prices, {"GOOG": LIVE, "GOOGB": MIDWAY, "EURUSD": TRAINED})
    report = _step(ended, version, books=["daily"])["daily"]  # GOOGB's bars stop LIVE - MIDWAY bars before GOOG's
    assert report.ended == ("GOOGB",) and report.stepped == LIVE - TRAINED
    assert report.latest_bar == goog.iloc[-1].to_pydatetime()


def test_each_models_call_is_what_the_signal_api_answers_for_the_same_bars(
        stepped: tuple[SqlDatabase, dict[str, BookStepReport]], version: Path) -> None:
    """The book's short model is the version's own MoE: its call at the last bar, with the model's previous
    position, is the Signal API's unmanaged answer for the symbol at that bar."""
    database, reports = stepped
    bundle = BookBundle.load(version)
    book = bundle.book("daily")
    serving = bundle.bundles["."]
    experts = InProcessExperts(version / "experts")
    model = LiveTimeframeModel(book.models[0].spec, serving, experts)
    bars = SqlRecentBars(database.engine)
    latest = reports["daily"].latest_bar
    assert latest is not None
    bar_before = pd.Timestamp(book_positions(database, "daily").index[-2]).to_pydatetime()
    state_before = database.books.stepped("daily", bar_before)
    assert state_before is not None
    previous = float(state_before[0].unmanaged[0, 0])  # the short model's own GOOG position at the bar before
    rows = bars.recent_bars("GOOG", "1d", latest, model.bars_needed)
    call = model.call("GOOG", "1d", rows, previous)
    service = SignalService(serving, experts, None, bars)
    answer = service.signal(SignalRequest(symbol="GOOG", as_of=datetime.fromisoformat(latest.isoformat() + "+00:00"),
                                          position=previous))
    assert call is not None
    assert call.direction * call.size == pytest.approx(np.clip(answer.position, -1, 1), abs=1e-12)
    assert call.score == pytest.approx(answer.score, abs=1e-12)
    assert call.confidence == pytest.approx(answer.confidence, abs=1e-12)


def test_step_refuses_a_version_trained_without_the_book(prices: PriceCuts, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    args = ["train", "--no-book", "--config", str(tmp_path / "config.yaml"), "--registry", str(tmp_path / "models"),
            "--prices", str(prices["GOOG", TRAINED]), "--symbol", "GOOG"]
    assert main(args) == 0
    assert main(["step", "--registry", str(tmp_path / "models"), "--database", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    assert "book.json: missing" in capsys.readouterr().err
