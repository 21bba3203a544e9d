"""Performance tracker of seed 004 section 1: exponentially weighted statistics of each model's returns.

Every statistic is updated only with returns that have been realised (the runner calls ``update`` at the
close of the bar that realised them, before deciding that bar), so what the allocator reads at bar t
depends on returns up to t only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from signal_engine.orchestration.state import MomentsState, TrackerState

SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "ew_sharpe", "win_rate", "profit_factor", "max_drawdown", "drawdown", "predicted_vs_actual", "observations",
)


def half_life_decay(half_life: float) -> float:
    """The per-bar weight decay whose weights halve every ``half_life`` bars."""
    return float(0.5 ** (1.0 / half_life))


class EWMoments:
    """Exponentially weighted sums of weights, values and squares, per model (vectorised over models).

    After values r_1..r_n with decay lambda: ``weight = sum lambda^(n-i)``, ``first = sum lambda^(n-i) r_i``,
    ``second = sum lambda^(n-i) r_i^2``; ``count`` is the plain number of observations.
    """

    def __init__(self, n: int, decay: float) -> None:
        self.decay = decay
        self.weight = np.zeros(n)
        self.first = np.zeros(n)
        self.second = np.zeros(n)
        self.count = np.zeros(n, dtype=np.int64)

    def to_state(self) -> MomentsState:
        return MomentsState(self.weight.copy(), self.first.copy(), self.second.copy(), self.count.copy())

    @classmethod
    def from_state(cls, state: MomentsState, decay: float) -> EWMoments:
        moments = cls(len(state.weight), decay)
        moments.weight, moments.first = state.weight.copy(), state.first.copy()
        moments.second, moments.count = state.second.copy(), state.count.astype(np.int64, copy=True)
        return moments

    def add(self, values: np.ndarray) -> None:
        self.weight = self.decay * self.weight + 1.0
        self.first = self.decay * self.first + values
        self.second = self.decay * self.second + values**2
        self.count += 1

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weight > 0, self.first / self.weight, 0.0)

    def std(self) -> np.ndarray:
        """Weighted population standard deviation ``sqrt(second / weight - mean^2)``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.where(self.weight > 0, self.second / self.weight, 0.0) - self.mean() ** 2
        return np.sqrt(np.clip(raw, 0.0, None))

    def sharpe(self, periods_per_year: float) -> np.ndarray:
        """Annualised ``mean / std``; 0 before two observations or with no dispersion."""
        std = self.std()
        ok = (self.count >= 2) & (std > 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, self.mean() / std * np.sqrt(periods_per_year), 0.0)


class PerformanceTracker:
    """Exponentially weighted Sharpe, win rate, profit factor, drawdown and predicted-vs-actual per model.

    Parameters
    ----------
    models : sequence of str
        Model names, in the order of the arrays passed to ``update``.
    half_life : float
        Half-life of the weights in bars (seed 004: "exponential weighting to favour recent performance").
    periods_per_year : float
        Bars per year, to annualise the Sharpe ratio.
    regime_prior_bars : float
        Shrinkage of regime-specific Sharpe ratios towards the overall one (see ``scores``).

    Notes
    -----
    - Sharpe: weighted mean over weighted population standard deviation, times sqrt(periods_per_year).
    - Win rate: weighted share of winning bars among active bars (return not 0).
    - Profit factor: weighted gains over weighted losses (inf with gains and no losses, NaN with neither).
    - Max drawdown: of the compounded equity over the whole history, as a negative fraction (as in
      ``strategy_metrics``); ``drawdown`` is the current one.
    - Predicted vs actual: weighted correlation between the models' signed scores when a position was
      taken and the symbol returns then realised (an information coefficient), pooled over symbols.
    """

    def __init__(
        self, models: Sequence[str], *, half_life: float, periods_per_year: float, regime_prior_bars: float = 0.0
    ) -> None:
        self.models = tuple(models)
        self.periods_per_year = periods_per_year
        self.regime_prior_bars = regime_prior_bars
        self.decay = half_life_decay(half_life)
        n = len(self.models)
        self._returns = EWMoments(n, self.decay)
        self._by_regime: dict[str, EWMoments] = {}
        self._gains = np.zeros(n)
        self._losses = np.zeros(n)
        self._wins = np.zeros(n)
        self._active = np.zeros(n)
        self._equity = np.ones(n)
        self._peak = np.ones(n)
        self._max_drawdown = np.zeros(n)
        self._ic = np.zeros((6, n))  # weight, sum x, sum y, sum xx, sum yy, sum xy

    def to_state(self) -> TrackerState:
        """Every running sum, copied (the tracker's part of the book state)."""
        return TrackerState(
            returns=self._returns.to_state(),
            by_regime={key: moments.to_state() for key, moments in self._by_regime.items()},
            gains=self._gains.copy(), losses=self._losses.copy(), wins=self._wins.copy(), active=self._active.copy(),
            equity=self._equity.copy(), peak=self._peak.copy(), max_drawdown=self._max_drawdown.copy(),
            ic=self._ic.copy(),
        )

    @classmethod
    def from_state(
        cls, models: Sequence[str], state: TrackerState, *, half_life: float, periods_per_year: float,
        regime_prior_bars: float = 0.0,
    ) -> PerformanceTracker:
        """A tracker that continues from ``state`` (copied)."""
        tracker = cls(models, half_life=half_life, periods_per_year=periods_per_year,
                      regime_prior_bars=regime_prior_bars)
        d = tracker.decay
        tracker._returns = EWMoments.from_state(state.returns, d)
        tracker._by_regime = {key: EWMoments.from_state(m, d) for key, m in state.by_regime.items()}
        tracker._gains, tracker._losses = state.gains.copy(), state.losses.copy()
        tracker._wins, tracker._active = state.wins.copy(), state.active.copy()
        tracker._equity, tracker._peak = state.equity.copy(), state.peak.copy()
        tracker._max_drawdown, tracker._ic = state.max_drawdown.copy(), state.ic.copy()
        return tracker

    @property
    def observations(self) -> int:
        """Bars of realised returns seen so far."""
        return int(self._returns.count[0]) if len(self.models) else 0

    def update(
        self,
        returns: np.ndarray,
        *,
        regime: str | None = None,
        predicted: np.ndarray | None = None,
        realised: np.ndarray | None = None,
    ) -> None:
        """Add one bar of realised net returns (one per model).

        ``regime`` is the market regime in which the positions were taken. ``predicted`` (models x symbols,
        the signed scores behind the positions) and ``realised`` (symbols, the returns then realised) feed
        the predicted-vs-actual statistic; NaN entries are skipped.
        """
        returns = np.asarray(returns, dtype=float)
        d = self.decay
        self._returns.add(returns)
        if regime is not None:
            self._by_regime.setdefault(regime, EWMoments(len(self.models), d)).add(returns)
        self._gains = d * self._gains + np.clip(returns, 0.0, None)
        self._losses = d * self._losses + np.clip(-returns, 0.0, None)
        self._wins = d * self._wins + (returns > 0)
        self._active = d * self._active + (returns != 0)
        self._equity = self._equity * (1.0 + returns)
        self._peak = np.maximum(self._peak, self._equity)
        self._max_drawdown = np.minimum(self._max_drawdown, self._equity / self._peak - 1.0)
        if predicted is not None and realised is not None:
            self._update_ic(np.asarray(predicted, dtype=float), np.asarray(realised, dtype=float))

    def _update_ic(self, predicted: np.ndarray, realised: np.ndarray) -> None:
        y = np.broadcast_to(realised, predicted.shape)
        valid = np.isfinite(predicted) & np.isfinite(y)
        x0, y0 = np.where(valid, predicted, 0.0), np.where(valid, y, 0.0)
        bar = np.stack([valid.sum(axis=1), x0.sum(axis=1), y0.sum(axis=1), (x0 * x0).sum(axis=1),
                        (y0 * y0).sum(axis=1), (x0 * y0).sum(axis=1)])
        self._ic = self.decay * self._ic + bar

    def sharpe(self) -> np.ndarray:
        """Annualised exponentially weighted Sharpe ratio per model."""
        return self._returns.sharpe(self.periods_per_year)

    def win_rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._active > 0, self._wins / self._active, np.nan)

    def profit_factor(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(self._losses > 0, self._gains / self._losses, np.inf)
        return np.where((self._gains > 0) | (self._losses > 0), ratio, np.nan)

    def max_drawdown(self) -> np.ndarray:
        return self._max_drawdown.copy()

    def drawdown(self) -> np.ndarray:
        return self._equity / self._peak - 1.0

    def predicted_vs_actual(self) -> np.ndarray:
        """Weighted correlation of predicted scores with realised returns; NaN where undefined."""
        w, sx, sy, sxx, syy, sxy = self._ic
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sxy / w - sx * sy / w**2
            var_x = sxx / w - (sx / w) ** 2
            var_y = syy / w - (sy / w) ** 2
            corr = cov / np.sqrt(var_x * var_y)
        return np.where((w > 0) & (var_x > 1e-18) & (var_y > 1e-18), np.clip(corr, -1.0, 1.0), np.nan)

    def regime_sharpe(self, regime: str) -> tuple[np.ndarray, np.ndarray]:
        """(Sharpe, observations) of each model over the bars of ``regime`` only."""
        moments = self._by_regime.get(regime)
        if moments is None:
            n = len(self.models)
            return np.zeros(n), np.zeros(n, dtype=np.int64)
        return moments.sharpe(self.periods_per_year), moments.count.copy()

    def scores(self, regime: str | None = None) -> np.ndarray:
        """Each model's strength in the current regime: its regime Sharpe shrunk towards its overall Sharpe.

        With n bars seen in ``regime``, ``score = w x regime_sharpe + (1 - w) x sharpe``, ``w = n / (n +
        regime_prior_bars)`` (seed 004: "map market conditions to historical model performance").
        """
        overall = self.sharpe()
        if regime is None:
            return overall
        in_regime, seen = self.regime_sharpe(regime)
        weight = seen / (seen + self.regime_prior_bars) if self.regime_prior_bars > 0 else (seen > 0).astype(float)
        return weight * in_regime + (1.0 - weight) * overall

    def snapshot(self) -> pd.DataFrame:
        """One row per model with every statistic (``SNAPSHOT_COLUMNS``)."""
        return pd.DataFrame(
            {
                "ew_sharpe": self.sharpe(),
                "win_rate": self.win_rate(),
                "profit_factor": self.profit_factor(),
                "max_drawdown": self.max_drawdown(),
                "drawdown": self.drawdown(),
                "predicted_vs_actual": self.predicted_vs_actual(),
                "observations": self._returns.count.copy(),
            },
            index=pd.Index(self.models, name="model"),
        )
