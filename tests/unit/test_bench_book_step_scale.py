"""The book-step scaling benchmark: a one-symbol whole-book version aliased to many names loads as a book of them, and
the benchmark steps it with tiny settings."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_book_step_scale import alias_version, main

from signal_engine.data.datasets import export_dataset
from signal_engine.serving.book_bundle import BookBundle
from tests.fixtures.configs import TWO_MODEL_BOOK
from tests.live_step_support import cut_prices, train_book

TRAINED = 650


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    prices = cut_prices(folder, {"GOOG": export_dataset("GOOG", folder)}, (TRAINED,))
    return train_book(folder, TWO_MODEL_BOOK, {"GOOG": prices["GOOG", TRAINED]})


def test_an_aliased_version_is_a_book_of_every_name_with_the_original_symbols_models_and_seed(
        version: Path, tmp_path: Path) -> None:
    names = ["S0000", "S0001", "S0002"]
    aliased = tmp_path / "aliased"
    shutil.copytree(version, aliased)
    alias_version(aliased, names)
    original, bundle = BookBundle.load(version), BookBundle.load(aliased)  # load checks the seed against the book
    book, source = bundle.books[0], original.books[0]
    assert book.symbols == tuple(names) and book.models == source.models and book.config == source.config
    assert dict(book.cost_bps) == dict.fromkeys(names, source.cost_bps["GOOG"])
    for key, model in bundle.bundles.items():
        assert set(names) <= set(model.symbols)
        assert model.experts == original.bundles[key].experts
    seed, goog = bundle.seed_state(book), original.seed_state(source)
    assert seed is not None and goog is not None and seed.bar_time == goog.bar_time
    for column in range(len(names)):
        np.testing.assert_array_equal(seed.final[:, column], goog.final[:, 0])
        np.testing.assert_array_equal(seed.holding.age[:, column], goog.holding.age[:, 0])
        np.testing.assert_array_equal(seed.correlation.assets.rows[:, column], goog.correlation.assets.rows[:, 0])
    np.testing.assert_array_equal(seed.allocation, goog.allocation)


def test_the_benchmark_steps_the_aliased_book_one_bar_for_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--symbols", "1", "2", "--bars", "1", "--no-endpoint", "--train-bars", str(TRAINED)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("in process")]
    assert [(r[2], r[3]) for r in rows] == [("1", "1"), ("2", "1")]
    assert float(rows[0][-1]) == 1.0 and all(float(r[4]) > 0 and float(r[8]) > 0 for r in rows)
