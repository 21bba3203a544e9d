"""The walk-forward schedule, anchored at the first bar so later data never moves it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from signal_engine.config import WalkForwardConfig


@dataclass(frozen=True)
class Block:
    """Models fitted at bar ``fit_at``'s close decide bars ``start`` .. ``stop - 1``."""

    fit_at: int
    start: int
    stop: int


def schedule(n_rows: int, config: WalkForwardConfig) -> list[Block]:
    """Refit points initial_window, initial_window + refit_every, ... up to the last bar."""
    return [
        Block(fit_at=start, start=start, stop=min(start + config.refit_every, n_rows))
        for start in range(config.initial_window, n_rows, config.refit_every)
    ]


def known_by(known_at: np.ndarray, fit_at: int, embargo: int = 0) -> np.ndarray:
    """Rows whose label is known at bar ``fit_at``'s close, less an ``embargo`` of extra bars.

    A label decided at bar i and looking H bars ahead is known at bar i + H: rows with
    i + H > fit_at - embargo are purged from training.
    """
    return known_at <= fit_at - embargo
