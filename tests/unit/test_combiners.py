"""Rule-based and meta-model combiners on seed 000's worked example, and their error messages."""

from __future__ import annotations

import numpy as np
import pytest

from signal_engine.errors import ConfigError
from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.moe import WeightedScoreCombiner
from signal_engine.moe.meta import MetaModelCombiner
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
    np.testing.assert_allclose(meta.predict_proba(features), meta.model_.predict_proba(
        (features - meta.weights_.mean) / meta.weights_.scale), atol=1e-10)
