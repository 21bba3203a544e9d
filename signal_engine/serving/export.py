"""Export fitted MoE parts as the plain arrays of a :class:`~signal_engine.serving.bundle.ServingBundle`.

The trainer calls these (they import scikit-learn-based classes only for type checks); the serving path
reads only what they produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from signal_engine.moe.numpy_gate import GateWeights
from signal_engine.serving.bundle import Calibration, MetaArrays


def softmax_gate_weights(gate: Any, experts: Sequence[str]) -> GateWeights:
    """A fitted :class:`~signal_engine.moe.gate.SoftmaxGate` as a one-layer GateWeights, with the gate's own top-k
    (k = number of experts when it routes densely).

    ``softmax(((x - mean_) / scale_) @ coef_ + intercept_)`` is exactly ``gate_forward`` of one layer
    (NaN inputs count as the training mean in both), and both keep the k largest weights, renormalised.
    """
    coef = np.asarray(gate.coef_, dtype=float)
    if coef.shape[1] != len(experts):
        raise ValueError(f"the gate weighs {coef.shape[1]} experts but {len(experts)} names were given: "
                         f"{list(experts)}")
    layer = (coef.copy(), np.asarray(gate.intercept_, dtype=float).copy())
    return GateWeights(np.asarray(gate.mean_, dtype=float).copy(), np.asarray(gate.scale_, dtype=float).copy(),
                       (layer,), _routing_k(gate, len(experts)), tuple(experts))


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


def calibration_knots(calibrator: Any) -> Calibration:
    """A fitted :class:`~signal_engine.moe.confidence.ConfidenceCalibrator` as knots for ``numpy.interp``.

    Isotonic regression with ``out_of_bounds="clip"`` is piecewise linear between its thresholds and flat
    outside them, which is what ``numpy.interp`` does with the same knots; without an isotonic map the
    confidence is the constant hit rate (one knot).
    """
    isotonic = getattr(calibrator, "isotonic_", None)
    if isotonic is None:
        return Calibration(np.array([0.0]), np.array([float(calibrator.hit_rate_)]))
    x = np.asarray(isotonic.X_thresholds_, dtype=float)
    y = np.clip(np.asarray(isotonic.y_thresholds_, dtype=float), 0.0, 1.0)
    return Calibration(x.copy(), y.copy())


def meta_arrays(meta_weights: Any, features: Sequence[str]) -> MetaArrays:
    """A :class:`~signal_engine.moe.meta.MetaWeights` (``MetaModelCombiner.weights_``) with its feature names."""
    coef = np.asarray(meta_weights.coef, dtype=float)
    if coef.shape[1] != len(features):
        raise ValueError(f"the meta-model reads {coef.shape[1]} features but {len(features)} names were given")
    return MetaArrays(tuple(features), np.asarray(meta_weights.mean, dtype=float),
                      np.asarray(meta_weights.scale, dtype=float), coef,
                      np.asarray(meta_weights.intercept, dtype=float),
                      np.asarray(meta_weights.classes, dtype=np.int64))
