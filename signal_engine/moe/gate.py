"""Softmax gate: learns, from market fingerprints, how much to trust each expert's score."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from signal_engine.moe.numpy_gate import (
    GateWeights,
    available_experts,
    gate_forward,
    renormalise,
    softmax,
    softmax_gate_gradient,
)
from signal_engine.moe.standardise import fit_standardiser, standardise


class SoftmaxGate(BaseEstimator):
    """Linear-softmax gate trained to make the gated score predict the realised move.

    With standardised inputs x and expert scores s (n x E), the weights are w = softmax(x W + b) and
    the combined score is sum_e w_e s_e. ``fit`` maximises, by deterministic gradient ascent from
    uniform weights,

        J = mean_i(score_i * z_i) - l2 / 2 * ||W||^2 + entropy * mean_i H(w_i)

    where z is the realised forward return in units of its volatility (the target), and the entropy
    term H keeps the weights from collapsing onto one expert. With fewer than ``min_rows`` training
    rows the gate stays uniform.

    Abstention: an expert score of NaN means the expert abstains on that row. There its weight is 0 and
    the others' weights are renormalised (:func:`~signal_engine.moe.numpy_gate.renormalise`), in the
    objective (so the abstaining expert's logit gets no gradient from the row) and in ``predict_proba``
    given ``available``; rows where every expert abstains are left out of the fit.

    Parameters
    ----------
    l2, entropy : regularisation strengths.
    iterations, learning_rate : gradient ascent settings.
    min_rows : rows needed before the gate departs from uniform weights.
    clip : targets are clipped to [-clip, clip] so one crash does not dominate.
    k : top-k routing: each row keeps its k largest weights, renormalised (None: dense). Training is dense;
        the sparsity applies when the gate is used.

    References
    ----------
    Seed 000 ("Gating Network": softmax weights trained on validation data); Jacobs et al. (1991),
    "Adaptive mixtures of local experts", Neural Computation.
    """

    def __init__(
        self,
        l2: float = 1.0,
        entropy: float = 0.01,
        iterations: int = 200,
        learning_rate: float = 0.5,
        min_rows: int = 100,
        clip: float = 3.0,
        k: int | None = None,
    ) -> None:
        self.l2 = l2
        self.entropy = entropy
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.min_rows = min_rows
        self.clip = clip
        self.k = k

    def fit(self, X: np.ndarray, y: np.ndarray, *, expert_scores: np.ndarray) -> Self:
        X = np.asarray(X, dtype=float)
        scores = np.asarray(expert_scores, dtype=float)
        target = np.clip(np.asarray(y, dtype=float), -self.clip, self.clip)
        answered = available_experts(scores).any(axis=1)
        if not answered.all():
            X, scores, target = X[answered], scores[answered], target[answered]
        self.n_features_in_ = X.shape[1]
        self.n_experts_ = scores.shape[1]
        self.mean_, self.scale_ = fit_standardiser(X)
        self.coef_ = np.zeros((X.shape[1], self.n_experts_))
        self.intercept_ = np.zeros(self.n_experts_)
        self.n_train_ = len(X)
        if len(X) < self.min_rows:
            return self
        inputs = self._standardise(X)
        for _ in range(self.iterations):
            grad_coef, grad_intercept = self._gradient(inputs, scores, target)
            self.coef_ += self.learning_rate * grad_coef
            self.intercept_ += self.learning_rate * grad_intercept
        return self

    def predict_proba(self, X: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
        """The gate weights, one row per input row, each summing to 1 (top-k sparse when ``k`` is set), over the
        experts marked ``available`` (n, E) on each row (None: every expert)."""
        return gate_forward(self.gate_weights(), X, available)

    def gate_weights(self, experts: tuple[str, ...] | None = None) -> GateWeights:
        """The fitted gate as the Signal API's :class:`GateWeights` (one layer); ``predict_proba`` runs the API's
        own forward pass (:func:`gate_forward`) on it. Dense routing is k = the number of experts."""
        n = self.coef_.shape[1]
        names = experts if experts is not None else tuple(f"expert_{j}" for j in range(n))
        k = n if self.k is None else min(int(self.k), n)
        return GateWeights(self.mean_, self.scale_, ((self.coef_, self.intercept_),), k, names)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the expert with the largest weight."""
        return np.argmax(self.predict_proba(X), axis=1)

    def objective(self, X: np.ndarray, y: np.ndarray, *, expert_scores: np.ndarray) -> float:
        """The training objective J at the current weights (for tests and diagnostics); NaN scores abstain."""
        scores = np.asarray(expert_scores, dtype=float)
        available = available_experts(scores)
        logits = self._standardise(np.asarray(X, dtype=float)) @ self.coef_ + self.intercept_
        weights = renormalise(softmax(logits), available)
        target = np.clip(np.asarray(y, dtype=float), -self.clip, self.clip)
        combined = (weights * np.where(available, scores, 0.0)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(weights > 0, weights * np.log(weights), 0.0).sum(axis=1)
        penalty = 0.5 * self.l2 * float((self.coef_**2).sum())
        return float(np.mean(combined * target) - penalty + self.entropy * np.mean(entropy))

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return standardise(X, self.mean_, self.scale_)

    def _gradient(self, inputs: np.ndarray, scores: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return softmax_gate_gradient(inputs, scores, target, self.coef_, self.intercept_, entropy=self.entropy,
                                     l2=self.l2)
