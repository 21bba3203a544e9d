"""Ensembles of classifiers: majority, weighted and soft voting, stacking, Bayesian averaging, threshold.

Every ensemble takes the members' class probabilities ``{name: (n, K)}`` and gives ``predict_proba``
(n, K) and ``predict`` (class index, or -1 where ``ThresholdVote`` abstains).
"""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from signal_engine.ensembles.base import Predictions, normalise, stack

_EPS = 1e-12


class _ProbabilityEnsemble(BaseEstimator):
    """Base: learns the member order (and weights) in ``fit``; ``predict`` is the most probable class."""

    def fit(self, predictions: Predictions, y: np.ndarray | None = None) -> Self:
        self.members_, stacked = stack(predictions)
        self.n_classes_ = stacked.shape[2]
        self.weights_ = self._fit_weights(stacked, None if y is None else np.asarray(y, dtype=np.int64))
        return self

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        return np.full(stacked.shape[0], 1.0 / stacked.shape[0])

    def predict_proba(self, predictions: Predictions) -> np.ndarray:
        _, stacked = stack(predictions, self.members_)
        return self._combine(stacked)

    def _combine(self, stacked: np.ndarray) -> np.ndarray:
        return np.einsum("m,mnk->nk", self.weights_, stacked)

    def predict(self, predictions: Predictions) -> np.ndarray:
        return np.argmax(self.predict_proba(predictions), axis=1)


class MajorityVote(_ProbabilityEnsemble):
    """Each member votes for its most probable class; the result is the share of votes per class.

    Ties go to the class with the larger summed probability, so the choice is deterministic.
    """

    def _combine(self, stacked: np.ndarray) -> np.ndarray:
        votes = np.eye(stacked.shape[2])[np.argmax(stacked, axis=2)]
        shares = np.einsum("m,mnk->nk", self.weights_, votes)
        tie_break = 1e-9 * stacked.mean(axis=0)
        return (shares + tie_break) / (shares + tie_break).sum(axis=1, keepdims=True)


class WeightedVote(MajorityVote):
    """Majority vote with each member's vote weighted by its validation accuracy (seed 003).

    ``fit(predictions, y)`` measures each member's accuracy on the validation rows; the weights are
    the accuracies normalised to sum to 1.
    """

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if y is None:
            raise ValueError("WeightedVote.fit needs the validation labels y")
        accuracy = (np.argmax(stacked, axis=2) == y[None, :]).mean(axis=1)
        return normalise(accuracy)


class SoftVote(_ProbabilityEnsemble):
    """The mean of the members' probabilities (optionally weighted by ``weights`` in member order)."""

    def __init__(self, weights: tuple[float, ...] | None = None) -> None:
        self.weights = weights

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if self.weights is None:
            return super()._fit_weights(stacked, y)
        if len(self.weights) != stacked.shape[0]:
            raise ValueError(f"SoftVote.weights has {len(self.weights)} values for {stacked.shape[0]} members")
        return normalise(np.array(self.weights))


class BayesianModelAveraging(_ProbabilityEnsemble):
    """Members weighted by their posterior probability given the validation labels.

    With a uniform prior, w_m is proportional to exp(log L_m / temperature), L_m the likelihood of
    the validation labels under member m's probabilities. ``temperature`` = 1 is textbook BMA, which
    on many rows puts almost all weight on the best member; a larger value (e.g. the number of rows)
    tempers that.

    References
    ----------
    Hoeting, Madigan, Raftery & Volinsky (1999), "Bayesian model averaging: a tutorial", Stat. Sci.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _fit_weights(self, stacked: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if y is None:
            raise ValueError("BayesianModelAveraging.fit needs the validation labels y")
        chosen = stacked[:, np.arange(len(y)), y]
        log_likelihood = np.log(np.clip(chosen, _EPS, 1.0)).sum(axis=1)
        self.log_likelihood_ = log_likelihood
        scaled = (log_likelihood - log_likelihood.max()) / self.temperature
        return normalise(np.exp(scaled))


class ThresholdVote(SoftVote):
    """Soft vote that commits only when the top averaged probability reaches ``threshold``.

    ``predict`` gives -1 (abstain) where it does not; ``predict_proba`` is the plain soft vote.
    """

    def __init__(self, threshold: float = 0.5, weights: tuple[float, ...] | None = None) -> None:
        self.threshold = threshold
        self.weights = weights

    def predict(self, predictions: Predictions) -> np.ndarray:
        proba = self.predict_proba(predictions)
        best = np.argmax(proba, axis=1)
        return np.where(proba.max(axis=1) >= self.threshold, best, -1)


class Stacking(_ProbabilityEnsemble):
    """A multinomial logistic regression on the members' stacked probabilities.

    Fit it on out-of-fold predictions (the members' walk-forward outputs), never on the rows the
    members were trained on.
    """

    def __init__(self, C: float = 1.0, random_state: int = 0) -> None:
        self.C = C
        self.random_state = random_state

    def fit(self, predictions: Predictions, y: np.ndarray | None = None) -> Self:
        if y is None:
            raise ValueError("Stacking.fit needs the out-of-fold labels y")
        self.members_, stacked = stack(predictions)
        self.n_classes_ = stacked.shape[2]
        labels = np.asarray(y, dtype=np.int64)
        self.meta_ = LogisticRegression(C=self.C, max_iter=1000, random_state=self.random_state)
        self.meta_.fit(self._features(stacked), labels)
        self.weights_ = np.full(stacked.shape[0], 1.0 / stacked.shape[0])
        return self

    def _features(self, stacked: np.ndarray) -> np.ndarray:
        return np.log(np.clip(stacked, _EPS, 1.0)).transpose(1, 0, 2).reshape(stacked.shape[1], -1)

    def _combine(self, stacked: np.ndarray) -> np.ndarray:
        proba = np.zeros((stacked.shape[1], self.n_classes_))
        proba[:, self.meta_.classes_] = self.meta_.predict_proba(self._features(stacked))
        return proba
