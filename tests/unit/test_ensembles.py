"""Each ensemble against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest

from signal_engine.ensembles import (
    BayesianAverageRegressor,
    BayesianModelAveraging,
    InverseLossAverage,
    MajorityVote,
    MeanAverage,
    SoftVote,
    Stacking,
    StackingRegressor,
    ThresholdVote,
    WeightedVote,
)
from signal_engine.errors import SignalEngineError

# seed 003's soft-voting example, classes (up, down, neutral)
MODELS = {
    "m1": np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]),
    "m2": np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]),
    "m3": np.array([[0.3, 0.6, 0.1], [0.4, 0.4, 0.2]]),
}


def test_majority_vote_counts_each_members_top_class() -> None:
    ensemble = MajorityVote().fit(MODELS)
    proba = ensemble.predict_proba(MODELS)
    np.testing.assert_allclose(proba[0], [2 / 3, 1 / 3, 0.0], atol=1e-8)
    assert ensemble.predict(MODELS).tolist()[0] == 0


def test_majority_vote_breaks_ties_by_summed_probability() -> None:
    # row 1: m1 votes down, m2 neutral, m3 up (0.4 vs 0.4 -> argmax takes the first, up): one vote each;
    # the summed probabilities are up 0.7, down 1.1, neutral 1.2, so neutral wins the tie
    assert MajorityVote().fit(MODELS).predict(MODELS)[1] == 2


def test_weighted_vote_weights_members_by_validation_accuracy() -> None:
    y = np.array([1, 1])  # m1: 1/2 right, m2: 0/2, m3: 1/2 (row 0)
    ensemble = WeightedVote().fit(MODELS, y)
    np.testing.assert_allclose(ensemble.weights_, [0.5, 0.0, 0.5])
    np.testing.assert_allclose(ensemble.predict_proba(MODELS)[0], [0.5, 0.5, 0.0], atol=1e-8)


def test_soft_vote_is_the_seed_003_average() -> None:
    proba = SoftVote().fit(MODELS).predict_proba(MODELS)
    np.testing.assert_allclose(proba[0], [1.6 / 3, 1.1 / 3, 0.1])
    weighted = SoftVote(weights=(2.0, 1.0, 1.0)).fit(MODELS).predict_proba(MODELS)
    np.testing.assert_allclose(weighted[0], [(1.4 + 0.6 + 0.3) / 4, (0.4 + 0.3 + 0.6) / 4, 0.1])


def test_bayesian_model_averaging_weights_by_likelihood() -> None:
    y = np.array([0, 2])
    ensemble = BayesianModelAveraging().fit(MODELS, y)
    likelihood = np.array([0.7 * 0.3, 0.6 * 0.7, 0.3 * 0.2])
    np.testing.assert_allclose(ensemble.weights_, likelihood / likelihood.sum())
    tempered = BayesianModelAveraging(temperature=2.0).fit(MODELS, y)
    np.testing.assert_allclose(tempered.weights_, np.sqrt(likelihood) / np.sqrt(likelihood).sum())


def test_threshold_vote_abstains_below_the_threshold() -> None:
    ensemble = ThresholdVote(threshold=0.5).fit(MODELS)
    assert ensemble.predict(MODELS).tolist() == [0, -1]  # row 1 top average is 0.4


def test_stacking_learns_which_member_to_trust() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    truthful = np.eye(3)[y] * 0.6 + 0.4 / 3
    noise = rng.dirichlet(np.ones(3), 600)
    ensemble = Stacking().fit({"good": truthful, "noise": noise}, y)
    assert (ensemble.predict({"good": truthful, "noise": noise}) == y).mean() > 0.95
    np.testing.assert_allclose(ensemble.predict_proba({"good": truthful, "noise": noise}).sum(axis=1), 1.0)


def test_members_must_match_those_fitted() -> None:
    ensemble = SoftVote().fit(MODELS)
    with pytest.raises(SignalEngineError, match="missing \\['m3'\\]"):
        ensemble.predict_proba({"m1": MODELS["m1"], "m2": MODELS["m2"]})


VALUES = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([2.0, 2.0, 5.0])}
TARGET = np.array([1.0, 2.0, 3.0])


def test_mean_and_inverse_loss_averages() -> None:
    np.testing.assert_allclose(MeanAverage().fit(VALUES).predict(VALUES), [1.5, 2.0, 4.0])
    ensemble = InverseLossAverage().fit(VALUES, TARGET)
    # a is exact (loss 0) so it takes all the weight
    np.testing.assert_allclose(ensemble.weights_, [1.0, 0.0], atol=1e-12)


def test_inverse_loss_weights_by_hand() -> None:
    values = {"a": TARGET + np.array([1.0, -1.0, 1.0]), "b": TARGET + np.array([2.0, -2.0, 2.0])}
    ensemble = InverseLossAverage().fit(values, TARGET)
    np.testing.assert_allclose(ensemble.weights_, [0.8, 0.2])  # 1/1 : 1/4


def test_stacking_regressor_recovers_non_negative_weights() -> None:
    x1, x2 = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 0.0])
    ensemble = StackingRegressor().fit({"x1": x1, "x2": x2}, 2 * x1 + 0.5 * x2)
    np.testing.assert_allclose(ensemble.weights_, [2.0, 0.5], atol=1e-10)


def test_bayesian_average_regressor_by_hand() -> None:
    values = {"a": TARGET + np.array([1.0, -1.0, 1.0]), "b": TARGET + np.array([2.0, -2.0, 2.0])}
    ensemble = BayesianAverageRegressor(temperature=3.0).fit(values, TARGET)
    # log L = -n/2 log mse: a -> 0, b -> -1.5 log 4; tempered by 3: weights 1 : 4^-0.5
    np.testing.assert_allclose(ensemble.weights_, [1 / 1.5, 0.5 / 1.5])
