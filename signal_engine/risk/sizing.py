"""Volatility-targeted position sizing."""

from __future__ import annotations

import numpy as np


def volatility_target_position(
    direction: np.ndarray,
    vol_forecast: np.ndarray,
    *,
    target_vol_per_bar: float,
    max_leverage: float = 1.0,
    allow_short: bool = True,
) -> np.ndarray:
    """Exposure = direction x min(max_leverage, target / forecast), clipped to [-1, 1].

    ``direction`` is +1/-1/0 per bar; a bar without a usable forecast gets no exposure; with
    ``allow_short`` false a sell signal means flat.
    """
    direction = np.asarray(direction, dtype=float)
    if not allow_short:
        direction = np.maximum(direction, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.where(vol_forecast > 0, target_vol_per_bar / vol_forecast, 0.0)
    size = np.minimum(np.nan_to_num(size, nan=0.0), max_leverage)
    return np.clip(direction * size, -1.0, 1.0)
