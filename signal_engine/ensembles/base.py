"""Shared plumbing: member predictions as a stacked array with a fixed member order."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from signal_engine.errors import SignalEngineError

Predictions = Mapping[str, np.ndarray]


def stack(predictions: Predictions, members: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """Members in order and their predictions stacked on axis 0: (M, n) or (M, n, K).

    With ``members`` (the order learned in ``fit``), the mapping must hold exactly those models.
    """
    if not predictions:
        raise SignalEngineError("an ensemble needs at least one member's predictions")
    names = tuple(predictions) if members is None else members
    missing = set(names) - set(predictions)
    extra = set(predictions) - set(names)
    if missing or extra:
        raise SignalEngineError(
            f"ensemble members differ from those it was fitted on: missing {sorted(missing)}, unknown {sorted(extra)}"
        )
    arrays = [np.asarray(predictions[name], dtype=float) for name in names]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise SignalEngineError(f"ensemble members' predictions differ in shape: {sorted(shapes)}")
    return names, np.stack(arrays)


def normalise(weights: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 (uniform when they sum to 0)."""
    weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))
