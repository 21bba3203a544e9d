"""Explanations carried with each signal: expert contributions and the features behind the trend call.

Tree models are explained with TreeSHAP as computed by LightGBM itself (``pred_contrib``), which is
exact for tree ensembles and needs no extra dependency.

References
----------
Lundberg, Erion & Lee (2018), "Consistent individualized feature attribution for tree ensembles".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from signal_engine.labels import DOWN, NEUTRAL, UP


def expert_contributions(scores: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """Each expert's part of the combined score: its score times its gate weight, (n, E)."""
    return np.asarray(scores, dtype=float) * np.asarray(gate, dtype=float)


def classifier_directional_shap(model: Any, X: np.ndarray) -> np.ndarray:
    """``directional_shap`` of a fitted three-class ``LGBMClassifier`` (zeros if a class was never seen)."""
    if list(model.classes_) != [DOWN, NEUTRAL, UP]:
        return np.zeros((len(X), model.n_features_in_))
    return directional_shap(model.booster_, X)


def directional_shap(booster: Any, X: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """TreeSHAP contributions of each feature to logit(up) - logit(down), shaped (n, F).

    For a multiclass LightGBM booster, ``pred_contrib`` returns, per class, one contribution per
    feature plus the expected value; the directional attribution is the up column block minus the
    down block (the expected-value column is dropped).
    """
    raw = np.asarray(booster.predict(X, pred_contrib=True))
    width = raw.shape[1] // n_classes
    blocks = raw.reshape(len(X), n_classes, width)
    return blocks[:, UP, :-1] - blocks[:, DOWN, :-1]


def top_features(contributions: np.ndarray, names: Sequence[str], count: int = 3) -> list[str]:
    """Per row, the ``count`` features with the largest absolute contribution, as 'name:+0.123;...'."""
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :count]
    return [
        ";".join(f"{names[j]}:{contributions[i, j]:+.3f}" for j in row)
        for i, row in enumerate(order)
    ]


def meta_contributions(
    mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray,
    features: np.ndarray, n_experts: int, score: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each expert's part of a meta-model score P(up) - P(down), and the part of the class prior.

    The meta-model is a multinomial logistic regression on standardised inputs laid out as
    :func:`signal_engine.moe.meta.meta_features` (E expert scores, then E gate weights). Its up-vs-down
    margin ``logit(up) - logit(down)`` is linear: expert e's term is the sum over its score and gate-weight
    inputs of (coef_up - coef_down) x input, the prior's term is intercept_up - intercept_down. P(up) -
    P(down) has the sign of that margin, so each term is rescaled by score / margin: the expert parts plus
    the prior part add up to the score. Returns ((n, E) expert parts, (n,) prior part).
    """
    z = np.nan_to_num((np.asarray(features, dtype=float) - mean) / scale)
    coef = np.asarray(coef, dtype=float)
    intercept = np.asarray(intercept, dtype=float)
    score = np.asarray(score, dtype=float)
    if coef.shape[0] == 1:  # two classes: the row is logit(classes[1]) - logit(classes[0])
        if [int(c) for c in classes] != [DOWN, UP]:  # up or down never seen: the score is all prior
            return np.zeros((len(z), n_experts)), score.copy()
        direction, bias = coef[0], float(intercept[0])
    else:
        rows = {int(c): i for i, c in enumerate(classes)}
        up = coef[rows[UP]] if UP in rows else np.zeros(coef.shape[1])
        down = coef[rows[DOWN]] if DOWN in rows else np.zeros(coef.shape[1])
        direction = up - down
        bias = float((intercept[rows[UP]] if UP in rows else 0.0) - (intercept[rows[DOWN]] if DOWN in rows else 0.0))
    terms = z * direction
    experts = terms[:, :n_experts] + terms[:, n_experts : 2 * n_experts]
    margin = experts.sum(axis=1) + bias
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.abs(margin) > 1e-12, score / margin, 0.0)
    return experts * ratio[:, None], bias * ratio
