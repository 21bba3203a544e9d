"""An expert score of NaN means the expert abstains: the gates give it 0 and renormalise the others, the softmax
gate's fit and online step take no gradient for it on that row, and the backtest's gates route exactly as the
Signal API's combiner does (one function, ``available_top_k``)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.mlp_gate import MLPGate
from signal_engine.moe.numpy_gate import GateWeights, available_top_k, renormalise, softmax_gate_gradient
from signal_engine.moe.online import OnlineLearner, OnlineRates, RealisedRow
from signal_engine.moe.rule_gate import FingerprintRuleGate
from signal_engine.moe.scores import volatility_score
from signal_engine.serving.bundle import GateSpec
from signal_engine.serving.combine import Combiner
from signal_engine.serving.export import rule_gate_params, softmax_gate_weights
from tests.unit.test_moe_gates import fingerprint_rows
from tests.unit.test_serving_combine_by_hand import ALL, levels, make_bundle, trend, vol

T, F = True, False


def test_an_abstaining_expert_gets_zero_and_the_others_are_renormalised_by_hand() -> None:
    dense = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    available = np.array([[T, F, T], [F, T, T], [T, T, T], [F, F, F]])
    np.testing.assert_allclose(available_top_k(dense, available, 3),
                               [[5 / 7, 0, 2 / 7], [0, 0.6, 0.4], [0.5, 0.3, 0.2], [0, 0, 0]], atol=1e-15)
    # top-1 keeps the largest available weight; top-2 of two available experts keeps both
    np.testing.assert_allclose(available_top_k(dense, available, 1), [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(available_top_k(dense, available, 2),
                               [[5 / 7, 0, 2 / 7], [0, 0.6, 0.4], [0.625, 0.375, 0], [0, 0, 0]], atol=1e-15)
    # the experts that answered got no weight: equal shares among them
    np.testing.assert_allclose(renormalise(np.array([[1.0, 0.0, 0.0]]), np.array([[F, T, T]])), [[0, 0.5, 0.5]])
    assert available_top_k(dense, None, 3) is dense


def test_renormalising_counts_the_experts_that_answered_on_each_row_by_hand() -> None:
    dense = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    # row 0: the one expert that answered had weight 0, so it gets all of it; row 1 keeps its weights; row 2:
    # neither answering expert had weight, so they share equally (each row's own count, not the whole array's)
    available = np.array([[F, T, F], [T, T, T], [F, F, T]])
    np.testing.assert_allclose(renormalise(dense, available), [[0, 1, 0], [0.2, 0.3, 0.5], [0, 0, 1]], atol=1e-15)
    two_silent = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(renormalise(two_silent, np.array([[F, T, T], [T, T, T]])),
                               [[0, 0.5, 0.5], [0.2, 0.3, 0.5]], atol=1e-15)
    # without a mask, or with every expert answering, the weights come back as they are (the same object)
    assert renormalise(dense, None) is dense
    assert renormalise(dense, np.ones((3, 3), dtype=bool)) is dense


def fixed_softmax_gate(weights: tuple[float, ...], k: int | None = None) -> SoftmaxGate:
    """A 'fitted' softmax gate whose weights are ``weights`` on every row (zero kernel, bias log w)."""
    gate = SoftmaxGate(k=k)
    n = len(FINGERPRINT_NAMES)
    gate.mean_, gate.scale_ = np.zeros(n), np.ones(n)
    gate.coef_, gate.intercept_ = np.zeros((n, len(weights))), np.log(np.asarray(weights))
    return gate


def test_each_gate_predicts_with_the_mask_by_hand() -> None:
    rows = np.zeros((2, len(FINGERPRINT_NAMES)))
    available = np.array([[T, F, T], [T, T, F]])
    softmax = fixed_softmax_gate((0.5, 0.3, 0.2)).predict_proba(rows, available)
    np.testing.assert_allclose(softmax, [[5 / 7, 0, 2 / 7], [0.625, 0.375, 0]], atol=1e-12)
    # the rule gate: trend rule fires, (3, 1, 1) / 5; without volatility (3, 1) / 4; without levels (3, 1) / 4
    train = fingerprint_rows(vol30=list(np.linspace(0.005, 0.02, 100)))
    rule = FingerprintRuleGate(k=3).fit(train)
    trending = fingerprint_rows(trend_r2=[0.7, 0.7], hurst=[0.5, 0.5], vol30=[0.01, 0.01])
    np.testing.assert_allclose(rule.predict_proba(trending, np.array([[T, T, F], [T, F, T]])),
                               [[0.75, 0.25, 0], [0.75, 0, 0.25]])
    mlp = MLPGate(k=2)
    n = len(FINGERPRINT_NAMES)
    mlp.weights_ = GateWeights(np.zeros(n), np.ones(n), ((np.zeros((n, 3)), np.log([0.5, 0.3, 0.2])),), 2, ALL)
    np.testing.assert_allclose(mlp.predict_proba(rows, np.array([[F, T, T], [T, T, T]])),
                               [[0, 0.6, 0.4], [0.625, 0.375, 0]], atol=1e-12)


def test_the_gradient_of_a_row_gives_an_abstaining_expert_nothing_by_hand() -> None:
    """One row, zero coefficients: weights 1/3 each, renormalised to (1/2, 0, 1/2) without expert 1. Combined
    (0.6 - 0.2) / 2 = 0.2; fit term z w (s - combined) = (0.5 x 0.4, 0, 0.5 x -0.4); the entropy term
    -w (log w + H) is 0 at equal weights. The coefficients' gradient is x times that."""
    x = np.array([[2.0, -1.0]])
    grad_coef, grad_intercept = softmax_gate_gradient(
        x, np.array([[0.6, np.nan, -0.2]]), np.array([1.0]), np.zeros((2, 3)), np.zeros(3), entropy=0.1, l2=0.0)
    np.testing.assert_allclose(grad_intercept, [0.2, 0.0, -0.2], atol=1e-15)
    np.testing.assert_allclose(grad_coef, [[0.4, 0.0, -0.4], [-0.2, 0.0, 0.2]], atol=1e-15)


def test_the_gradient_with_abstentions_is_the_derivative_of_the_objective() -> None:
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    scores = rng.uniform(-1, 1, size=(6, 3))
    scores[[0, 3], 2] = np.nan
    scores[4, 0] = np.nan
    gate = SoftmaxGate(l2=0.3, entropy=0.05, min_rows=1).fit(X, y, expert_scores=np.zeros((6, 3)))
    gate.coef_, gate.intercept_ = rng.normal(size=(2, 3)), rng.normal(size=3)
    grad_coef, grad_intercept = softmax_gate_gradient(gate._standardise(X), scores, np.clip(y, -3, 3), gate.coef_,
                                                      gate.intercept_, entropy=0.05, l2=0.3)
    h = 1e-6
    for array, grad in ((gate.coef_, grad_coef), (gate.intercept_, grad_intercept)):
        for index in np.ndindex(*array.shape):
            array[index] += h
            up = gate.objective(X, y, expert_scores=scores)
            array[index] -= 2 * h
            down = gate.objective(X, y, expert_scores=scores)
            array[index] += h
            assert grad[index] == pytest.approx((up - down) / (2 * h), abs=1e-7)


def test_an_expert_that_abstains_on_every_training_row_keeps_its_initial_weight() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(300, 2)), rng.normal(size=300)
    scores = np.column_stack((np.sign(y) * (X[:, 0] > 0), rng.uniform(-1, 1, 300), np.full(300, np.nan)))
    gate = SoftmaxGate(l2=0.01, min_rows=10).fit(X, y, expert_scores=scores)
    assert np.abs(gate.coef_[:, :2]).max() > 0.1  # the answering experts learnt
    np.testing.assert_array_equal(gate.coef_[:, 2], 0.0)
    assert gate.intercept_[2] == 0.0
    neutral = SoftmaxGate(l2=0.01, min_rows=10).fit(X, y, expert_scores=np.nan_to_num(scores))
    assert neutral.intercept_[2] != 0.0  # a score of 0 is evidence, and loses weight


def test_rows_where_every_expert_abstains_are_left_out_of_the_fit() -> None:
    rng = np.random.default_rng(2)
    X, y, scores = rng.normal(size=(150, 2)), rng.normal(size=150), rng.uniform(-1, 1, size=(150, 3))
    gate = SoftmaxGate(min_rows=10).fit(X, y, expert_scores=scores)
    padded = SoftmaxGate(min_rows=10).fit(np.vstack((X, [[9.0, 9.0]])), np.append(y, 2.0),
                                          expert_scores=np.vstack((scores, np.full((1, 3), np.nan))))
    assert padded.n_train_ == 150
    np.testing.assert_array_equal(padded.coef_, gate.coef_)
    np.testing.assert_array_equal(padded.mean_, gate.mean_)


def test_an_online_step_on_a_row_with_an_abstaining_expert_leaves_its_weights() -> None:
    rng = np.random.default_rng(4)
    start = GateWeights(np.zeros(2), np.ones(2), ((rng.normal(size=(2, 3)), rng.normal(size=3)),), 3, ALL)
    learner = OnlineLearner(start, None, OnlineRates(gate=0.5, meta=0.0, entropy=0.05, clip=3.0))
    learner.learn(RealisedRow(np.array([0.4, -1.0]), np.array([0.7, -0.3, np.nan]), np.full(3, 1 / 3), 1.5, 2))
    moved = learner.gate_weights()
    assert moved is not None
    (kernel, bias), (kernel0, bias0) = moved.layers[0], start.layers[0]
    np.testing.assert_array_equal(kernel[:, 2], kernel0[:, 2])
    assert bias[2] == bias0[2]
    assert not np.allclose(kernel[:, :2], kernel0[:, :2])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_backtests_softmax_gate_and_the_signal_api_route_an_abstention_the_same(k: int) -> None:
    rng = np.random.default_rng(k)
    prints = rng.normal(size=(400, len(FINGERPRINT_NAMES)))
    z = rng.normal(size=400)
    scores = np.column_stack((np.sign(z) * (prints[:, 0] > 0), np.sign(z) * (prints[:, 1] > 0),
                              rng.uniform(-1, 1, 400)))
    scores[::4, 2] = np.nan
    gate = SoftmaxGate(k=k if k < 3 else None).fit(prints, z, expert_scores=scores)
    bundle = make_bundle()
    bundle = replace(bundle, gate=GateSpec("softmax", softmax_gate_weights(gate, ALL), FINGERPRINT_NAMES))
    answers = [{"trend": trend(0.7, 0.2), "levels": None if i % 3 == 1 else levels(90, 110),
                "volatility": None if i % 3 == 2 else vol(0.01)} for i in range(6)]
    rows = prints[:6]
    d = Combiner(bundle).decide(answers, np.full(6, 100.0), rows)
    np.testing.assert_array_equal(d.gate, gate.predict_proba(rows, d.available))
    assert not d.available.all() and (d.gate[~d.available] == 0).all()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_backtests_rule_gate_and_the_signal_api_route_an_abstention_the_same(k: int) -> None:
    train = fingerprint_rows(vol30=list(np.linspace(0.005, 0.02, 100)))
    gate = FingerprintRuleGate(k=k).fit(train)
    rows = fingerprint_rows(trend_r2=[0.7, 0.1, 0.4, 0.7, 0.7, 0.1], hurst=[0.5, 0.4, 0.5, 0.5, 0.6, 0.4],
                            vol30=[0.01, 0.01, 0.05, 0.05, 0.05, 0.01])
    bundle = replace(make_bundle(), gate=GateSpec("rule", None, FINGERPRINT_NAMES, rule_gate_params(gate, ALL)))
    answers = [{"trend": None if i == 4 else trend(0.7, 0.2), "levels": None if i in (1, 5) else levels(90, 110),
                "volatility": None if i in (0, 2, 3) else vol(0.01)} for i in range(6)]
    d = Combiner(bundle).decide(answers, np.full(6, 100.0), rows)
    np.testing.assert_array_equal(d.gate, gate.predict_proba(rows, d.available))
    if k == 3:  # trend rule with volatility out: (3, 1) / 4; trend + volatility rules with trend out: (1, 3) / 4
        np.testing.assert_allclose(d.gate[[0, 4]], [[0.75, 0.25, 0], [0, 0.25, 0.75]])


def test_the_mlp_gates_fit_gives_an_expert_that_always_abstains_no_gradient() -> None:
    """The output layer's bias of an expert masked on every row gets a zero gradient, so Adam never moves it
    from its initial 0; the answering experts' biases move."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    scores = np.column_stack((np.sign(y), rng.uniform(-1, 1, 200), np.full(200, np.nan)))
    gate = MLPGate(hidden=(8,), k=2, epochs=20, min_rows=10).fit(X, y, expert_scores=scores)
    bias = gate.weights_.layers[-1][1]
    assert bias[2] == 0.0 and np.abs(bias[:2]).min() > 0.0
    assert np.isfinite(gate.loss_history_).all()
    np.testing.assert_allclose(gate.predict_proba(X[:3], np.array([[T, T, F]] * 3)).sum(axis=1), 1.0)
    assert (gate.predict_proba(X[:3], np.array([[T, T, F]] * 3))[:, 2] == 0).all()


def test_a_missing_volatility_forecast_scores_nan_and_the_rest_as_before() -> None:
    forecasts = np.array([0.01, 0.02, np.nan, 0.04])
    score = volatility_score(forecasts, window=3, min_periods=2)
    # bar 1: logs of 0.01, 0.02: z = +1 -> -tanh(1); bar 2 abstains; bar 3: window (0.02, NaN, 0.04) -> z = +1
    np.testing.assert_allclose(score, [0.0, -math.tanh(1.0), np.nan, -math.tanh(1.0)], atol=1e-12)
