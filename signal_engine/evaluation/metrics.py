"""Metrics for every kind of output: trend classes, volatility forecasts, levels, and strategies."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

# periods_per_year is one of these measures; it lives in planning, which the command line imports without the models
from signal_engine.evaluation.planning import periods_per_year as periods_per_year
from signal_engine.experts.volatility import qlike

TREND_LABELS = [0, 1, 2]


def trend_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and log loss of class probabilities (down, neutral, up)."""
    predicted = np.argmax(proba, axis=1)
    clipped = np.clip(proba, 1e-12, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "log_loss": float(log_loss(y_true, clipped, labels=TREND_LABELS)),
        "rows": len(y_true),
    }


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error: sum over confidence bins of |accuracy - confidence| x share.

    Rows are binned by their highest probability into ``n_bins`` equal-width bins of [0, 1]; each bin
    contributes the gap between how often its predicted class was right and its mean confidence,
    weighted by its share of rows (Guo et al. 2017, "On calibration of modern neural networks", ICML).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=float)
    if len(y_true) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = (np.argmax(proba, axis=1) == y_true).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) -
                 np.bincount(bins, weights=confidence, minlength=n_bins))
    return float(gap.sum() / counts.sum())


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Calibration of a binary confidence: ECE, Brier score and the reliability-diagram bins.

    ``bins`` lists, for each of ``n_bins`` equal-width confidence bins that holds rows, the mean
    confidence, the share of rows that were right, and the row count.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if len(confidence) == 0:
        return {"ece": float("nan"), "brier": float("nan"), "hit_rate": float("nan"), "rows": 0, "bins": []}
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=n_bins)
    filled = counts > 0
    return {
        "ece": float(np.abs(correct_sum - confidence_sum).sum() / counts.sum()),
        "brier": float(np.mean((confidence - correct) ** 2)),
        "hit_rate": float(correct.mean()),
        "rows": len(confidence),
        "bins": [
            {"confidence": float(confidence_sum[b] / counts[b]), "hit_rate": float(correct_sum[b] / counts[b]),
             "rows": int(counts[b])}
            for b in np.flatnonzero(filled)
        ],
    }


def volatility_metrics(forecast_variance: np.ndarray, realised_squared: np.ndarray) -> dict[str, float]:
    """QLIKE ``mean(log f + y / f)`` and MSE of variance forecasts against squared next-bar returns."""
    ok = np.isfinite(forecast_variance) & np.isfinite(realised_squared)
    return {
        "qlike": qlike(forecast_variance[ok], realised_squared[ok]),
        "mse": float(np.mean((forecast_variance[ok] - realised_squared[ok]) ** 2)),
        "rows": int(ok.sum()),
    }


def levels_metrics(
    levels: np.ndarray,
    close: np.ndarray,
    future_low: np.ndarray,
    future_high: np.ndarray,
    close_at_horizon: np.ndarray,
) -> dict[str, float]:
    """How well support/resistance describe the next H bars.

    ``*_error``: mean |level - future extreme| / close. ``*_touch_rate``: share of bars whose next H
    bars reach the level. ``*_hold_rate``: among touches, share where the close H bars later is
    still on the right side of the level (price respected it).
    """
    support, resistance = levels[:, 0], levels[:, 1]
    ok = np.isfinite(future_low) & np.isfinite(future_high) & np.isfinite(close_at_horizon)
    support, resistance, close = support[ok], resistance[ok], close[ok]
    low, high, later = future_low[ok], future_high[ok], close_at_horizon[ok]
    touched_support = low <= support
    touched_resistance = high >= resistance
    return {
        "support_error": float(np.mean(np.abs(support - low) / close)),
        "resistance_error": float(np.mean(np.abs(resistance - high) / close)),
        "support_touch_rate": float(np.mean(touched_support)),
        "resistance_touch_rate": float(np.mean(touched_resistance)),
        "support_hold_rate": _share(later[touched_support] >= support[touched_support]),
        "resistance_hold_rate": _share(later[touched_resistance] <= resistance[touched_resistance]),
        "rows": int(ok.sum()),
    }


def level_respect_metrics(
    levels: np.ndarray,
    close: np.ndarray,
    future_low: np.ndarray,
    future_high: np.ndarray,
    close_at_horizon: np.ndarray,
    band: np.ndarray,
) -> dict[str, float]:
    """How often price respects a level within the H bars, unconditionally.

    Support is respected at bar t when the next H bars come within ``band[t]`` (a price distance) of it
    or below it, and the close H bars later is at or above it; resistance mirrors that. Unlike the hold
    rate of :func:`levels_metrics` this counts over all bars, so a level far from the price (never
    approached) does not score.
    """
    support, resistance = levels[:, 0], levels[:, 1]
    ok = (np.isfinite(future_low) & np.isfinite(future_high) & np.isfinite(close_at_horizon) & np.isfinite(band)
          & np.isfinite(support) & np.isfinite(resistance))
    support, resistance, band = support[ok], resistance[ok], band[ok]
    low, high, later = future_low[ok], future_high[ok], close_at_horizon[ok]
    support_respected = (low <= support + band) & (later >= support)
    resistance_respected = (high >= resistance - band) & (later <= resistance)
    return {
        "support_respect_rate": _share(support_respected),
        "resistance_respect_rate": _share(resistance_respected),
        "respect_rate": _share(np.concatenate((support_respected, resistance_respected))),
        "mean_band_width": float(np.mean((resistance - support) / close[ok])) if ok.any() else float("nan"),
    }


def _share(flags: np.ndarray) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")


def trading_costs(position: np.ndarray, cost_bps: float | np.ndarray) -> np.ndarray:
    """Cost per bar as a fraction of capital: ``cost_bps`` basis points of the exposure traded to reach the
    bar's position (the first bar trades from flat). ``position`` is bars, or bars x symbols with one cost
    per symbol, summed over symbols."""
    traded = np.abs(np.diff(np.asarray(position, dtype=float), axis=0, prepend=0.0))
    costs = traded * (np.asarray(cost_bps, dtype=float) / 1e4)
    return costs.sum(axis=1) if costs.ndim == 2 else costs


def strategy_returns(position: np.ndarray, next_return: np.ndarray, cost_bps: float) -> np.ndarray:
    """Net simple return per bar: position held over the next bar, less costs on every change.

    ``position[t]`` is held from bar t's close to bar t+1's close and earns ``next_return[t]``;
    changing it costs ``cost_bps`` basis points of the traded exposure. The first bar trades from flat.
    """
    return position * next_return - trading_costs(position, cost_bps)


def annualised_sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    """``mean / std (ddof 1) x sqrt(periods_per_year)`` of per-bar returns, 0 without dispersion."""
    std = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    return float(np.mean(returns) / std * np.sqrt(periods_per_year)) if std > 0 else 0.0


def strategy_metrics(
    position: np.ndarray, net: np.ndarray, periods_per_year: float, costs: np.ndarray | None = None
) -> dict[str, float]:
    """Annualised Sharpe, CAGR, max drawdown, annual turnover and trade count of a net return series.

    With ``costs`` (per bar, as already taken out of ``net``, e.g. from ``trading_costs``) the metrics also
    attribute the result: ``gross_sharpe`` (before costs) and ``cost_drag`` (costs paid a year, as a
    fraction of capital), which tell a signal that does not work from one that its trading eats.
    """
    equity = np.cumprod(1.0 + net)
    years = len(net) / periods_per_year
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    traded = np.abs(np.diff(position, prepend=0.0))
    direction = np.sign(position)
    metrics = {
        "sharpe": annualised_sharpe(net, periods_per_year),
        "cagr": float(equity[-1] ** (1.0 / years) - 1.0) if years > 0 and equity[-1] > 0 else -1.0,
        "max_drawdown": float(np.min(equity / peak - 1.0)),
        "turnover": float(traded.sum() / years) if years > 0 else 0.0,
        "trades": int(np.count_nonzero(np.diff(direction, prepend=0.0))),
        "total_return": float(equity[-1] - 1.0),
        "exposure": float(np.mean(np.abs(position))),
    }
    if costs is not None:
        costs = np.asarray(costs, dtype=float)
        if costs.shape != np.shape(net):
            raise ValueError(f"costs: {costs.shape[0] if costs.ndim else 0} bars for {len(net)} net returns; "
                             "pass the per-bar costs of the same bars")
        metrics["gross_sharpe"] = annualised_sharpe(net + costs, periods_per_year)
        metrics["cost_drag"] = float(costs.sum() / years) if years > 0 else 0.0
    return metrics
