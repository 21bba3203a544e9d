"""The pooled kernel-bank trend expert: shapes, determinism, equal per-series sampling, calibration, causality."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from signal_engine.archetypes.pooled_expert import (
    SERIES_COLUMN,
    PooledKernelTrendExpert,
    equal_share_sample,
    mean_series_log_loss,
    series_positions,
)
from signal_engine.experts.tf_runtime import tensorflow_available

SMALL = {"window": 16, "samples_per_series": 64, "max_epochs": 3, "patience": 1, "batch_size": 32,
         "min_series_rows": 50}
needs_tf = pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")


def test_equal_share_sample_gives_every_group_the_same_count() -> None:
    long, short = np.arange(100, 110), np.array([7, 8, 9])
    rows = equal_share_sample([long, short], 7, np.random.default_rng(0))
    assert len(rows) == 14
    # 7 distinct rows of the 10-row group; each row of the 3-row group twice (6) and one of them a third time
    assert np.isin(rows, long).sum() == 7 and len(set(rows[np.isin(rows, long)].tolist())) == 7
    counts = sorted(np.bincount(rows[np.isin(rows, short)], minlength=10)[7:].tolist())
    assert counts == [2, 2, 3]


def test_equal_share_sample_rejects_an_empty_group() -> None:
    with pytest.raises(ValueError, match="a group holds no rows"):
        equal_share_sample([np.arange(3), np.arange(0)], 2, np.random.default_rng(0))


def test_series_positions_keep_first_appearance_order() -> None:
    groups = series_positions(np.array(["b", "a", "b", "a", "c"]))
    assert list(groups) == ["b", "a", "c"]
    np.testing.assert_array_equal(groups["a"], [1, 3])


def test_mean_series_log_loss_weighs_each_series_once() -> None:
    proba = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]])
    labels = np.array([0, 0, 0, 2])
    # series 1: rows 0-2, loss log 2 each; series 2: row 3, loss log 4 = 2 log 2; mean 1.5 log 2
    assert mean_series_log_loss(proba, labels, [np.arange(3), np.array([3])]) == pytest.approx(1.5 * np.log(2))


def synthetic_panel(lengths: dict[str, int]) -> tuple[pd.DataFrame, np.ndarray]:
    """Random walks of the given lengths from 2001, their 5-bar trend classes (-1 where unknown); unit tests only."""
    frames, labels = [], []
    for k, (name, n) in enumerate(lengths.items()):
        rng = np.random.default_rng(k)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01 * (k + 1), n)))
        index = pd.bdate_range("2001-01-01", periods=n)
        frames.append(pd.DataFrame({"open": close, "high": close * 1.005, "low": close * 0.995, "close": close,
                                    SERIES_COLUMN: name}, index=index))
        forward = np.log(close[5:] / close[:-5]) / (0.01 * (k + 1) * np.sqrt(5))
        labels.append(np.concatenate((np.digitize(forward, [-0.5, 0.5]), np.full(5, -1))))
    return pd.concat(frames), np.concatenate(labels)


@pytest.fixture(scope="module")
def fitted() -> tuple[PooledKernelTrendExpert, pd.DataFrame, np.ndarray]:
    X, y = synthetic_panel({"LONG": 600, "MID": 300, "SHORT": 200})
    return PooledKernelTrendExpert(**SMALL).fit(X, y), X, y


@needs_tf
def test_probabilities_have_one_calibrated_row_per_input_row(
        fitted: tuple[PooledKernelTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, _ = fitted
    proba = expert.predict_proba(X)
    assert proba.shape == (1100, 3) and expert.predict(X).shape == (1100,)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba > 0).all() and expert.calibrator_.multinomial_ is not None
    np.testing.assert_array_equal(expert.classes_, [0, 1, 2])


@needs_tf
def test_every_series_weighs_the_same_in_each_epoch(
        fitted: tuple[PooledKernelTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, _, _ = fitted
    assert expert.series_ == ("LONG", "MID", "SHORT")
    assert expert.samples_per_epoch_ == {"LONG": 64, "MID": 64, "SHORT": 64}
    assert expert.samples_seen_ == expert.epochs_run_ * 3 * 64
    # labelled rows with a full window: LONG 600 - 5 - 15 = 580; a quarter (145) validates, 5 bars purged before
    assert expert.validation_rows_per_series_["LONG"] == 145 and expert.fit_rows_per_series_["LONG"] == 580 - 145 - 5


@needs_tf
def test_training_is_deterministic_and_round_trips(
        fitted: tuple[PooledKernelTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, y = fitted
    again = PooledKernelTrendExpert(**SMALL).fit(X, y)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(expert.weights_, again.weights_, strict=True))
    assert again.predict_proba(X).tobytes() == expert.predict_proba(X).tobytes()
    restored = pickle.loads(pickle.dumps(expert))
    assert restored._network is None
    assert restored.predict_proba(X).tobytes() == expert.predict_proba(X).tobytes()


@needs_tf
def test_a_series_row_depends_on_its_own_past_only(
        fitted: tuple[PooledKernelTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, _ = fitted
    proba = expert.predict_proba(X)
    # drop MID's bars after its 200th and every other series: MID's first 200 rows do not change
    mid = np.flatnonzero(X[SERIES_COLUMN].to_numpy() == "MID")
    np.testing.assert_array_equal(expert.predict_proba(X.iloc[mid[:200]]), proba[mid[:200]])
    # the context the expert names suffices
    context = expert.context_bars()
    assert context == 16 - 1 + 30
    np.testing.assert_array_equal(expert.predict_proba(X.iloc[mid[150 - context : 200]])[context:],
                                  proba[mid[150:200]])


@needs_tf
def test_an_unseen_series_gets_the_mean_embedding_and_a_short_one_is_left_out() -> None:
    X, y = synthetic_panel({"A": 400, "B": 300, "TINY": 60})
    expert = PooledKernelTrendExpert(**SMALL).fit(X, y)
    assert expert.series_ == ("A", "B")  # TINY: 60 - 5 - 15 = 40 labelled rows, fewer than 50
    windows, codes = expert._inputs(X)
    assert windows.shape == (760, 16, 5)
    np.testing.assert_array_equal(codes[X[SERIES_COLUMN].to_numpy() == "TINY"], 0.5)
    np.testing.assert_array_equal(codes[:2], [[1.0, 0.0], [1.0, 0.0]])


def test_an_archetype_without_bars_is_refused() -> None:
    X, y = synthetic_panel({"A": 200})
    with pytest.raises(ValueError, match="reads iv_surface, not bars"):
        PooledKernelTrendExpert(archetype="options_skew").fit(X, y)


def test_importing_the_pooled_expert_and_its_walk_forward_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys, signal_engine.archetypes.pooled_expert, signal_engine.evaluation.pooled_walkforward; "
            "print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"
