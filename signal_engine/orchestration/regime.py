"""Market regime detector of seed 004 section 1: trend vs range, volatility regime, liquidity.

Features are rolling statistics of each symbol's closes (and volume when given), each value at bar t
computed from bars up to t only; the book's regime at a bar classifies the mean feature over the symbols
that have that bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from signal_engine.orchestration.config import OrchestrationConfig

REGIME_FEATURES: tuple[str, ...] = ("trend_strength", "vol_ratio", "volume_ratio", "realised_vol")
TrendState = Literal["trend", "range"]
VolatilityState = Literal["low", "medium", "high"]
LiquidityState = Literal["normal", "thin"]


@dataclass(frozen=True)
class Regime:
    """The market environment at a bar.

    ``key`` (trend and volatility) is what model performance is conditioned on; liquidity sets the trade
    scheduler's budget.
    """

    trend: TrendState
    volatility: VolatilityState
    liquidity: LiquidityState

    @property
    def key(self) -> str:
        return f"{self.trend}/{self.volatility}"


def regime_features(close: pd.Series, config: OrchestrationConfig, volume: pd.Series | None = None) -> pd.DataFrame:
    """Point-in-time regime features of one symbol, one row per bar of ``close``.

    - ``trend_strength``: Kaufman's efficiency ratio ``|log P_t - log P_(t-W)| / sum |log-return|`` over
      ``trend_window`` bars, times sqrt(W); about 1 on average for a random walk, higher in a trend.
    - ``vol_ratio``: realised volatility over ``vol_short_window`` bars over that of ``vol_long_window``.
    - ``volume_ratio``: mean volume over ``liquidity_short_window`` bars over its ``liquidity_long_window``
      mean (NaN without volume).
    - ``realised_vol``: the short-window standard deviation of log returns (a per-bar volatility).
    NaN until a window is full.
    """
    log_price = pd.Series(np.log(close.to_numpy(dtype=float)), index=close.index)
    log_return = log_price.diff()
    w = config.trend_window
    path = log_return.abs().rolling(w, min_periods=w).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        trend_strength = log_price.diff(w).abs() / path * math.sqrt(w)
    short = log_return.rolling(config.vol_short_window, min_periods=config.vol_short_window).std()
    long = log_return.rolling(config.vol_long_window, min_periods=config.vol_long_window).std()
    frame = pd.DataFrame(
        {"trend_strength": trend_strength, "vol_ratio": short / long, "volume_ratio": np.nan, "realised_vol": short},
        index=close.index,
    )
    if volume is not None:
        volume = volume.astype(float).reindex(close.index)
        short_volume = volume.rolling(config.liquidity_short_window, min_periods=config.liquidity_short_window).mean()
        long_volume = volume.rolling(config.liquidity_long_window, min_periods=config.liquidity_long_window).mean()
        frame["volume_ratio"] = short_volume / long_volume
    return frame.replace([np.inf, -np.inf], np.nan)


def classify_regime(
    trend_strength: float, vol_ratio: float, volume_ratio: float, config: OrchestrationConfig
) -> Regime:
    """The regime of one set of features; a NaN feature gives ``range``, ``medium`` or ``normal``."""
    trend: TrendState = "trend" if trend_strength > config.trend_threshold else "range"
    volatility: VolatilityState = "medium"
    if vol_ratio < config.vol_low_ratio:
        volatility = "low"
    elif vol_ratio > config.vol_high_ratio:
        volatility = "high"
    liquidity: LiquidityState = "thin" if volume_ratio < config.thin_liquidity_ratio else "normal"
    return Regime(trend=trend, volatility=volatility, liquidity=liquidity)


def book_regime(features: np.ndarray, config: OrchestrationConfig) -> Regime:
    """The regime of the whole book from the features of the symbols with a bar (rows: symbols).

    ``features`` holds the first three ``REGIME_FEATURES`` columns; each is averaged over the symbols where
    it is known.
    """
    means = [_nanmean(features[:, j]) for j in range(3)]
    return classify_regime(means[0], means[1], means[2], config)


def thin_liquidity(volume_ratio: np.ndarray, config: OrchestrationConfig) -> np.ndarray:
    """Per symbol: whether its liquidity is thin (False where unknown)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(volume_ratio, dtype=float) < config.thin_liquidity_ratio


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan
