"""The MLP gate's forward pass in NumPy: what the serving path runs (no TensorFlow there)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


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
    hidden = np.nan_to_num((np.asarray(X, dtype=float) - weights.mean) / weights.scale)
    for i, (kernel, bias) in enumerate(weights.layers):
        hidden = hidden @ kernel + bias
        if i < len(weights.layers) - 1:
            hidden = np.maximum(hidden, 0.0)
    return hidden


def gate_forward(weights: GateWeights, X: np.ndarray) -> np.ndarray:
    """Gate weights per row: softmax of the logits, sparsified to the top k, summing to 1."""
    return top_k(softmax(gate_logits(weights, X)), weights.k)
