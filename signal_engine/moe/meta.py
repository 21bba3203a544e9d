"""Meta-model combiner of seed 000: a logistic regression on expert outputs and gate weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from signal_engine.labels import DOWN, UP
from signal_engine.moe.combiner import SIGNALS
from signal_engine.moe.scores import meta_probabilities
from signal_engine.moe.standardise import fit_standardiser, standardise


def meta_feature_names(experts: Sequence[str]) -> tuple[str, ...]:
    """Names of the meta-model's inputs, in order: each expert's score, then each gate weight."""
    return (*(f"score_{e}" for e in experts), *(f"gate_{e}" for e in experts))


def meta_features(scores: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """The meta-model's inputs per row: expert scores (n, E) next to gate weights (n, E)."""
    return np.column_stack((np.asarray(scores, dtype=float), np.asarray(gate, dtype=float)))


@dataclass(frozen=True)
class MetaWeights:
    """The fitted meta-model as plain arrays: standardise, then multinomial logistic regression.

    ``coef`` is (classes, F) (one row for a two-class fit), ``classes`` the trend classes the rows stand
    for, ``features`` the input names. ``save`` writes the ``meta.npz`` of docs/model-bundle.md
    (features, mean, scale, coef, intercept, classes); the serving path reads it with NumPy only.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    features: tuple[str, ...] = ()

    def save(self, path: Path) -> None:
        np.savez(path, features=np.array(self.features, dtype=str), mean=self.mean, scale=self.scale,
                 coef=self.coef, intercept=self.intercept, classes=self.classes)

    @classmethod
    def load(cls, path: Path) -> MetaWeights:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["mean"].astype(float), data["scale"].astype(float), data["coef"].astype(float),
                       data["intercept"].astype(float), data["classes"].astype(np.int64),
                       tuple(str(f) for f in data["features"]))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (down, neutral, up) in NumPy only (the serving path)."""
        return meta_probabilities(features, self.mean, self.scale, self.coef, self.intercept, self.classes)


class MetaModelCombiner(BaseEstimator):
    """Learns the signal from the experts' outputs and the gate weights.

    ``fit(features, y)`` trains a multinomial logistic regression of the realised trend class (down,
    neutral, up) on out-of-fold features: each expert's score or outputs and the gate weights.
    ``decision_function`` is P(up) - P(down); buy above ``buy_threshold``, sell below
    ``sell_threshold``. ``weights_`` holds the model as plain arrays for the serving path.

    References
    ----------
    Seed 000, "Meta-Model Combination"; Wolpert (1992), "Stacked generalization", Neural Networks.
    """

    def __init__(
        self,
        C: float = 1.0,
        buy_threshold: float = 0.1,
        sell_threshold: float = -0.1,
        features: tuple[str, ...] | None = None,
    ) -> None:
        self.C = C
        self.buy_threshold = buy_threshold
        self.sell_threshold = sell_threshold
        self.features = features

    def fit(self, features: np.ndarray, y: np.ndarray) -> Self:
        X = np.asarray(features, dtype=float)
        mean, scale = fit_standardiser(X)
        inputs = standardise(X, mean, scale)
        # an input that never varied over the training rows (a gate still uniform, an expert that abstained on
        # every row) is 0 after standardising: its coefficient is 0 at the optimum, so it is left out of the solver
        # rather than left to move the solver's path by its tolerance
        varied = np.flatnonzero(np.ptp(inputs, axis=0) > 0) if len(inputs) else np.array([], dtype=np.int64)
        if varied.size == 0:
            varied = np.arange(X.shape[1])
        model = LogisticRegression(C=self.C, max_iter=2000)
        model.fit(inputs[:, varied], np.asarray(y, dtype=np.int64))
        self.model_ = model
        self.varied_ = varied
        self.n_train_ = len(X)
        self.classes_ = SIGNALS
        names = self.features or tuple(f"x{i}" for i in range(X.shape[1]))
        if len(names) != X.shape[1]:
            raise ValueError(f"features names {len(names)} inputs but the data have {X.shape[1]} columns")
        coef = np.zeros((model.coef_.shape[0], X.shape[1]))
        coef[:, varied] = model.coef_
        self.weights_ = MetaWeights(mean, scale, coef, model.intercept_, model.classes_.astype(np.int64),
                                    tuple(names))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.weights_.predict_proba(features)

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(features)
        return proba[:, UP] - proba[:, DOWN]

    def predict(self, features: np.ndarray) -> np.ndarray:
        score = self.decision_function(features)
        direction = np.where(score > self.buy_threshold, 1, np.where(score < self.sell_threshold, -1, 0))
        return SIGNALS[direction + 1]
