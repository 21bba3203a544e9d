"""The MLP gate: top-k weights summing to 1, load balancing against collapse, NumPy export = Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.moe.mlp_gate import MLPGate
from signal_engine.moe.numpy_gate import GateWeights, gate_forward, top_k

# find_spec, not an import: collecting this module on every pytest-xdist worker must not import TensorFlow
pytestmark = [pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')"),
              pytest.mark.tensorflow]


def routing_case(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expert 0 is right when the regime is positive, expert 1 when negative, expert 2 is noise."""
    rng = np.random.default_rng(seed)
    regime = rng.standard_normal((n, 2))
    move = rng.standard_normal(n)
    right, wrong = np.sign(move), -np.sign(move)
    scores = np.column_stack((np.where(regime[:, 0] > 0, right, wrong), np.where(regime[:, 0] < 0, right, wrong),
                              rng.uniform(-1, 1, n)))
    return regime, move, scores


@pytest.fixture(scope="module")
def trained() -> tuple[MLPGate, np.ndarray]:
    x, z, scores = routing_case()
    return MLPGate(epochs=150, experts=("a", "b", "c")).fit(x, z, expert_scores=scores), x


def test_weights_sum_to_one_with_exactly_k_experts(trained: tuple[MLPGate, np.ndarray]) -> None:
    gate, x = trained
    weights = gate.predict_proba(x)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert ((weights > 0).sum(axis=1) <= 2).all()


def test_gate_routes_each_regime_to_its_expert(trained: tuple[MLPGate, np.ndarray]) -> None:
    gate, _ = trained
    assert gate.predict(np.array([[2.0, 0.0], [-2.0, 0.0]])).tolist() == [0, 1]
    assert gate.loss_history_[-1] < gate.loss_history_[0]


def test_numpy_forward_equals_keras_to_1e_6(trained: tuple[MLPGate, np.ndarray]) -> None:
    gate, _ = trained
    x = np.random.default_rng(1).standard_normal((500, 2)) * 2
    np.testing.assert_allclose(gate.predict_proba(x), gate.keras_proba(x), atol=1e-6)


def test_exported_weights_round_trip(trained: tuple[MLPGate, np.ndarray], tmp_path: Path) -> None:
    gate, x = trained
    path = tmp_path / "gate.npz"
    gate.weights_.save(path)
    loaded = GateWeights.load(path)
    assert loaded.experts == ("a", "b", "c")
    assert loaded.k == 2
    np.testing.assert_array_equal(gate_forward(loaded, x), gate.predict_proba(x))


def test_load_balancing_prevents_collapse_on_a_case_built_to_collapse() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    x = rng.standard_normal((n, 2))
    move = rng.standard_normal(n)
    # expert 0 is right everywhere: with nothing against it, every row goes to it
    scores = np.column_stack((np.sign(move), rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)))

    def routing(load_balance: float) -> np.ndarray:
        gate = MLPGate(k=3, load_balance=load_balance, epochs=150).fit(x, move, expert_scores=scores)
        return gate.predict_proba(x).mean(axis=0)

    collapsed, balanced = routing(0.0), routing(2.0)
    assert collapsed[0] > 0.95
    assert balanced[0] < 0.75
    assert balanced[1:].min() > 0.1


def test_too_few_rows_leave_the_gate_uniform() -> None:
    x, z, scores = routing_case(40)
    gate = MLPGate(k=3, min_rows=100).fit(x, z, expert_scores=scores)
    np.testing.assert_allclose(gate.predict_proba(x), 1 / 3)


def test_training_is_deterministic() -> None:
    x, z, scores = routing_case(400)
    first = MLPGate(epochs=30).fit(x, z, expert_scores=scores).predict_proba(x)
    second = MLPGate(epochs=30).fit(x, z, expert_scores=scores).predict_proba(x)
    np.testing.assert_array_equal(first, second)


def test_top_k_keeps_the_largest_and_renormalises() -> None:
    weights = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    # ties go to the lower index, as in tf.math.top_k
    np.testing.assert_allclose(top_k(weights, 2), [[0.625, 0.375, 0.0], [1 / 9, 0.0, 8 / 9]])
