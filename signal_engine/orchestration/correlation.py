"""Correlation analyser of seed 004 section 3: rolling correlation of model returns and of asset returns.

A model whose returns move with the others' adds little diversification; above ``correlation_threshold``
mean correlation it is scaled down, linearly to ``correlation_floor`` at a correlation of 1. The asset
correlation feeds the book's volatility forecast.
"""

from __future__ import annotations

import numpy as np

from signal_engine.errors import SignalEngineError
from signal_engine.orchestration.state import CorrelationState, WindowState


def correlation_matrix(window: np.ndarray, min_periods: int = 3) -> np.ndarray:
    """Pearson correlation of the columns of ``window`` (rows: bars) over pairwise complete rows.

    NaN where a pair has fewer than ``min_periods`` joint rows or a column has no dispersion over them.
    """
    x = np.asarray(window, dtype=float)
    seen = np.isfinite(x).astype(float)
    x0 = np.where(seen > 0, x, 0.0)
    n = seen.T @ seen
    sum_x = x0.T @ seen  # [i, j]: sum of column i over rows where both i and j are known
    sum_xx = (x0**2).T @ seen
    sum_xy = x0.T @ x0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i, mean_j = sum_x / n, sum_x.T / n
        cov = sum_xy / n - mean_i * mean_j
        var_i = sum_xx / n - mean_i**2
        var_j = sum_xx.T / n - mean_j**2
        corr = cov / np.sqrt(var_i * var_j)
    ok = (n >= min_periods) & (var_i > 1e-18) & (var_j > 1e-18)
    return np.where(ok, np.clip(corr, -1.0, 1.0), np.nan)


def mean_correlation_with_others(corr: np.ndarray) -> np.ndarray:
    """Per column: the mean of its known correlations with the other columns (NaN if none)."""
    c = np.array(corr, dtype=float)
    np.fill_diagonal(c, np.nan)
    known = np.isfinite(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known.any(axis=1), np.where(known, c, 0.0).sum(axis=1) / known.sum(axis=1), np.nan)


def correlation_scales(mean_correlation: np.ndarray, *, threshold: float, floor: float) -> np.ndarray:
    """1 up to ``threshold``, then linearly down to ``floor`` at a mean correlation of 1; NaN gives 1."""
    rho = np.nan_to_num(np.asarray(mean_correlation, dtype=float), nan=-1.0)
    excess = np.clip((rho - threshold) / (1.0 - threshold), 0.0, 1.0) if threshold < 1.0 else np.zeros_like(rho)
    return 1.0 - (1.0 - floor) * excess


class RollingWindow:
    """The last ``length`` rows of a stream (their order does not matter to a correlation)."""

    def __init__(self, length: int, width: int) -> None:
        self._rows = np.full((length, width), np.nan)
        self._next = 0
        self._filled = 0

    def append(self, row: np.ndarray) -> None:
        self._rows[self._next] = row
        self._next = (self._next + 1) % len(self._rows)
        self._filled = min(self._filled + 1, len(self._rows))

    def values(self) -> np.ndarray:
        return self._rows[: self._filled]

    def to_state(self) -> WindowState:
        return WindowState(rows=self._rows.copy(), next=self._next, filled=self._filled)

    @classmethod
    def from_state(cls, state: WindowState) -> RollingWindow:
        window = cls(*state.rows.shape)
        window._rows, window._next, window._filled = state.rows.copy(), state.next, state.filled
        return window


class CorrelationAnalyser:
    """Rolling correlations of model returns and of asset returns over the last ``window`` bars.

    Parameters
    ----------
    n_models, n_assets : int
        Widths of the two streams.
    window : int
        Bars in the rolling window; a correlation needs at least half of them (and 3).
    threshold, floor : float
        See ``correlation_scales``.
    """

    def __init__(self, n_models: int, n_assets: int, *, window: int, threshold: float, floor: float) -> None:
        self._models = RollingWindow(window, n_models)
        self._assets = RollingWindow(window, n_assets)
        self._n_assets = n_assets
        self.min_periods = max(3, window // 2)
        self.threshold = threshold
        self.floor = floor

    def to_state(self) -> CorrelationState:
        return CorrelationState(models=self._models.to_state(), assets=self._assets.to_state())

    @classmethod
    def from_state(cls, state: CorrelationState, *, window: int, threshold: float, floor: float) -> CorrelationAnalyser:
        """An analyser that continues from ``state`` (copied); its windows must be ``window`` rows long."""
        for name, part in (("models", state.models), ("assets", state.assets)):
            if part.rows.shape[0] != window:
                raise SignalEngineError(f"correlation.{name}: the state's window holds {part.rows.shape[0]} rows, "
                                        f"the config's correlation_window is {window}")
        analyser = cls(state.models.rows.shape[1], state.assets.rows.shape[1], window=window, threshold=threshold,
                       floor=floor)
        analyser._models = RollingWindow.from_state(state.models)
        analyser._assets = RollingWindow.from_state(state.assets)
        return analyser

    def update(self, model_returns: np.ndarray, asset_returns: np.ndarray) -> None:
        """Add one bar of realised returns (NaN for an asset without a bar)."""
        self._models.append(model_returns)
        self._assets.append(asset_returns)

    def model_correlation(self) -> np.ndarray:
        return correlation_matrix(self._models.values(), self.min_periods)

    def asset_correlation(self, unknown: float = 1.0) -> np.ndarray:
        """Asset correlation; unknown pairs get ``unknown`` (1: as if they moved together, the cautious view)."""
        if self._n_assets == 1:
            return np.ones((1, 1))
        corr = correlation_matrix(self._assets.values(), self.min_periods)
        corr = np.where(np.isfinite(corr), corr, unknown)
        np.fill_diagonal(corr, 1.0)
        return corr

    def mean_model_correlation(self) -> np.ndarray:
        """Per model: its mean correlation with the other models (NaN until known)."""
        return mean_correlation_with_others(self.model_correlation())

    def model_scales(self) -> np.ndarray:
        return correlation_scales(self.mean_model_correlation(), threshold=self.threshold, floor=self.floor)
