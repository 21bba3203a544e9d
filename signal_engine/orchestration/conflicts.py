"""Conflict resolution of seed 004 section 2: what the book holds when models take opposite sides.

Every strategy keeps ``|net after| <= |net before|``: disagreement can only lower the symbol's net
exposure, never raise it.

- ``partial``: both sides keep a partial allocation, every contribution scaled by ``|L - S| / (L + S)``
  (L, S the long and short totals), so the more the sides cancel, the less of either is held.
- ``confidence``: the side with more confidence-weighted exposure wins; it keeps at most the net
  ``|L - S|``, the other side is closed.
- ``hedge``: both legs are held in full; the book's net is their difference (the smaller leg hedges the
  larger), and each model keeps its own leg and P&L attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConflictResolution:
    """The contributions after resolution, and what the conflict was."""

    contributions: np.ndarray
    conflict: bool
    long: float
    short: float
    net_before: float
    net_after: float
    winner: int = 0


def resolve_conflict(contributions: np.ndarray, confidence: np.ndarray, strategy: str) -> ConflictResolution:
    """Resolve opposite contributions (models) on one symbol with ``partial``, ``confidence`` or ``hedge``."""
    c = np.asarray(contributions, dtype=float)
    long, short = float(c[c > 0].sum()), float(-c[c < 0].sum())
    net = long - short
    if long == 0.0 or short == 0.0:
        return ConflictResolution(c, False, long, short, net, net)
    if strategy == "hedge":
        return ConflictResolution(c, True, long, short, net, net)
    if strategy == "partial":
        resolved = c * (abs(net) / (long + short))
        return ConflictResolution(resolved, True, long, short, net, float(resolved.sum()))
    if strategy == "confidence":
        return _confidence_priority(c, np.asarray(confidence, dtype=float), long, short)
    raise ValueError(f"unknown conflict strategy {strategy!r}; expected partial, confidence or hedge")


def _confidence_priority(c: np.ndarray, confidence: np.ndarray, long: float, short: float) -> ConflictResolution:
    weight = np.abs(c) * confidence
    long_weight, short_weight = float(weight[c > 0].sum()), float(weight[c < 0].sum())
    net = long - short
    winner = 1 if long_weight > short_weight else -1 if short_weight > long_weight else (1 if net >= 0 else -1)
    side_total = long if winner == 1 else short
    keep = min(1.0, abs(net) / side_total)
    resolved = np.where(np.sign(c) == winner, c * keep, 0.0)
    return ConflictResolution(resolved, True, long, short, net, float(resolved.sum()), winner)
