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


def available_experts(scores: np.ndarray) -> np.ndarray:
    """(n, E) booleans: which experts answered on each row (an expert whose score is NaN abstains)."""
    return np.isfinite(np.asarray(scores, dtype=float))


def renormalise(weights: np.ndarray, available: np.ndarray | None) -> np.ndarray:
    """``weights`` (rows summing to 1) with every abstaining expert's weight set to 0 and the rest renormalised to
    sum to 1 (equal shares where the available experts' weights are all 0); a row where no expert is available
    is all 0. ``available`` None or all True: ``weights`` as they are."""
    if available is None or available.all():
        return weights
    available = np.asarray(available, dtype=bool)
    kept = np.where(available, weights, 0.0)
    total = kept.sum(axis=1, keepdims=True)
    count = available.sum(axis=1, keepdims=True)
    equal = available / np.maximum(count, 1)
    return np.where(total > 0, kept / np.where(total > 0, total, 1.0), equal)


def softmax_gate_gradient(inputs: np.ndarray, scores: np.ndarray, target: np.ndarray, coef: np.ndarray,
                          intercept: np.ndarray, *, entropy: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the softmax gate's objective (``SoftmaxGate``'s J) in its coefficients and intercept.

    ``inputs`` are standardised fingerprints (n, d), ``scores`` the experts' scores (n, E), NaN where an expert
    abstains, ``target`` the clipped realised move (n,). On each row the weights are the softmax renormalised
    over the experts that answered (:func:`renormalise`), so an abstaining expert's logit gets no gradient from
    that row: it neither earns nor loses weight where it gave no evidence. ``SoftmaxGate.fit`` ascends it over
    its training rows; the online learner (:mod:`signal_engine.moe.online`) takes one step per realised bar.
    """
    n = len(inputs)
    available = available_experts(scores)
    weights = renormalise(softmax(inputs @ coef + intercept), available)
    scores = np.where(available, scores, 0.0)
    combined = (weights * scores).sum(axis=1, keepdims=True)
    fit_term = target[:, None] * weights * (scores - combined)
    log_w = _log_weights(weights, available)
    h = -(weights * log_w).sum(axis=1, keepdims=True)
    entropy_term = -weights * (log_w + h)
    d_logits = (fit_term + entropy * entropy_term) / n
    return inputs.T @ d_logits - l2 * coef, d_logits.sum(axis=0)


def _log_weights(weights: np.ndarray, available: np.ndarray) -> np.ndarray:
    """``log(weights)`` of the available experts, 0 for the abstaining ones (their weight is 0: w log w = 0)."""
    if available.all():
        return np.log(weights)
    with np.errstate(divide="ignore"):
        return np.where(available, np.log(weights), 0.0)


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


def available_top_k(weights: np.ndarray, available: np.ndarray | None, k: int) -> np.ndarray:
    """The gate weights a row routes with: the dense ``weights`` renormalised over the experts that answered
    (:func:`renormalise`), then sparsified to the top ``min(k, experts that answered)``. The backtest and the
    Signal API's combiner both route through it, so an abstaining expert weighs the same in both."""
    if available is None or available.all():
        return top_k(weights, k)
    available = np.asarray(available, dtype=bool)
    kept = renormalise(weights, available)
    counts = available.sum(axis=1)
    out = np.zeros_like(kept)
    for count in np.unique(counts[counts > 0]):
        rows = counts == count
        out[rows] = top_k(kept[rows], min(k, int(count)))
    return out


def gate_forward(weights: GateWeights, X: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
    """Gate weights per row: softmax of the logits, renormalised over the ``available`` experts (None: all),
    sparsified to the top k, summing to 1."""
    return available_top_k(softmax(gate_logits(weights, X)), available, weights.k)


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


def rule_gate_forward(X: np.ndarray, columns: Sequence[str], params: RuleGateParams,
                      available: np.ndarray | None = None) -> np.ndarray:
    """Rule gate weights per row, summing to 1, renormalised over the ``available`` experts (None: all),
    sparsified to the top ``k`` (ties to the earlier expert)."""
    return available_top_k(rule_gate_dense(X, columns, params), available, params.k)
