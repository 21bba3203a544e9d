"""Rule-based and meta-model combiners on seed 000's worked example, and their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from signal_engine.errors import ConfigError
from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.moe import WeightedScoreCombiner
from signal_engine.moe.meta import MetaModelCombiner, MetaWeights, meta_feature_names, meta_features
from signal_engine.moe.rules import RuleBasedCombiner, expert_outputs

# seed 000: P(up) 0.7, P(down) 0.2, support $50, resistance $55, price $51, volatility 2%
EXAMPLE = expert_outputs(
    close=np.array([51.0]), p_up=np.array([0.7]), p_down=np.array([0.2]), support=np.array([50.0]),
    resistance=np.array([55.0]), vol_forecast=np.array([0.02]),
)


def test_rule_based_buys_on_the_seed_example_with_its_notion_of_near() -> None:
    rules = {"buy": ["p_up > 0.6", "support_distance < 0.02", "vol_forecast < 0.03"]}
    assert RuleBasedCombiner(rules).fit().predict(EXAMPLE).tolist() == ["buy"]


def test_default_rules_need_price_within_1_percent_of_support() -> None:
    # $51 is 1.96% above $50: the default rule (issue: "within 1% of support") holds
    combiner = RuleBasedCombiner().fit()
    assert combiner.predict(EXAMPLE).tolist() == ["hold"]
    near = {**EXAMPLE, "support_distance": np.array([0.005])}
    assert combiner.predict(near).tolist() == ["buy"]
    stormy = {**near, "vol_forecast": np.array([0.04])}
    assert combiner.predict(stormy).tolist() == ["hold"]


def test_rule_based_sell_and_conflict() -> None:
    rules = {"buy": ["p_up > 0.5"], "sell": ["p_down > 0.1"]}
    outputs = {"p_up": np.array([0.7, 0.3, 0.3]), "p_down": np.array([0.2, 0.6, 0.05])}
    assert RuleBasedCombiner(rules).fit().predict(outputs).tolist() == ["hold", "sell", "hold"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"buy": ["p_up >> 0.6"]}, "rule 'buy': cannot read condition 'p_up >> 0.6'"),
        ({"short": ["p_up > 0.6"]}, "unknown signal \\['short'\\]"),
    ],
)
def test_bad_rules_name_the_rule(rules: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RuleBasedCombiner(rules).fit()


def test_unknown_field_lists_the_available_ones() -> None:
    combiner = RuleBasedCombiner({"buy": ["rsi > 70"]}).fit()
    with pytest.raises(ConfigError, match="unknown field 'rsi'; available: p_down"):
        combiner.predict(EXAMPLE)


def test_meta_model_learns_the_weighted_score_rule_and_buys_the_seed_example() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (3000, 3))
    weights = np.array([0.4, 0.3, 0.2])
    teacher = WeightedScoreCombiner(0.3, -0.3).fit()
    direction = teacher.direction(teacher.decision_function(scores, np.tile(weights, (3000, 1))))
    labels = np.select([direction > 0, direction < 0], [UP, DOWN], NEUTRAL)
    features = np.column_stack((scores, np.tile(weights, (3000, 1))))
    meta = MetaModelCombiner(C=100.0).fit(features, labels)
    example = np.array([[0.7, 0.5, -0.2, 0.4, 0.3, 0.2]])
    assert meta.predict(example).tolist() == ["buy"]
    assert meta.predict(np.array([[-0.7, -0.5, 0.2, 0.4, 0.3, 0.2]])).tolist() == ["sell"]
    # the gate weights never vary here, so the solver saw the three scores only (``varied_``)
    assert meta.varied_.tolist() == [0, 1, 2]
    np.testing.assert_allclose(meta.predict_proba(features), meta.model_.predict_proba(
        ((features - meta.weights_.mean) / meta.weights_.scale)[:, meta.varied_]), atol=1e-10)


def meta_training_set(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    scores = rng.uniform(-1, 1, (n, 3))
    gate = rng.dirichlet(np.ones(3), n)
    combined = (scores * gate).sum(axis=1) + rng.normal(0, 0.2, n)
    labels = np.select([combined > 0.1, combined < -0.1], [UP, DOWN], NEUTRAL)
    return meta_features(scores, gate), labels


def test_meta_model_numpy_export_equals_scikit_learn_to_1e_6(tmp_path: Path) -> None:
    features, labels = meta_training_set()
    names = meta_feature_names(("trend", "levels", "volatility"))
    meta = MetaModelCombiner(features=names).fit(features, labels)
    path = tmp_path / "meta.npz"
    meta.weights_.save(path)
    loaded = MetaWeights.load(path)
    assert loaded.features == names == ("score_trend", "score_levels", "score_volatility",
                                        "gate_trend", "gate_levels", "gate_volatility")
    with np.load(path) as arrays:
        assert set(arrays.files) == {"features", "mean", "scale", "coef", "intercept", "classes"}
    reference = meta.model_.predict_proba((features - meta.weights_.mean) / meta.weights_.scale)
    np.testing.assert_allclose(loaded.predict_proba(features), reference, atol=1e-6)
    example = meta_features(np.array([[0.7, 0.5, -0.2]]), np.array([[0.4, 0.3, 0.2]]))
    assert meta.predict(example).tolist() == ["buy"]


def test_meta_model_export_with_two_classes_seen(tmp_path: Path) -> None:
    features, labels = meta_training_set()
    labels = np.where(labels == NEUTRAL, UP, labels)
    meta = MetaModelCombiner().fit(features, labels)
    meta.weights_.save(tmp_path / "meta.npz")
    proba = MetaWeights.load(tmp_path / "meta.npz").predict_proba(features)
    assert proba.shape == (len(features), 3)
    np.testing.assert_allclose(proba[:, NEUTRAL], 0.0)
    np.testing.assert_allclose(proba[:, [DOWN, UP]], meta.model_.predict_proba(
        (features - meta.weights_.mean) / meta.weights_.scale), atol=1e-6)


def test_meta_model_rejects_feature_names_of_the_wrong_length() -> None:
    features, labels = meta_training_set(300)
    with pytest.raises(ValueError, match="features names 2 inputs but the data have 6 columns"):
        MetaModelCombiner(features=("a", "b")).fit(features, labels)


def test_the_meta_model_gives_an_input_that_never_varied_no_weight_and_fits_the_rest_as_without_it() -> None:
    rng = np.random.default_rng(3)
    informative = rng.normal(size=(300, 2))
    labels = np.where(informative[:, 0] > 0.5, UP, np.where(informative[:, 0] < -0.5, DOWN, NEUTRAL))
    # a third input fixed at one value (an expert that abstained on every row, a gate that stayed uniform)
    with_constant = np.column_stack((informative, np.full(300, 1 / 3)))
    alone = MetaModelCombiner().fit(informative, labels).weights_
    padded = MetaModelCombiner().fit(with_constant, labels).weights_
    assert padded.coef.shape == (3, 3)
    np.testing.assert_array_equal(padded.coef[:, 2], 0.0)
    np.testing.assert_array_equal(padded.coef[:, :2], alone.coef)
    np.testing.assert_array_equal(padded.intercept, alone.intercept)
    np.testing.assert_array_equal(padded.predict_proba(with_constant), alone.predict_proba(informative))
