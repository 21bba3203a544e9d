"""Gate and combiner: seed 000's worked example, weights that sum to 1, a gate that learns."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from signal_engine.moe import SoftmaxGate, WeightedScoreCombiner
from signal_engine.moe.scores import levels_score, trend_score, volatility_score


def test_seed_000_worked_example_is_a_buy() -> None:
    combiner = WeightedScoreCombiner(buy_threshold=0.3, sell_threshold=-0.3).fit()
    scores = np.array([[0.7, 0.5, -0.2]])
    weights = np.array([[0.4, 0.3, 0.2]])
    assert combiner.decision_function(scores, weights)[0] == pytest.approx(0.39)
    assert combiner.predict(scores, weights).tolist() == ["buy"]
    assert combiner.predict(-scores, weights).tolist() == ["sell"]
    assert combiner.predict(scores * 0.1, weights).tolist() == ["hold"]


def test_scores_follow_seed_000_normalisation() -> None:
    assert trend_score(np.array([0.7]), np.array([0.2]))[0] == pytest.approx(0.5)
    np.testing.assert_allclose(levels_score(np.array([50.0, 55.0, 52.5]), np.full(3, 50.0), np.full(3, 55.0)),
                               [1.0, -1.0, 0.0])
    calm_then_storm = np.concatenate((np.full(50, 0.01), [0.03]))
    calm_then_storm[:50] *= np.linspace(0.9, 1.1, 50)
    assert volatility_score(calm_then_storm, window=250)[-1] < -0.9


def synthetic_routing(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expert 0 is right when the regime feature is positive, expert 1 when it is negative."""
    rng = np.random.default_rng(seed)
    regime = rng.standard_normal(n)
    move = rng.standard_normal(n)
    scores = np.column_stack((np.where(regime > 0, np.sign(move), -np.sign(move)),
                              np.where(regime < 0, np.sign(move), -np.sign(move)),
                              rng.uniform(-1, 1, n)))
    return regime[:, None], move, scores


def test_gate_weights_sum_to_one_and_start_uniform() -> None:
    x, z, scores = synthetic_routing(50)
    gate = SoftmaxGate(min_rows=100).fit(x, z, expert_scores=scores)
    weights = gate.predict_proba(x)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights, 1 / 3)


def test_gate_learns_which_expert_to_trust_in_which_regime() -> None:
    x, z, scores = synthetic_routing()
    gate = SoftmaxGate(l2=0.01, entropy=0.001, iterations=300).fit(x, z, expert_scores=scores)
    weights = gate.predict_proba(np.array([[2.0], [-2.0]]))
    assert weights[0].argmax() == 0
    assert weights[1].argmax() == 1
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    untrained = clone(gate).fit(x, z, expert_scores=scores[:, :3] * 0)
    assert gate.objective(x, z, expert_scores=scores) > untrained.objective(x, z, expert_scores=scores)


def test_gate_training_is_deterministic() -> None:
    x, z, scores = synthetic_routing()
    first = SoftmaxGate().fit(x, z, expert_scores=scores).coef_
    second = SoftmaxGate().fit(x, z, expert_scores=scores).coef_
    np.testing.assert_array_equal(first, second)
