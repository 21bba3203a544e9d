"""Explanations: SHAP contributions add up to the model's margin; expert contributions to the score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from signal_engine.explain import directional_shap, expert_contributions, top_features
from signal_engine.labels import DOWN, UP


def test_tree_shap_adds_up_to_the_directional_margin() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 4))
    y = np.select([X[:, 0] > 0.5, X[:, 0] < -0.5], [UP, DOWN], 1)
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1, random_state=0).fit(X, y)
    contributions = directional_shap(model.booster_, X)
    raw = model.booster_.predict(X, raw_score=True)
    expected = model.booster_.predict(X, pred_contrib=True).reshape(600, 3, 5)[:, :, -1]
    margin = (raw[:, UP] - expected[:, UP]) - (raw[:, DOWN] - expected[:, DOWN])
    np.testing.assert_allclose(contributions.sum(axis=1), margin, atol=1e-9)
    assert np.abs(contributions[:, 0]).mean() > 5 * np.abs(contributions[:, 1:]).mean()
    assert top_features(contributions[:1], ["a", "b", "c", "d"], count=1)[0].startswith("a:")


def test_expert_contributions_sum_to_the_weighted_score() -> None:
    scores = np.array([[0.7, 0.5, -0.2]])
    gate = np.array([[0.4, 0.3, 0.2]])
    contributions = expert_contributions(scores, gate)
    np.testing.assert_allclose(contributions, [[0.28, 0.15, -0.04]])
    assert np.isclose(contributions.sum(), 0.39)


def test_top_features_format() -> None:
    contributions = np.array([[0.1, -0.5, 0.2]])
    assert top_features(contributions, ["x", "y", "z"], count=2) == ["y:-0.500;z:+0.200"]
