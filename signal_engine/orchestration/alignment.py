"""Signal alignment of seed 004 section 2: a harmony score per symbol, and larger positions when aligned."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """How the models' calls on one symbol line up at one bar.

    Parameters
    ----------
    harmony : float
        In [0, 1]: 1 when every model with a view agrees, 0 when their weighted views cancel out.
    consensus : int
        The sign of the allocation- and confidence-weighted vote (0 when it cancels or no model has a view).
    agreeing : numpy.ndarray
        Per model: whether it is on the consensus side.
    multipliers : numpy.ndarray
        Per model: the factor its position is scaled by (1 for models not on the consensus side).
    """

    harmony: float
    consensus: int
    agreeing: np.ndarray
    multipliers: np.ndarray


def harmony_score(direction: np.ndarray, confidence: np.ndarray, allocation: np.ndarray) -> float:
    """``|sum a c d| / sum a c |d|`` over the models (a allocation, c confidence, d direction); 0 if no view.

    Flat models (d = 0) neither agree nor disagree, so they do not lower the score.
    """
    weight = np.asarray(allocation, dtype=float) * np.asarray(confidence, dtype=float)
    direction = np.asarray(direction, dtype=float)
    total = float(np.sum(weight * np.abs(direction)))
    return float(abs(np.sum(weight * direction)) / total) if total > 0 else 0.0


def align(
    direction: np.ndarray, confidence: np.ndarray, allocation: np.ndarray, *, amplification: float
) -> Alignment:
    """Harmony of the calls, and ``1 + amplification x harmony x breadth`` for models on the consensus side.

    ``breadth = (agreeing models - 1) / (models - 1)``: a lone model is not amplified, a consensus of every
    model is amplified most (seed 004: "amplifies position sizes when signals align across timeframes").
    """
    direction = np.asarray(direction, dtype=float)
    weight = np.asarray(allocation, dtype=float) * np.asarray(confidence, dtype=float)
    consensus = int(np.sign(np.sum(weight * direction)))
    harmony = harmony_score(direction, confidence, allocation)
    agreeing = (direction == consensus) & (consensus != 0)
    n = len(direction)
    breadth = (int(agreeing.sum()) - 1) / (n - 1) if n > 1 and agreeing.any() else 0.0
    multipliers = np.where(agreeing, 1.0 + amplification * harmony * breadth, 1.0)
    return Alignment(harmony=harmony, consensus=consensus, agreeing=agreeing, multipliers=multipliers)
