"""Matplotlib figures of one symbol's backtest, returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_STYLES: dict[str, dict[str, Any]] = {
    "moe": {"color": "#1f4e9c", "linewidth": 2.0},
    "baseline_buy_and_hold": {"color": "#444444", "linewidth": 1.4},
}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def equity_curves(returns: pd.DataFrame, title: str) -> bytes:
    """Growth of 1 for each strategy, log scale, the MoE and buy & hold drawn heavier."""
    figure, axis = plt.subplots(figsize=(10, 4.2))
    for name in returns.columns:
        style = _STYLES.get(name, {"linewidth": 0.9, "alpha": 0.8})
        axis.plot(returns.index, (1.0 + returns[name]).cumprod(), label=name, **style)
    axis.set_yscale("log")
    axis.set_title(f"{title}: equity, net of costs (log scale)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2, loc="upper left")
    return _png(figure)


def drawdowns(returns: pd.DataFrame, names: tuple[str, ...], title: str) -> bytes:
    """Drawdown from the running peak for the named strategies."""
    figure, axis = plt.subplots(figsize=(10, 2.8))
    for name in names:
        equity = (1.0 + returns[name]).cumprod()
        axis.fill_between(returns.index, equity / equity.cummax() - 1.0, 0.0, alpha=0.35, label=name)
    axis.set_title(f"{title}: drawdown")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    return _png(figure)


def gate_weights(signals: pd.DataFrame, title: str) -> bytes:
    """Stacked gate weights over the test span."""
    columns = [c for c in signals.columns if c.startswith("gate_")]
    index = pd.to_datetime(signals["timestamp"])
    figure, axis = plt.subplots(figsize=(10, 2.8))
    axis.stackplot(index, *(signals[c].to_numpy() for c in columns), labels=[c[5:] for c in columns], alpha=0.85)
    axis.set_ylim(0, 1)
    axis.set_title(f"{title}: gate weights")
    axis.legend(fontsize=8, loc="upper left", ncol=len(columns))
    return _png(figure)


def volatility(signals: pd.DataFrame, realised: pd.Series, title: str, window: int = 20) -> bytes:
    """Forecast volatility against the realised next-bar move (rolling RMS over ``window`` bars)."""
    index = pd.to_datetime(signals["timestamp"])
    squared = pd.Series(realised.to_numpy() ** 2)
    smoothed = np.sqrt(squared.rolling(window, min_periods=1).mean().to_numpy())
    figure, axis = plt.subplots(figsize=(10, 2.8))
    axis.plot(index, smoothed, color="#999999", linewidth=0.9, label=f"realised ({window}-bar RMS)")
    axis.plot(index, signals["vol_forecast"].to_numpy(), color="#c0392b", linewidth=1.1, label="forecast")
    axis.set_title(f"{title}: next-bar volatility, forecast vs realised")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    return _png(figure)


def reliability(bins: list[dict[str, float]], title: str) -> bytes:
    """Reliability diagram of the signal confidence: hit rate against mean confidence per bin."""
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle="--", label="perfect calibration")
    if bins:
        confidence = [b["confidence"] for b in bins]
        hit_rate = [b["hit_rate"] for b in bins]
        sizes = [20 + 180 * b["rows"] / max(x["rows"] for x in bins) for b in bins]
        axis.plot(confidence, hit_rate, color="#1f4e9c", linewidth=1.2)
        axis.scatter(confidence, hit_rate, s=sizes, color="#1f4e9c", alpha=0.7, label="MoE confidence (size: rows)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("share of signals whose H-bar move went their way")
    axis.set_title(f"{title}: reliability")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")
    return _png(figure)
