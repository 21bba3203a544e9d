"""Export fitted MoE parts as the plain arrays of a :class:`~signal_engine.serving.bundle.ServingBundle`.

The trainer calls these (they import scikit-learn-based classes only for type checks); the serving path
reads only what they produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from signal_engine.moe.numpy_gate import RULE_EXPERTS, GateWeights, MetaArrays, RuleGateParams
from signal_engine.serving.bundle import Calibration


def softmax_gate_weights(gate: Any, experts: Sequence[str]) -> GateWeights:
    """A fitted :class:`~signal_engine.moe.gate.SoftmaxGate` as a one-layer GateWeights, with the gate's own top-k
    (k = number of experts when it routes densely): ``gate.gate_weights``, on which the gate's own
    ``predict_proba`` runs ``gate_forward``, so the backtest and the combiner route the same way.
    """
    coef = np.asarray(gate.coef_, dtype=float)
    if coef.shape[1] != len(experts):
        raise ValueError(f"the gate weighs {coef.shape[1]} experts but {len(experts)} names were given: "
                         f"{list(experts)}")
    weights: GateWeights = gate.gate_weights(tuple(experts))
    return GateWeights(weights.mean.copy(), weights.scale.copy(),
                       tuple((kernel.copy(), bias.copy()) for kernel, bias in weights.layers), weights.k,
                       weights.experts)


def _routing_k(gate: Any, n_experts: int) -> int:
    k = getattr(gate, "k", None)
    return n_experts if k is None else min(int(k), n_experts)


def gate_weights(gate: Any, experts: Sequence[str]) -> tuple[str, GateWeights]:
    """``(kind, weights)`` of a fitted gate: an MLPGate's ``weights_`` as they are, a SoftmaxGate as one layer."""
    weights = getattr(gate, "weights_", None)
    if isinstance(weights, GateWeights):
        if tuple(weights.experts) != tuple(experts):
            raise ValueError(f"the MLP gate names experts {list(weights.experts)}, not {list(experts)}")
        return "mlp", weights
    return "softmax", softmax_gate_weights(gate, experts)


def rule_gate_params(gate: Any, experts: Sequence[str]) -> RuleGateParams:
    """A fitted :class:`~signal_engine.moe.rule_gate.FingerprintRuleGate` as the bundle's :class:`RuleGateParams`,
    with its top-k (k >= 3 is dense: k = 3).

    ``rule_gate_forward`` of the result is exactly the gate's ``predict_proba`` (it is the code that runs there).
    The learned ``vol_threshold_`` must be finite: it is infinite only when no training row had a finite vol30.
    """
    if tuple(experts) != RULE_EXPERTS:
        raise ValueError(f"the rule gate weighs the experts {list(RULE_EXPERTS)} in that order, not {list(experts)}")
    params: RuleGateParams = gate.rule_params()
    if not np.isfinite(params.vol_threshold):
        raise ValueError(f"the rule gate's vol_threshold_ is {params.vol_threshold}: no training row had a finite "
                         "vol30; train on more bars (the fingerprint's vol30 needs 30 of them)")
    return replace(params, k=_routing_k(gate, len(experts)), experts=tuple(experts))


def calibration_knots(calibrator: Any) -> Calibration:
    """A fitted :class:`~signal_engine.moe.confidence.ConfidenceCalibrator` as its knots for
    :func:`~signal_engine.moe.scores.confidence_map` (the one map the backtest and the combiner both apply)."""
    x, y = calibrator.knots()
    return Calibration(x, y)


def meta_arrays(meta_weights: Any, features: Sequence[str]) -> MetaArrays:
    """A :class:`~signal_engine.moe.meta.MetaWeights` (``MetaModelCombiner.weights_``) with its feature names."""
    coef = np.asarray(meta_weights.coef, dtype=float)
    if coef.shape[1] != len(features):
        raise ValueError(f"the meta-model reads {coef.shape[1]} features but {len(features)} names were given")
    return MetaArrays(tuple(features), np.asarray(meta_weights.mean, dtype=float),
                      np.asarray(meta_weights.scale, dtype=float), coef,
                      np.asarray(meta_weights.intercept, dtype=float),
                      np.asarray(meta_weights.classes, dtype=np.int64))
