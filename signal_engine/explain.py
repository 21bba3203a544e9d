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
