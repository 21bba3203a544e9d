"""The gates' forward passes in NumPy: what the serving path runs (no TensorFlow, scikit-learn or pandas there).
:class:`MetaArrays` holds the meta-model combiner the same way (the bundle serves it, ``moe.online`` steps it).

The MLP and softmax gates run from :class:`GateWeights`; the fingerprint rule gate from :class:`RuleGateParams`
(``FingerprintRuleGate.predict_proba`` calls :func:`rule_gate_forward` too, so backtest and serving share it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signal_engine.moe.standardise import standardise


@dataclass(frozen=True)
class GateWeights:
    """Exported MLP gate: input standardisation, dense layers (ReLU between), softmax, top-k.

    ``layers`` is a list of (kernel (d_in, d_out), bias (d_out,)); the last layer gives one logit per
    expert. ``experts`` names the experts in output order.
    """

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    k: int
    experts: tuple[str, ...]

    def save(self, path: Path) -> None:
        """Write the weights as one ``.npz`` file plus the expert names and k in its metadata."""
        meta = json.dumps({"k": self.k, "experts": list(self.experts), "layers": len(self.layers)})
        arrays: dict[str, np.ndarray] = {"meta": np.array(meta), "mean": self.mean, "scale": self.scale}
        for i, (kernel, bias) in enumerate(self.layers):
            arrays[f"kernel_{i}"] = kernel
            arrays[f"bias_{i}"] = bias
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> GateWeights:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            layers = tuple((data[f"kernel_{i}"], data[f"bias_{i}"]) for i in range(meta["layers"]))
            return cls(data["mean"], data["scale"], layers, int(meta["k"]), tuple(meta["experts"]))


@dataclass(frozen=True)
class MetaArrays:
    """The meta-model combiner as plain arrays (``MetaWeights`` and the serving bundle's ``meta.npz`` hold the
    same): standardise, multinomial logistic regression over (down, neutral, up); ``features`` names its inputs
    (e.g. ``score_trend``, ``gate_levels``, ``p_up``)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def softmax_gate_gradient(inputs: np.ndarray, scores: np.ndarray, target: np.ndarray, coef: np.ndarray,
                          intercept: np.ndarray, *, entropy: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the softmax gate's objective (``SoftmaxGate``'s J) in its coefficients and intercept.

    ``inputs`` are standardised fingerprints (n, d), ``scores`` the experts' scores (n, E), ``target`` the
    clipped realised move (n,). ``SoftmaxGate.fit`` ascends it over its training rows; the online learner
    (:mod:`signal_engine.moe.online`) takes one step per realised bar.
    """
    n = len(inputs)
    weights = softmax(inputs @ coef + intercept)
    combined = (weights * scores).sum(axis=1, keepdims=True)
    fit_term = target[:, None] * weights * (scores - combined)
    log_w = np.log(weights)
    h = -(weights * log_w).sum(axis=1, keepdims=True)
    entropy_term = -weights * (log_w + h)
    d_logits = (fit_term + entropy * entropy_term) / n
    return inputs.T @ d_logits - l2 * coef, d_logits.sum(axis=0)


def top_k(weights: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest weights (ties to the lower index), renormalised to sum to 1."""
    if k >= weights.shape[1]:
        return weights
    order = np.argsort(-weights, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(weights))[:, None]
    kept = np.zeros_like(weights)
    kept[rows, order] = weights[rows, order]
    return kept / kept.sum(axis=1, keepdims=True)


def gate_logits(weights: GateWeights, X: np.ndarray) -> np.ndarray:
    """Logits of the MLP for standardised inputs (NaN inputs count as the training mean)."""
    hidden = standardise(X, weights.mean, weights.scale)
    for i, (kernel, bias) in enumerate(weights.layers):
        hidden = hidden @ kernel + bias
        if i < len(weights.layers) - 1:
            hidden = np.maximum(hidden, 0.0)
    return hidden


def gate_forward(weights: GateWeights, X: np.ndarray) -> np.ndarray:
    """Gate weights per row: softmax of the logits, sparsified to the top k, summing to 1."""
    return top_k(softmax(gate_logits(weights, X)), weights.k)


RULE_FEATURES = ("trend_r2", "hurst", "vol30")
RULE_EXPERTS = ("trend", "levels", "volatility")


@dataclass(frozen=True)
class RuleGateParams:
    """Exported :class:`~signal_engine.moe.rule_gate.FingerprintRuleGate`: its fixed rules, its one learned
    threshold (``vol_threshold``, the ``vol_quantile`` quantile of vol30 on the training rows) and top-k.

    ``experts`` names the experts of the rule gate's three columns, in the order of :data:`RULE_EXPERTS`
    (the trend rule, the levels rule, the volatility rule).
    """

    boost: float
    trend_r2_min: float
    persistent_hurst: float
    reverting_hurst: float
    range_r2_max: float
    vol_threshold: float
    k: int
    experts: tuple[str, ...] = RULE_EXPERTS


def rule_fires(X: np.ndarray, columns: Sequence[str], params: RuleGateParams) -> np.ndarray:
    """(n, 3) booleans: which rule (trend, levels, volatility) fires on each fingerprint row.

    ``columns`` names the columns of ``X``; the rules read ``trend_r2``, ``hurst`` and ``vol30`` by name.
    A NaN feature fires nothing (its comparisons are false).
    """
    X = np.asarray(X, dtype=float)
    names = list(columns)
    missing = [name for name in RULE_FEATURES if name not in names]
    if missing:
        raise ValueError(f"the rule gate reads the fingerprint columns {list(RULE_FEATURES)}; {missing} are not "
                         f"among the columns {names}")
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"expected fingerprint rows with the {len(names)} columns {names}, got shape {X.shape}")
    r2, hurst, vol = (X[:, names.index(name)] for name in RULE_FEATURES)
    with np.errstate(invalid="ignore"):
        trend = (r2 >= params.trend_r2_min) | (hurst > params.persistent_hurst)
        levels = (hurst < params.reverting_hurst) & (r2 < params.range_r2_max)
        volatility = vol > params.vol_threshold
    return np.column_stack((trend, levels, volatility))


def rule_gate_dense(X: np.ndarray, columns: Sequence[str], params: RuleGateParams) -> np.ndarray:
    """The rule gate's weights before top-k: ``1 + boost`` for a firing rule, 1 otherwise, normalised to 1."""
    raw = 1.0 + params.boost * rule_fires(X, columns, params).astype(float)
    return np.asarray(raw / raw.sum(axis=1, keepdims=True))


def rule_gate_forward(X: np.ndarray, columns: Sequence[str], params: RuleGateParams) -> np.ndarray:
    """Rule gate weights per row, summing to 1, sparsified to the top ``k`` (ties to the earlier expert)."""
    return top_k(rule_gate_dense(X, columns, params), params.k)
