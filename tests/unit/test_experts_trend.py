"""Trend experts: calibration on a fold before the fit bar, LightGBM fit/predict on real data, ECE."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.evaluation.metrics import expected_calibration_error
from signal_engine.experts import GradientBoostedTrendExpert, MulticlassCalibrator
from signal_engine.experts.calibration import temporal_split
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

FIT_AT = 700


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> tuple[pd.DataFrame, np.ndarray]:
    bars = load_prices(goog_csv).bars.iloc[:1000]
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    known = np.arange(len(frame)) + 5 <= FIT_AT
    return frame, np.where(known & (labels.trend >= 0), labels.trend, -1)


def test_temporal_split_purges_the_horizon_before_the_validation_fold() -> None:
    fit, validation = temporal_split(np.arange(100), 0.2, purge=5)
    assert validation.tolist() == list(range(80, 100))
    assert fit.max() == 74
    fit, validation = temporal_split(np.arange(10), 0.0, purge=5)
    assert len(validation) == 0 and len(fit) == 10


@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "platt"])
def test_calibrator_gives_probabilities_and_improves_an_overconfident_model(method: str) -> None:
    rng = np.random.default_rng(0)
    truth = rng.dirichlet(np.ones(3), size=4000)
    y = np.array([rng.choice(3, p=p) for p in truth])
    overconfident = truth**3 / (truth**3).sum(axis=1, keepdims=True)
    calibrator = MulticlassCalibrator(method=method).fit(overconfident[:3000], y[:3000])
    calibrated = calibrator.transform(overconfident[3000:])
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert expected_calibration_error(y[3000:], calibrated) < expected_calibration_error(y[3000:], overconfident[3000:])


def test_calibrator_without_method_or_rows_is_the_identity() -> None:
    proba = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    assert np.array_equal(MulticlassCalibrator(method=None).fit(proba, np.array([2, 0])).transform(proba), proba)
    assert np.array_equal(MulticlassCalibrator(method="platt").fit(proba, np.array([2, 0])).transform(proba), proba)


def test_ece_by_hand() -> None:
    proba = np.array([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    y = np.array([2, 0, 0, 0])
    # bin 0.8: accuracy 0.5, confidence 0.8 -> 0.3 x 1/2; bin 0.6: accuracy 1, confidence 0.6 -> 0.4 x 1/2
    assert expected_calibration_error(y, proba, n_bins=10) == pytest.approx(0.35)


def test_calibrated_lightgbm_fits_and_predicts_on_real_data(goog: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, y = goog
    expert = GradientBoostedTrendExpert(n_estimators=30, calibration="platt", purge=5).fit(
        frame.iloc[: FIT_AT + 1], y[: FIT_AT + 1]
    )
    assert expert.n_validation_rows_ > 0
    assert expert.calibrator_.multinomial_ is not None
    proba = expert.predict_proba(frame)
    assert proba.shape == (len(frame), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:800], expert.predict_proba(frame.iloc[:800]))
    again = GradientBoostedTrendExpert(n_estimators=30, calibration="platt").fit(frame.iloc[: FIT_AT + 1],
                                                                               y[: FIT_AT + 1])
    assert again.predict_proba(frame).tobytes() == proba.tobytes()
    assert pickle.loads(pickle.dumps(expert)).predict_proba(frame).tobytes() == proba.tobytes()


def test_uncalibrated_lightgbm_is_unchanged_by_rows_marked_unknown(goog: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, y = goog
    rows = np.flatnonzero(y[: FIT_AT + 1] >= 0)
    on_known = GradientBoostedTrendExpert(n_estimators=20).fit(frame.iloc[rows], y[rows])
    on_all = GradientBoostedTrendExpert(n_estimators=20).fit(frame.iloc[: FIT_AT + 1], y[: FIT_AT + 1])
    np.testing.assert_array_equal(on_known.predict_proba(frame), on_all.predict_proba(frame))


def test_the_linear_trend_expert_learns_a_sign_and_explains_it_exactly() -> None:
    from sklearn.base import clone

    from signal_engine.experts import LogisticTrendExpert

    rng = np.random.default_rng(3)
    n = 3000
    X = pd.DataFrame({"momentum": rng.normal(size=n), "noise": rng.normal(size=n), "sparse": rng.normal(size=n)})
    X.loc[X.index[:50], "sparse"] = np.nan  # a look-back longer than the history
    y = np.where(X["momentum"] > 0.4, 2, np.where(X["momentum"] < -0.4, 0, 1))
    expert = clone(LogisticTrendExpert(features=("momentum", "noise", "sparse"))).fit(X.iloc[:2000], y[:2000])
    proba = expert.predict_proba(X.iloc[2000:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (expert.predict(X.iloc[2000:]) == y[2000:]).mean() > 0.85
    assert np.isfinite(expert.predict_proba(X.iloc[:50])).all()
    matrix = X.loc[:, ["momentum", "noise", "sparse"]].to_numpy(dtype=float)[2000:]
    contributions = expert.directional_contributions(matrix)
    logits = np.log(proba)
    intercepts = expert.model_.intercept_
    np.testing.assert_allclose(contributions.sum(axis=1) + intercepts[2] - intercepts[0], logits[:, 2] - logits[:, 0],
                               rtol=1e-6, atol=1e-6)
    assert np.abs(contributions[:, 0]).mean() > 10 * np.abs(contributions[:, 1]).mean()
    assert pickle.loads(pickle.dumps(expert)).predict_proba(X.iloc[2000:]).tolist() == proba.tolist()


def test_trend_linear_is_an_moe_trend_choice_on_the_configs_features() -> None:
    from signal_engine import components
    from signal_engine.config import MoEConfig, MoEExperts, RunConfig
    from signal_engine.experts import LogisticTrendExpert

    config = RunConfig(moe=MoEConfig(experts=MoEExperts(trend="trend_linear")))
    expert = components.trend_expert(config)
    assert isinstance(expert, LogisticTrendExpert)
    assert expert.features == components.trend_features(config) and expert.purge == config.labels.horizon
