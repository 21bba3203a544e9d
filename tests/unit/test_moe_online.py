"""The online learner of the gate and the meta-model: its steps follow the gradients of what the refit optimises."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from signal_engine.config import apply_overrides, load_config
from signal_engine.errors import ConfigError
from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.meta import meta_feature_names
from signal_engine.moe.numpy_gate import GateWeights, MetaArrays, softmax
from signal_engine.moe.online import OnlineLearner, OnlineRates, RealisedRow
from signal_engine.moe.standardise import standardise

RNG = np.random.default_rng(3)
MEAN, SCALE = np.array([0.1, -0.2]), np.array([2.0, 0.5])
EXPERTS = ("trend", "levels", "volatility")


def _gate(kernel: np.ndarray | None = None, bias: np.ndarray | None = None) -> GateWeights:
    kernel = RNG.normal(size=(2, 3)) if kernel is None else kernel
    bias = RNG.normal(size=3) if bias is None else bias
    return GateWeights(MEAN, SCALE, ((kernel, bias),), 3, EXPERTS)


def _row(trend: int = UP, forward_z: float = 1.2) -> RealisedRow:
    return RealisedRow(fingerprint=np.array([0.7, -0.4]), scores=np.array([0.5, -0.3, 0.1]),
                       gate=np.array([0.5, 0.3, 0.2]), forward_z=forward_z, trend=trend)


def _row_objective(gate: GateWeights, row: RealisedRow, entropy: float, clip: float) -> float:
    """SoftmaxGate's J on one row, without the L2 term: what an online step ascends."""
    kernel, bias = gate.layers[0]
    x = standardise(row.fingerprint.reshape(1, -1), gate.mean, gate.scale)
    w = softmax(x @ kernel + bias)[0]
    target = float(np.clip(row.forward_z, -clip, clip))
    return float((w * row.scores).sum() * target - entropy * (w * np.log(w)).sum())


def test_a_gate_step_is_the_gradient_of_the_row_objective() -> None:
    gate, row, rate = _gate(), _row(), 1e-3
    rates = OnlineRates(gate=rate, meta=0.0, entropy=0.05, clip=3.0)
    learner = OnlineLearner(gate, None, rates)
    learner.learn(row)
    after = learner.gate_weights()
    assert after is not None and learner.updates == 1
    moved_kernel = (after.layers[0][0] - gate.layers[0][0]) / rate
    moved_bias = (after.layers[0][1] - gate.layers[0][1]) / rate
    numeric_kernel = np.zeros_like(moved_kernel)
    numeric_bias = np.zeros_like(moved_bias)
    h = 1e-6
    for index in np.ndindex(*moved_kernel.shape):
        up, down = gate.layers[0][0].copy(), gate.layers[0][0].copy()
        up[index] += h
        down[index] -= h
        numeric_kernel[index] = (_row_objective(_gate(up, gate.layers[0][1]), row, 0.05, 3.0)
                                 - _row_objective(_gate(down, gate.layers[0][1]), row, 0.05, 3.0)) / (2 * h)
    for j in range(3):
        up, down = gate.layers[0][1].copy(), gate.layers[0][1].copy()
        up[j] += h
        down[j] -= h
        numeric_bias[j] = (_row_objective(_gate(gate.layers[0][0], up), row, 0.05, 3.0)
                           - _row_objective(_gate(gate.layers[0][0], down), row, 0.05, 3.0)) / (2 * h)
    np.testing.assert_allclose(moved_kernel, numeric_kernel, atol=1e-7)
    np.testing.assert_allclose(moved_bias, numeric_bias, atol=1e-7)
    assert _row_objective(after, row, 0.05, 3.0) > _row_objective(gate, row, 0.05, 3.0)


def test_the_gate_step_clips_the_target_as_the_refit_does() -> None:
    gate = _gate()
    rates = OnlineRates(gate=0.1, meta=0.0, entropy=0.0, clip=2.0)
    moved = []
    for z in (2.0, 50.0):
        learner = OnlineLearner(gate, None, rates)
        learner.learn(_row(forward_z=z))
        weights = learner.gate_weights()
        assert weights is not None
        moved.append(weights.layers[0][0])
    np.testing.assert_array_equal(moved[0], moved[1])


def test_the_softmax_gate_fit_ascends_the_same_gradient() -> None:
    """The refit and the online step share one gradient: a one-iteration fit from zero is one online step."""
    X, scores = RNG.normal(size=(1, 2)), RNG.normal(size=(1, 3))
    gate = SoftmaxGate(l2=0.0, entropy=0.02, iterations=1, learning_rate=0.3, min_rows=1).fit(
        X, np.array([0.8]), expert_scores=scores)
    learner = OnlineLearner(GateWeights(gate.mean_, gate.scale_, ((np.zeros((2, 3)), np.zeros(3)),), 3, EXPERTS),
                            None, OnlineRates(gate=0.3, meta=0.0, entropy=0.02, clip=3.0))
    learner.learn(RealisedRow(X[0], scores[0], np.full(3, 1 / 3), 0.8, NEUTRAL))
    weights = learner.gate_weights()
    assert weights is not None
    np.testing.assert_allclose(weights.layers[0][0], gate.coef_, atol=1e-15)
    np.testing.assert_allclose(weights.layers[0][1], gate.intercept_, atol=1e-15)


def _meta(classes: tuple[int, ...]) -> MetaArrays:
    rows = 1 if len(classes) == 2 else len(classes)
    return MetaArrays(meta_feature_names(EXPERTS), np.zeros(6), np.ones(6),
                      RNG.normal(size=(rows, 6)), RNG.normal(size=rows), np.array(classes, dtype=np.int64))


def _log_loss(meta: MetaArrays, row: RealisedRow) -> float:
    from signal_engine.moe.scores import meta_probabilities

    features = np.concatenate((row.scores, row.gate)).reshape(1, -1)
    proba = meta_probabilities(features, meta.mean, meta.scale, meta.coef, meta.intercept, meta.classes)[0]
    return float(-np.log(proba[row.trend]))


@pytest.mark.parametrize("classes", [(DOWN, NEUTRAL, UP), (DOWN, UP)])
def test_a_meta_step_is_the_gradient_of_the_log_loss(classes: tuple[int, ...]) -> None:
    meta, row, rate = _meta(classes), _row(trend=UP), 1e-3
    learner = OnlineLearner(None, meta, OnlineRates(gate=0.0, meta=rate))
    learner.learn(row)
    after = learner.meta_arrays()
    assert after is not None and learner.updates == 1
    assert after.features == ("score_trend", "score_levels", "score_volatility", "gate_trend", "gate_levels",
                              "gate_volatility")  # the inputs' names go through the steps unchanged
    h = 1e-6
    numeric = np.zeros_like(meta.coef)
    for index in np.ndindex(*meta.coef.shape):
        up, down = meta.coef.copy(), meta.coef.copy()
        up[index] += h
        down[index] -= h
        higher, lower = replace(meta, coef=up), replace(meta, coef=down)
        numeric[index] = (_log_loss(higher, row) - _log_loss(lower, row)) / (2 * h)
    np.testing.assert_allclose((meta.coef - after.coef) / rate, numeric, atol=1e-6)
    assert _log_loss(after, row) < _log_loss(meta, row)


def test_a_class_the_meta_model_never_saw_is_not_learnt() -> None:
    meta = _meta((DOWN, UP))
    learner = OnlineLearner(None, meta, OnlineRates(gate=0.0, meta=0.5))
    learner.learn(_row(trend=NEUTRAL))
    after = learner.meta_arrays()
    assert after is not None and (learner.updates, learner.skipped) == (0, 1)
    np.testing.assert_array_equal(after.coef, meta.coef)


def test_unknown_labels_and_zero_rates_leave_the_weights_as_fitted() -> None:
    gate, meta = _gate(), _meta((DOWN, NEUTRAL, UP))
    learner = OnlineLearner(gate, meta, OnlineRates(gate=0.5, meta=0.5))
    learner.learn(_row(trend=-1, forward_z=float("nan")))
    frozen = OnlineLearner(gate, meta, OnlineRates(gate=0.0, meta=0.0))
    frozen.learn(_row())
    for each in (learner, frozen):
        weights, arrays = each.gate_weights(), each.meta_arrays()
        assert weights is not None and arrays is not None and each.updates == 0
        np.testing.assert_array_equal(weights.layers[0][0], gate.layers[0][0])
        np.testing.assert_array_equal(arrays.coef, meta.coef)
    assert gate.layers[0][0] is not learner.gate_weights().layers[0][0]  # type: ignore[union-attr]


def test_the_learner_never_changes_the_fitted_arrays_it_was_given() -> None:
    gate, meta = _gate(), _meta((DOWN, NEUTRAL, UP))
    kernel, coef = gate.layers[0][0].copy(), meta.coef.copy()
    OnlineLearner(gate, meta, OnlineRates(gate=0.5, meta=0.5)).learn(_row())
    np.testing.assert_array_equal(gate.layers[0][0], kernel)
    np.testing.assert_array_equal(meta.coef, coef)


def test_bad_rates_and_gates_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="'gate'"):
        OnlineRates(gate=-0.1, meta=0.0)
    two_layers = GateWeights(MEAN, SCALE, ((np.zeros((2, 4)), np.zeros(4)), (np.zeros((4, 3)), np.zeros(3))), 3,
                             EXPERTS)
    with pytest.raises(ValueError, match=r"moe\.gate: softmax"):
        OnlineLearner(two_layers, None, OnlineRates(gate=0.1, meta=0.0))
    base = load_config("quick")
    with pytest.raises(ConfigError, match=r"moe\.online\.gate_rate.*moe\.gate: softmax"):
        apply_overrides(base, {"moe": {"gate": "rule", "online": {"enabled": True}}})
    with pytest.raises(ConfigError, match=r"moe\.online\.meta_rate.*moe\.combiner: meta"):
        apply_overrides(base, {"moe": {"combiner": "weighted", "online": {"enabled": True}}})
    with pytest.raises(ConfigError, match=r"'moe\.online\.meta_rate' must be a number >= 0"):
        apply_overrides(base, {"moe": {"online": {"meta_rate": -1.0}}})
    allowed = apply_overrides(base, {"moe": {"gate": "rule", "online": {"enabled": True, "gate_rate": 0.0}}})
    assert allowed.moe.online.enabled and allowed.moe.online.gate_rate == 0.0
