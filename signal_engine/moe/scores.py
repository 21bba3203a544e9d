"""Normalisation of each expert's output to a score in [-1, 1] (seed 000, "Normalization").

Positive scores argue for buying, negative ones for selling. Only ``volatility_score`` needs pandas, and
imports it itself, so the serving path (no pandas) shares ``levels_score`` and ``trend_score``.
"""

from __future__ import annotations

import numpy as np


def trend_score(p_up: np.ndarray, p_down: np.ndarray) -> np.ndarray:
    """``P(up) - P(down)``: +1 for a certain up move, -1 for a certain down move."""
    return np.asarray(p_up - p_down, dtype=float)


def levels_score(close: np.ndarray, support: np.ndarray, resistance: np.ndarray) -> np.ndarray:
    """+1 at support, -1 at resistance, linear in between (0 when the band is empty)."""
    width = resistance - support
    with np.errstate(invalid="ignore", divide="ignore"):
        position = np.where(width > 0, (close - support) / width, 0.5)
    return np.clip(1.0 - 2.0 * position, -1.0, 1.0)


def volatility_score(vol_forecast: np.ndarray, window: int, min_periods: int = 20) -> np.ndarray:
    """``-tanh(z)`` of the log volatility forecast against its own trailing ``window`` forecasts.

    High forecast volatility gives a negative score (seed 000: "volatility: negative if high"). The
    z-score at t uses forecasts up to t only (missing ones skipped); before ``min_periods`` forecasts exist
    the score is 0. A bar whose own forecast is missing (NaN, or not finite) scores NaN: the expert abstains
    there, as in the Signal API's combiner, where a volatility expert without a forecast gives no score.
    """
    import pandas as pd

    forecast = np.asarray(vol_forecast, dtype=float)
    log_vol = pd.Series(np.log(forecast))
    rolling = log_vol.rolling(window, min_periods=min_periods)
    mean, std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > 0, (log_vol.to_numpy() - mean) / std, 0.0)
    score = np.nan_to_num(-np.tanh(z), nan=0.0)
    return np.where(np.isfinite(forecast), score, np.nan)


def weighted_score(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted combiner: ``sum(weight x score)`` per row, clipped to [-1, 1] (the backtest's
    ``WeightedCombiner`` and the Signal API's combiner both call it)."""
    return np.clip((np.asarray(scores, dtype=float) * np.asarray(weights, dtype=float)).sum(axis=1), -1.0, 1.0)


def confidence_map(scores: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Calibrated confidence of combined scores: the piecewise-linear map of |score| through the knots (x, y),
    flat outside them, in [0, 1]; a NaN score counts as 0 (the backtest's ``ConfidenceCalibrator`` and the
    Signal API's combiner both call it, with the knots of the fitted isotonic map)."""
    magnitude = np.nan_to_num(np.abs(np.asarray(scores, dtype=float)), nan=0.0)
    return np.clip(np.interp(magnitude, np.asarray(x, dtype=float), np.asarray(y, dtype=float)), 0.0, 1.0)


def meta_probabilities(features: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                       intercept: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The meta-model combiner's class probabilities (down, neutral, up) per row: standardised inputs (missing at
    the training mean), a multinomial logistic layer over the classes it saw (binary: one logit, split in
    halves), softmax; classes it never saw get 0. The backtest's ``MetaWeights`` and the Signal API's combiner
    both call it."""
    from signal_engine.moe.numpy_gate import softmax
    from signal_engine.moe.standardise import standardise

    z = standardise(features, mean, scale)
    logits = z @ np.asarray(coef, dtype=float).T + intercept
    if logits.shape[1] == 1:
        logits = np.column_stack((-logits[:, 0] / 2, logits[:, 0] / 2))
    proba = np.zeros((len(z), 3))
    proba[:, np.asarray(classes, dtype=np.int64)] = softmax(logits)
    return proba
