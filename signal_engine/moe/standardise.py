"""Column standardisation learned on training rows, shared by the gates and the meta-model."""

from __future__ import annotations

import warnings

import numpy as np


def fit_standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale of the finite values; constant or empty columns get mean 0 / scale 1."""
    X = np.asarray(X, dtype=float)
    if len(X) == 0:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(X, axis=0))
        scale = np.nan_to_num(np.nanstd(X, axis=0))
    return mean, np.where(scale > 0, scale, 1.0)


def standardise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(X - mean) / scale`` with missing values at the training mean (0)."""
    return np.nan_to_num((np.asarray(X, dtype=float) - mean) / scale)
