"""The pooled LSTM: shapes, the estimator contract, equal per-series sampling, determinism, causality, and no
look-ahead in the walk-forward across series."""

from __future__ import annotations

import pickle
from typing import Self

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from signal_engine.archetypes.pooled_expert import SERIES_COLUMN, PooledTrendExpert
from signal_engine.archetypes.pooled_sequence import PooledLSTMTrendExpert
from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation.pooled_walkforward import PanelSeries, common_schedule, leaks, panel_series, pooled_block
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.labels import make_labels
from tests.unit.test_pooled_expert import synthetic_panel

SMALL = {"window": 16, "units": 4, "samples_per_series": 64, "max_epochs": 2, "patience": 1, "batch_size": 32,
         "min_series_rows": 50}
needs_tf = pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")


@pytest.fixture(scope="module")
def fitted() -> tuple[PooledLSTMTrendExpert, pd.DataFrame, np.ndarray]:
    X, y = synthetic_panel({"LONG": 400, "SHORT": 150})
    return PooledLSTMTrendExpert(**SMALL).fit(X, y), X, y


def test_it_is_a_pooled_expert_with_its_own_hyper_parameters() -> None:
    expert = PooledLSTMTrendExpert(units=8)
    assert isinstance(expert, PooledTrendExpert)
    assert expert.get_params()["units"] == 8 and clone(expert).get_params() == expert.get_params()
    assert expert.context_bars() == 64 - 1 + 30
    assert not [name for name in vars(expert) if name.endswith("_")]  # nothing learned before fit


def test_too_few_units_are_refused() -> None:
    X, y = synthetic_panel({"A": 200})
    with pytest.raises(ValueError, match="units must be at least 1"):
        PooledLSTMTrendExpert(units=0).fit(X, y)


@needs_tf
def test_probabilities_have_one_calibrated_row_per_input_row(
        fitted: tuple[PooledLSTMTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, _ = fitted
    proba = expert.predict_proba(X)
    assert proba.shape == (550, 3) and expert.predict(X).shape == (550,)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(expert.classes_, [0, 1, 2])
    # the LSTM's input kernel: 5 bar channels into 4 gates of 4 units
    assert expert.network().get_layer("lstm").get_weights()[0].shape == (5, 16)
    assert expert.input_shapes_ == [(16, 5), (2,)]


@needs_tf
def test_every_series_weighs_the_same_in_each_epoch(
        fitted: tuple[PooledLSTMTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, _, _ = fitted
    assert expert.series_ == ("LONG", "SHORT")
    assert expert.samples_per_epoch_ == {"LONG": 64, "SHORT": 64}
    assert expert.samples_seen_ == expert.epochs_run_ * 2 * 64
    # SHORT: 150 - 5 unlabelled - 15 before a full window = 130 rows; 33 validate (ceil of a quarter), 5 purged
    assert expert.validation_rows_per_series_["SHORT"] == 33 and expert.fit_rows_per_series_["SHORT"] == 92


@needs_tf
def test_training_on_one_thread_with_a_seed_is_deterministic_and_round_trips(
        fitted: tuple[PooledLSTMTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, y = fitted
    again = PooledLSTMTrendExpert(**SMALL).fit(X, y)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(expert.weights_, again.weights_, strict=True))
    assert again.predict_proba(X).tobytes() == expert.predict_proba(X).tobytes()
    restored = pickle.loads(pickle.dumps(expert))
    assert restored.predict_proba(X).tobytes() == expert.predict_proba(X).tobytes()
    other = PooledLSTMTrendExpert(**{**SMALL, "random_state": 8}).fit(X, y)
    assert other.weights_[0].tobytes() != expert.weights_[0].tobytes()


@needs_tf
def test_a_series_row_depends_on_its_own_past_only(
        fitted: tuple[PooledLSTMTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, _ = fitted
    proba = expert.predict_proba(X)
    long = np.flatnonzero(X[SERIES_COLUMN].to_numpy() == "LONG")
    np.testing.assert_array_equal(expert.predict_proba(X.iloc[long[:300]]), proba[long[:300]])
    context = expert.context_bars()
    assert context is not None
    np.testing.assert_array_equal(expert.predict_proba(X.iloc[long[250 - context : 300]])[context:],
                                  proba[long[250:300]])


FITS: list[tuple[pd.DataFrame, np.ndarray]] = []


class RecordingLSTM(PooledLSTMTrendExpert):
    """The pooled LSTM, keeping what each fit was given."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        FITS.append((X.copy(), np.asarray(y).copy()))
        return super().fit(X, y)


def _series(name: str, index: pd.DatetimeIndex, seed: int) -> PanelSeries:
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, 0.01, len(index))))
    bars = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close}, index=index)
    labels = make_labels(bars, np.full(len(index), 0.01), horizon=5, threshold=0.5)
    return panel_series(name, bars, labels.trend, labels.known_at_horizon())


@needs_tf
def test_no_fit_of_the_walk_forward_sees_a_bar_or_label_after_its_date() -> None:
    panel = {"WEEKDAYS": _series("WEEKDAYS", pd.bdate_range("2019-01-01", periods=260), 1),
             "EVERYDAY": _series("EVERYDAY", pd.date_range("2019-04-01", periods=240, freq="D"), 2)}
    config = WalkForwardConfig(initial_window=150, validation_bars=0, refit_every=60, min_test_bars=0, embargo=2)
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, config)
    found = []
    for block in blocks[:2]:
        FITS.clear()
        _, proba = pooled_block(panel, block, RecordingLSTM(**{**SMALL, "max_epochs": 1}), config.embargo)
        assert all(p.shape == (stop - start, 3) for p, (start, stop) in zip(proba.values(), block.decide.values(),
                                                                            strict=True))
        found += [f for X, y in FITS for f in leaks(panel, block, X, y, config.embargo)]
    assert len(blocks) >= 2 and found == []
