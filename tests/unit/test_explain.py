"""Explanations: SHAP contributions add up to the model's margin; expert contributions to the score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from signal_engine.explain import directional_shap, expert_contributions, meta_contributions, top_features
from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.moe.meta import MetaModelCombiner, meta_features


def test_tree_shap_adds_up_to_the_directional_margin() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 4))
    y = np.select([X[:, 0] > 0.5, X[:, 0] < -0.5], [UP, DOWN], 1)
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1, random_state=0).fit(X, y)
    contributions = directional_shap(model.booster_, X)
    raw = np.asarray(model.booster_.predict(X, raw_score=True))
    expected = np.asarray(model.booster_.predict(X, pred_contrib=True)).reshape(600, 3, 5)[:, :, -1]
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


def test_meta_contributions_and_the_prior_add_up_to_the_meta_score() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(-1, 1, (1500, 3))
    gate = rng.dirichlet(np.ones(3), 1500)
    combined = (scores * gate).sum(axis=1) + 0.5 * scores[:, 0] + rng.normal(0, 0.2, 1500)
    labels = np.select([combined > 0.2, combined < -0.2], [UP, DOWN], NEUTRAL)
    features = meta_features(scores, gate)
    meta = MetaModelCombiner().fit(features, labels)
    score = meta.decision_function(features)
    w = meta.weights_
    parts, prior = meta_contributions(w.mean, w.scale, w.coef, w.intercept, w.classes, features, 3, score)
    np.testing.assert_allclose(parts.sum(axis=1) + prior, score, atol=1e-10)
    # the trend expert drives the labels most, so it carries the largest share on average
    assert np.abs(parts).mean(axis=0).argmax() == 0
    # with a 2-class fit (down/up only) the same identity holds
    binary = MetaModelCombiner().fit(features, np.where(labels == NEUTRAL, UP, labels))
    b = binary.weights_
    score = binary.decision_function(features)
    parts, prior = meta_contributions(b.mean, b.scale, b.coef, b.intercept, b.classes, features, 3, score)
    np.testing.assert_allclose(parts.sum(axis=1) + prior, score, atol=1e-10)
