"""The walk-forward across series: the common calendar by hand, and no training window reaching a test block."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation.pooled_walkforward import (
    PanelSeries,
    PooledBlock,
    common_schedule,
    leaks,
    panel_series,
    per_series_block,
    pooled_block,
    pooled_out_of_sample,
    prior_block,
)
from signal_engine.labels import make_labels

HORIZON, EMBARGO = 5, 2
SMALL = WalkForwardConfig(initial_window=60, validation_bars=0, refit_every=25, min_test_bars=0, embargo=EMBARGO)
FITS: list[tuple[pd.DataFrame, np.ndarray]] = []


class Recorder(BaseEstimator):
    """Keeps what each fit was given; predicts the uniform distribution."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        FITS.append((X.copy(), np.asarray(y).copy()))
        return self

    def context_bars(self) -> int:
        return 3

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X), 3), 1.0 / 3.0)


def _series(name: str, index: pd.DatetimeIndex, seed: int) -> PanelSeries:
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, 0.01, len(index))))
    bars = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close}, index=index)
    labels = make_labels(bars, np.full(len(index), 0.01), horizon=HORIZON, threshold=0.5)
    return panel_series(name, bars, labels.trend, labels.known_at_horizon())


@pytest.fixture(scope="module")
def panel() -> dict[str, PanelSeries]:
    """Three calendars: weekdays, every day (starting later), weekdays (starting in between, ending first)."""
    return {
        "WEEKDAYS": _series("WEEKDAYS", pd.bdate_range("2019-01-01", periods=300), 1),
        "EVERYDAY": _series("EVERYDAY", pd.date_range("2019-06-01", periods=250, freq="D"), 2),
        "SHORT": _series("SHORT", pd.bdate_range("2019-03-01", periods=120), 3),
    }


def test_the_common_schedule_by_hand() -> None:
    a = pd.date_range("2020-01-01", "2020-01-10", freq="D")
    b = pd.date_range("2020-01-04", "2020-01-13", freq="D")
    config = WalkForwardConfig(initial_window=3, validation_bars=0, refit_every=4, min_test_bars=0)
    # union 01-01 .. 01-13; A has 3 bars before 01-04, B before 01-07; refits every 4th date from 01-04
    assert common_schedule({"A": a, "B": b}, config) == [
        PooledBlock(pd.Timestamp("2020-01-04"), {"A": 3, "B": 0}, {"A": (3, 7)}),
        PooledBlock(pd.Timestamp("2020-01-08"), {"A": 7, "B": 4}, {"A": (7, 10), "B": (4, 8)}),
        PooledBlock(pd.Timestamp("2020-01-12"), {"A": 9, "B": 8}, {"B": (8, 10)}),
    ]


def test_each_series_is_decided_once_per_bar_from_its_first_refit(panel: dict[str, PanelSeries]) -> None:
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL)
    for name, series in panel.items():
        spans = [block.decide[name] for block in blocks if name in block.decide]
        assert all(stop == next_start for (_, stop), (next_start, _) in itertools.pairwise(spans))
        assert SMALL.initial_window <= spans[0][0] < SMALL.initial_window + SMALL.refit_every
        assert spans[-1][1] == len(series.frame)


def test_from_the_initial_window_by_hand() -> None:
    """The training workflow's schedule: B (3 bars before 01-06, its initial_window bar) is decided from 01-06 by
    the model fitted at 01-04, when B had 1 bar; A from 01-04 as before."""
    a = pd.date_range("2020-01-01", "2020-01-10", freq="D")
    b = pd.date_range("2020-01-03", "2020-01-13", freq="D")
    config = WalkForwardConfig(initial_window=3, validation_bars=0, refit_every=4, min_test_bars=0)
    assert common_schedule({"A": a, "B": b}, config, from_initial_window=True) == [
        PooledBlock(pd.Timestamp("2020-01-04"), {"A": 3, "B": 1}, {"A": (3, 7), "B": (3, 5)}),
        PooledBlock(pd.Timestamp("2020-01-08"), {"A": 7, "B": 5}, {"A": (7, 10), "B": (5, 9)}),
        PooledBlock(pd.Timestamp("2020-01-12"), {"A": 9, "B": 9}, {"B": (9, 11)}),
    ]


def test_from_the_initial_window_every_bar_after_it_is_decided_once_and_no_fit_leaks(
        panel: dict[str, PanelSeries]) -> None:
    """What the gate step's walk-forward reads (``pooled_out_of_sample``): each series decided from its own
    initial_window bar to its end, once per bar, by fits whose inputs end before the block for every series."""
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL, from_initial_window=True)
    for name, series in panel.items():
        spans = [block.decide[name] for block in blocks if name in block.decide]
        assert spans[0][0] == SMALL.initial_window and spans[-1][1] == len(series.frame)
        assert all(stop == next_start for (_, stop), (next_start, _) in itertools.pairwise(spans))
    fits = _fits(panel, blocks, EMBARGO, pooled=True)
    assert len(fits) == len(blocks) > 5
    assert [found for block, X, y in fits for found in leaks(panel, block, X, y, EMBARGO)] == []


def _fits(panel: dict[str, PanelSeries], blocks: list[PooledBlock], embargo: int, *,
          pooled: bool) -> list[tuple[PooledBlock, pd.DataFrame, np.ndarray]]:
    recorded = []
    for block in blocks:
        FITS.clear()
        if pooled:
            pooled_block(panel, block, Recorder(), embargo)
        else:
            per_series_block(panel, block, Recorder(), embargo)
        recorded += [(block, X, y) for X, y in FITS]
    return recorded


@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "per-series"])
def test_no_training_window_of_any_series_reaches_into_a_test_block(panel: dict[str, PanelSeries],
                                                                    pooled: bool) -> None:
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL)
    fits = _fits(panel, blocks, EMBARGO, pooled=pooled)
    assert len(fits) == (len(blocks) if pooled else sum(len(b.decide) for b in blocks)) > 5
    assert [found for block, X, y in fits for found in leaks(panel, block, X, y, EMBARGO)] == []
    # the last pooled fit sees every series; SHORT has ended (last bar 119): its labels of rows 0 .. 112 are known
    # by bar 119 less the embargo (row + 5 <= 117)
    if pooled:
        _, X, y = fits[-1]
        assert set(X["series"]) == set(panel)
        assert (y[X["series"].to_numpy() == "SHORT"] >= 0).sum() == 113


def test_the_check_fails_on_a_planted_label_leak(panel: dict[str, PanelSeries]) -> None:
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL)
    # labels known up to 3 bars after the fit bar: 5 bars too late for an embargo of 2
    fits = _fits(panel, blocks, EMBARGO - 5, pooled=True)
    found = [f for block, X, y in fits for f in leaks(panel, block, X, y, EMBARGO)]
    assert found and all("after the fit bar less 2 bars" in f for f in found)


def test_the_check_fails_on_a_planted_bar_after_the_fit_date(panel: dict[str, PanelSeries]) -> None:
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL)
    late = [replace(b, fit_at={**b.fit_at, "WEEKDAYS": b.fit_at["WEEKDAYS"] + 1}) for b in blocks[:3]]
    fits = _fits(panel, late, EMBARGO, pooled=True)
    found = [f for block, X, y in fits for f in leaks(panel, block, X, y, EMBARGO)]
    assert any("WEEKDAYS: an input bar after the fit date" in f for f in found)
    assert any("WEEKDAYS: a training label known at" in f for f in found)


def test_the_prior_is_the_training_label_frequencies(panel: dict[str, PanelSeries]) -> None:
    block = common_schedule({name: s.frame.index for name, s in panel.items()}, SMALL)[0]
    series = panel["WEEKDAYS"]
    fit_at = block.fit_at["WEEKDAYS"]
    # labels of rows 0 .. fit_at - 5 - 2 are known by the fit bar less the embargo
    counts = np.bincount(series.trend[: fit_at - HORIZON - EMBARGO + 1], minlength=3)
    start, stop = block.decide["WEEKDAYS"]
    np.testing.assert_allclose(prior_block(panel, block, EMBARGO)["WEEKDAYS"], np.tile(counts / counts.sum(),
                                                                                       (stop - start, 1)))


def test_a_series_frame_must_be_time_ordered() -> None:
    index = pd.DatetimeIndex(["2020-01-02", "2020-01-01"])
    with pytest.raises(ValueError, match="X: the dates must increase"):
        panel_series("X", pd.DataFrame({"close": [1.0, 2.0]}, index=index), np.zeros(2), np.arange(2))




class Counter(Recorder):
    """Predicts each series' row as (its refit's fit count, its first bar's close, 0): tells a cached refit from a
    fresh one."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        FITS.append((X.copy(), np.asarray(y).copy()))
        self.fit_number_ = len(FITS)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack((np.full(len(X), float(self.fit_number_)), X["close"].to_numpy(), np.zeros(len(X))))


def test_a_cached_walk_reads_every_refit_back_instead_of_fitting(panel: dict[str, PanelSeries], tmp_path: Path) -> None:
    """The first walk fits every refit and keeps it; a second walk over the same folder fits nothing and gives the
    same probabilities; a refit removed from the folder is fitted again and only it."""
    FITS.clear()
    first, blocks = pooled_out_of_sample(panel, Counter(), SMALL, cache=tmp_path)
    assert len(FITS) == len(blocks) == len(list(tmp_path.glob("block-*.npz")))
    fitted: list[PooledBlock] = []
    again, _ = pooled_out_of_sample(panel, Counter(), SMALL, cache=tmp_path, on_fit=lambda b, m: fitted.append(b))
    assert len(FITS) == len(blocks) and fitted == []
    for name in panel:
        np.testing.assert_array_equal(again[name], first[name])
    sorted(tmp_path.glob("block-*.npz"))[2].unlink()
    pooled_out_of_sample(panel, Counter(), SMALL, cache=tmp_path, on_fit=lambda b, m: fitted.append(b))
    assert len(FITS) == len(blocks) + 1 and fitted == [blocks[2]]
