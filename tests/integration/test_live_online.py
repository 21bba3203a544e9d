"""Online learning in the live book, on real prices: each timeframe model's learner is carried in the book state,
learns each label when it becomes known (as ``make_labels`` defines it), and survives a step split in pieces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.adapters.sql.recent_bars import SqlRecentBars
from signal_engine.cli import main
from signal_engine.data.loader import load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.labels import make_labels
from signal_engine.live.books import step_books
from signal_engine.live.online import LiveLearner
from signal_engine.moe.online import OnlineLearner, RealisedRow
from signal_engine.serving.book_bundle import BookBundle
from signal_engine.storage.ingest import ingest_prices
from tests.fixtures.configs import TWO_MODEL_BOOK

pytestmark = pytest.mark.slow

CONFIG = TWO_MODEL_BOOK + """moe:
  online:
    enabled: true
"""
TRAINED, MIDWAY, LIVE = 650, 668, 690
HORIZONS = {"short": 5, "medium": 20}


@pytest.fixture(scope="module")
def prices(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("prices")
    lines = goog_csv.read_text().splitlines(keepends=True)
    files = {}
    for rows in (TRAINED, MIDWAY, LIVE):
        files[rows] = folder / f"GOOG_{rows}.csv"
        files[rows].write_text("".join(lines[: rows + 1]))
    return files


@pytest.fixture(scope="module")
def version(prices: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    (folder / "config.yaml").write_text(CONFIG)
    assert main(["train", "--config", str(folder / "config.yaml"), "--registry", str(folder / "models"),
                 "--prices", str(prices[TRAINED]), "--symbol", "GOOG"]) == 0
    return folder / "models" / (folder / "models" / "CURRENT").read_text().strip()


class _Stores:
    def __init__(self, database: SqlDatabase) -> None:
        self.prices, self.books = database.prices, database.books
        self.recent_bars = SqlRecentBars(database.engine)


def _database(path: Path, prices: Path) -> SqlDatabase:
    database = SqlDatabase.connect(f"sqlite:///{path}")
    ingest_prices(prices, database.prices, symbol="GOOG")
    return database


@dataclass(frozen=True)
class Learnt:
    """One label a live learner learnt: its model's horizon, the bar it labels, the bar it was learnt at."""

    horizon: int
    labelled: pd.Timestamp
    at: pd.Timestamp
    row: RealisedRow


@pytest.fixture(scope="module")
def learnt(version: Path, prices: dict[int, Path], tmp_path_factory: pytest.TempPathFactory,
           ) -> tuple[SqlDatabase, list[Learnt]]:
    """The whole live span stepped at once, with every label the learners learnt."""
    database = _database(tmp_path_factory.mktemp("live") / "store.db", prices[LIVE])
    seen: list[Learnt] = []
    rows_learnt: list[RealisedRow] = []
    learn, learn_known = OnlineLearner.learn, LiveLearner.learn_known

    def recording_learn(self: OnlineLearner, row: RealisedRow) -> None:
        rows_learnt.append(row)
        learn(self, row)

    def recording_learn_known(self: LiveLearner, rows: Sequence[Mapping[str, Any]]) -> int:
        before = [bar.timestamp for bar in self.pending]
        start = len(rows_learnt)
        count = learn_known(self, rows)
        after = {bar.timestamp for bar in self.pending}
        done = [t for t in before if t not in after]
        assert len(done) == count == len(rows_learnt) - start
        seen.extend(Learnt(self.settings.horizon, pd.Timestamp(t), pd.Timestamp(str(rows[-1]["timestamp"])), row)
                    for t, row in zip(done, rows_learnt[start:], strict=True))
        return count

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OnlineLearner, "learn", recording_learn)
        patch.setattr(LiveLearner, "learn_known", recording_learn_known)
        step_books(_Stores(database), version)
    return database, seen


def test_every_timeframe_model_learns_online_with_its_own_label_horizon(version: Path) -> None:
    bundle = BookBundle.load(version)
    for model in bundle.book("daily").models:
        online = bundle.bundles[model.bundle].online
        assert online is not None and online.horizon == HORIZONS[model.spec.name]
        assert (online.gate_rate, online.meta_rate, online.embargo) == (0.05, 0.01, 0)


def test_the_book_state_carries_each_learner_and_each_label_is_learnt_once_when_known(
        learnt: tuple[SqlDatabase, list[Learnt]], version: Path) -> None:
    database, seen = learnt
    latest = database.books.latest("daily")
    assert latest is not None
    state = latest[1].model_state
    assert set(state) == {"short/GOOG", "medium/GOOG"}
    bars = LIVE - TRAINED
    for name, horizon in HORIZONS.items():
        learner = state[f"{name}/GOOG"]
        # each live bar waits `horizon` bars for its label: the first `bars - horizon` are learnt, the rest pend
        assert learner["updates"] == bars - horizon and len(learner["pending"]) == horizon
        assert learner["version"] == BookBundle.load(version).bundles["." if name == "short" else
                                                                     f"books/daily/{name}"].version
    assert len(seen) == sum(bars - h for h in HORIZONS.values())
    short = BookBundle.load(version).bundles["."]
    assert short.gate.weights is not None
    assert not np.allclose(np.array(state["short/GOOG"]["gate"]["kernel"]), short.gate.weights.layers[0][0])


def test_each_label_is_make_labels_at_its_bar_learnt_when_the_walk_forward_knows_it(
        learnt: tuple[SqlDatabase, list[Learnt]], prices: dict[int, Path]) -> None:
    """Forward z and class equal ``make_labels`` on the whole series at the labelled bar (vol30 and closes from
    the stored bars, as the backtest reads them from the file), learnt exactly ``horizon`` bars later (embargo 0),
    as the backtest's learner learns bar ``t - horizon`` at bar t."""
    _, seen = learnt
    series = load_prices(prices[LIVE], "GOOG")
    sigma = series_frame(series)["vol30"].to_numpy()
    index = series.bars.index
    labels = {h: make_labels(series.bars, sigma, horizon=h, threshold=0.5) for h in HORIZONS.values()}
    assert {each.horizon for each in seen} == set(HORIZONS.values())
    for each in seen:
        i = index.get_loc(each.labelled)
        assert index.get_loc(each.at) == i + each.horizon
        assert each.row.forward_z == pytest.approx(labels[each.horizon].forward_z[i], rel=1e-9, abs=1e-12)
        assert each.row.trend == labels[each.horizon].trend[i]


def test_a_step_split_in_pieces_carries_the_learners_through_the_store(
        learnt: tuple[SqlDatabase, list[Learnt]], version: Path, prices: dict[int, Path], tmp_path: Path) -> None:
    whole, _ = learnt
    database = _database(tmp_path / "store.db", prices[MIDWAY])
    step_books(_Stores(database), version)
    ingest_prices(prices[LIVE], database.prices, symbol="GOOG")
    step_books(_Stores(database), version)
    again = step_books(_Stores(database), version)
    assert again[0].stepped == 0
    pieces, at_once = database.books.latest("daily"), whole.books.latest("daily")
    assert pieces is not None and at_once is not None and pieces[0] == at_once[0]
    assert pieces[1].model_state == at_once[1].model_state
    np.testing.assert_array_equal(pieces[1].positions, at_once[1].positions)
