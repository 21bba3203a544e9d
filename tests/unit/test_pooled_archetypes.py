"""One pooled kernel-bank network per archetype: routing by the fingerprint, each archetype's bank as the first
layer of its network, the estimator contract, determinism, and no look-ahead in the walk-forward across series."""

from __future__ import annotations

import subprocess
import sys
from typing import Self

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone

from signal_engine.archetypes.kernels import kernel_bank
from signal_engine.archetypes.pooled_archetypes import PooledArchetypeTrendExpert, series_archetype
from signal_engine.archetypes.pooled_expert import SERIES_COLUMN, PooledKernelTrendExpert
from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation.pooled_walkforward import PanelSeries, common_schedule, leaks, panel_series, pooled_block
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.labels import make_labels

SMALL = {"window": 16, "samples_per_series": 64, "max_epochs": 2, "patience": 1, "batch_size": 32,
         "min_series_rows": 50}
needs_tf = pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")
# daily volatility of each synthetic series: under 0.5% routes to low_vol_etf, 1% to equity_daily
VOLATILITY = {"CALM": 0.002, "A": 0.01, "B": 0.012, "TINY": 0.01}


def _bars(name: str, n: int, seed: int) -> pd.DataFrame:
    vol = VOLATILITY[name]
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, vol, n)))
    return pd.DataFrame({"open": close, "high": close * (1 + vol / 2), "low": close * (1 - vol / 2), "close": close,
                         SERIES_COLUMN: name}, index=pd.bdate_range("2001-01-01", periods=n))


def _panel(lengths: dict[str, int]) -> tuple[pd.DataFrame, np.ndarray]:
    frames = [_bars(name, n, k) for k, (name, n) in enumerate(lengths.items())]
    labels = [np.concatenate((np.random.default_rng(10 + k).integers(0, 3, len(f) - 5), np.full(5, -1)))
              for k, f in enumerate(frames)]
    return pd.concat(frames), np.concatenate(labels)


def test_the_gate_routes_a_series_by_its_volatility() -> None:
    assert series_archetype(_bars("CALM", 300, 0), "equity_daily") == "low_vol_etf"
    assert series_archetype(_bars("A", 300, 1), "equity_daily") == "equity_daily"


def test_the_contract_before_fit() -> None:
    expert = PooledArchetypeTrendExpert(network=PooledKernelTrendExpert(window=16))
    assert expert.get_params()["network__window"] == 16
    assert clone(expert).get_params()["network__window"] == 16
    assert expert.context_bars() == 16 - 1 + 30
    assert not [name for name in vars(expert) if name.endswith("_")]


@pytest.fixture(scope="module")
def fitted() -> tuple[PooledArchetypeTrendExpert, pd.DataFrame, np.ndarray]:
    X, y = _panel({"CALM": 300, "A": 300, "B": 250, "TINY": 60})
    return PooledArchetypeTrendExpert(network=PooledKernelTrendExpert(**SMALL)).fit(X, y), X, y


@needs_tf
def test_each_archetype_gets_its_own_bank_and_its_series(
        fitted: tuple[PooledArchetypeTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, _, _ = fitted
    # TINY: 60 - 5 unlabelled - 15 before a full window = 40 labelled rows, fewer than 50: not trained on
    assert expert.archetypes_ == {"CALM": "low_vol_etf", "A": "equity_daily", "B": "equity_daily"}
    assert expert.series_ == ("CALM", "A", "B")
    calm, equity = expert.networks_["low_vol_etf"], expert.networks_["equity_daily"]
    assert calm.series_ == ("CALM",) and equity.series_ == ("A", "B")
    assert calm.archetype == "low_vol_etf" and "mean_crossover_residual" in calm.template_names()
    assert equity.samples_per_epoch_ == {"A": 64, "B": 64}
    # the first layer is the archetype's 1-D bank: 11 templates each, the longest 50 taps, over 5 bar channels
    assert len(kernel_bank("low_vol_etf")[0]) == len(kernel_bank("equity_daily")[0]) == 11
    assert calm.network().get_layer("kernel_bank_1d").get_weights()[0].shape == (50, 5, 11)
    assert expert.samples_seen_ == calm.samples_seen_ + equity.samples_seen_


@needs_tf
def test_each_series_answers_from_its_archetype_network(
        fitted: tuple[PooledArchetypeTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, _ = fitted
    proba = expert.predict_proba(X)
    assert proba.shape == (910, 3) and expert.predict(X).shape == (910,)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    names = X[SERIES_COLUMN].to_numpy()
    np.testing.assert_array_equal(proba[names == "CALM"],
                                  expert.networks_["low_vol_etf"].predict_proba(X[names == "CALM"]))
    np.testing.assert_array_equal(proba[names == "B"], expert.networks_["equity_daily"].predict_proba(X[names == "B"]))
    # an unseen series is routed from its own rows
    np.testing.assert_array_equal(proba[names == "TINY"],
                                  expert.networks_["equity_daily"].predict_proba(X[names == "TINY"]))
    np.testing.assert_array_equal(expert.for_series("CALM").predict_proba(X[names == "CALM"].drop(
        columns=SERIES_COLUMN)), proba[names == "CALM"])


@needs_tf
def test_fitting_again_with_the_seed_gives_the_same_networks(
        fitted: tuple[PooledArchetypeTrendExpert, pd.DataFrame, np.ndarray]) -> None:
    expert, X, y = fitted
    again = PooledArchetypeTrendExpert(network=PooledKernelTrendExpert(**SMALL)).fit(X, y)
    for archetype, network in expert.networks_.items():
        assert all(a.tobytes() == b.tobytes()
                   for a, b in zip(network.weights_, again.networks_[archetype].weights_, strict=True))
    assert again.predict_proba(X).tobytes() == expert.predict_proba(X).tobytes()


FITS: list[tuple[pd.DataFrame, np.ndarray]] = []


class RecordingNetwork(BaseEstimator):
    """Stands in for an archetype's network: keeps what each fit was given, predicts the uniform distribution."""

    def __init__(self, archetype: str = "equity_daily", window: int = 16, min_series_rows: int = 50) -> None:
        self.archetype = archetype
        self.window = window
        self.min_series_rows = min_series_rows

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        FITS.append((X.copy(), np.asarray(y).copy()))
        self.series_ = tuple(dict.fromkeys(X[SERIES_COLUMN]))
        self.samples_seen_, self.train_seconds_, self.epochs_run_, self.best_epoch_ = 0, 0.0, 1, 1
        return self

    def context_bars(self) -> int:
        return self.window - 1 + 30

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X), 3), 1.0 / 3.0)


def _series(name: str, index: pd.DatetimeIndex, seed: int) -> PanelSeries:
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, VOLATILITY[name], len(index))))
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close}, index=index)
    labels = make_labels(bars, np.full(len(index), VOLATILITY[name]), horizon=5, threshold=0.5)
    return panel_series(name, bars, labels.trend, labels.known_at_horizon())


def test_no_network_of_the_walk_forward_sees_a_bar_or_label_after_its_date() -> None:
    panel = {"CALM": _series("CALM", pd.bdate_range("2019-01-01", periods=300), 1),
             "A": _series("A", pd.date_range("2019-05-01", periods=250, freq="D"), 2)}
    config = WalkForwardConfig(initial_window=120, validation_bars=0, refit_every=40, min_test_bars=0, embargo=2)
    blocks = common_schedule({name: s.frame.index for name, s in panel.items()}, config)
    found, trained = [], []
    for block in blocks:
        FITS.clear()
        pooled_block(panel, block, PooledArchetypeTrendExpert(network=RecordingNetwork()), config.embargo)
        found += [f for X, y in FITS for f in leaks(panel, block, X, y, config.embargo)]
        trained.append([tuple(dict.fromkeys(X[SERIES_COLUMN])) for X, _ in FITS])
    assert len(blocks) > 3 and found == []
    # one network per archetype present: CALM alone at first, A (routed to equity_daily) once it has 50 rows
    assert trained[0] == [("CALM",)] and trained[-1] == [("CALM",), ("A",)]


def test_importing_the_new_experts_does_not_import_tensorflow() -> None:
    code = ("import sys, signal_engine.archetypes.pooled_archetypes, signal_engine.archetypes.pooled_sequence, "
            "signal_engine.evaluation.pooled_study; print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"
