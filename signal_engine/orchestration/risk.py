"""Unified risk manager of seed 004 section 3: one place that scales every model's positions.

Two stages, each only ever scaling down:

1. Per model, the minimum of the component scales, as in seed 004's ``_adjust_for_risk``: the drawdown
   defender's scale, the volatility target's scale (the whole book's forecast volatility from the
   volatility expert and the rolling asset correlation, against ``target_vol_annual``), the model's
   correlation scale and its timeframe exposure scale.
2. On the netted book, the exposure caps per symbol, per direction, in gross and in net.

Departure from seed 004: the seed takes the minimum over all components per trade. When models hold
opposite legs in one symbol (conflict strategies ``partial`` and ``hedge``), scaling legs by different
factors can raise the symbol's net, so a per-trade minimum cannot guarantee a net, per-symbol or
directional limit. Those caps therefore act on the netted positions after stage 1, with one factor per
symbol, which guarantees every limit whatever the positions proposed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.exposure import BookScales, ExposureLimits, book_scales, timeframe_scales

RISK_COMPONENTS: tuple[str, ...] = ("drawdown", "volatility", "correlation", "timeframe", "exposure", "final")


def portfolio_volatility(positions: np.ndarray, vol_forecast: np.ndarray, correlation: np.ndarray) -> float:
    """``sqrt(p' D C D p)``: the forecast per-bar volatility of the book (an unknown forecast counts as 0)."""
    risk = np.asarray(positions, dtype=float) * np.nan_to_num(np.asarray(vol_forecast, dtype=float), nan=0.0)
    return math.sqrt(max(float(risk @ np.asarray(correlation, dtype=float) @ risk), 0.0))


def volatility_scale(
    positions: np.ndarray, vol_forecast: np.ndarray, correlation: np.ndarray, target_per_bar: float
) -> float:
    """``min(1, target / forecast book volatility)``: never levers up, 1 for a book without risk."""
    sigma = portfolio_volatility(positions, vol_forecast, correlation)
    return min(1.0, target_per_bar / sigma) if sigma > 0 else 1.0


def book_vol_forecast(
    forecasts: np.ndarray, realised: np.ndarray, previous: np.ndarray, tradable: np.ndarray
) -> np.ndarray:
    """Per-bar volatility per symbol from the volatility expert, as the models' median forecast.

    ``forecasts`` is models x symbols (NaN where a model has none). A symbol with a bar but no forecast takes
    its ``realised`` volatility, else its ``previous`` value; a symbol without a bar keeps ``previous``.
    """
    known = np.isfinite(forecasts).sum(axis=0)
    ordered = np.sort(forecasts, axis=0)  # NaN last
    columns = np.arange(forecasts.shape[1])
    middle = 0.5 * (ordered[np.maximum(known - 1, 0) // 2, columns] + ordered[known // 2 - (known == 0), columns])
    median = np.where(known > 0, middle, np.nan)
    fresh = np.where(np.isfinite(median), median, realised)
    return np.where(tradable & np.isfinite(fresh), fresh, previous)


@dataclass(frozen=True)
class RiskDecision:
    """The contributions (models x symbols) after the risk manager, and every scale behind them."""

    contributions: np.ndarray
    model_scale: np.ndarray
    correlation: np.ndarray
    timeframe: np.ndarray
    book: BookScales
    components: dict[str, float]

    @property
    def positions(self) -> np.ndarray:
        return np.asarray(self.contributions.sum(axis=0))


class UnifiedRiskManager:
    """Applies the drawdown, volatility, correlation and exposure limits to proposed contributions.

    Parameters
    ----------
    config : OrchestrationConfig
        Exposure limits and ``target_vol_annual``.
    periods_per_year : float
        To turn the annual volatility target into a per-bar one.
    symbols : sequence of str
        The book's symbols in column order, for their per-symbol short limits (none if not given).
    """

    def __init__(self, config: OrchestrationConfig, periods_per_year: float, symbols: Sequence[str] = ()) -> None:
        self.limits = ExposureLimits.from_config(config, symbols)
        self.target_per_bar = config.target_vol_annual / math.sqrt(periods_per_year)

    def apply(
        self,
        contributions: np.ndarray,
        *,
        drawdown_scale: float,
        correlation_scales: np.ndarray,
        vol_forecast: np.ndarray,
        asset_correlation: np.ndarray,
        tradable: np.ndarray | None = None,
        held: np.ndarray | None = None,
    ) -> RiskDecision:
        """Scale ``contributions`` (models x symbols) so that every limit holds.

        Symbols where ``tradable`` is False keep ``held`` (their current contributions) untouched; the
        limits count them in.
        """
        proposed = np.asarray(contributions, dtype=float)
        tradable = np.ones(proposed.shape[1], dtype=bool) if tradable is None else np.asarray(tradable, dtype=bool)
        held = np.zeros_like(proposed) if held is None else np.asarray(held, dtype=float)
        book_in = np.where(tradable, proposed, held)
        volatility = volatility_scale(book_in.sum(axis=0), vol_forecast, asset_correlation, self.target_per_bar)
        timeframe = timeframe_scales(proposed, self.limits.timeframe, tradable, held)
        correlation = np.asarray(correlation_scales, dtype=float)
        model_scale = np.minimum.reduce([np.full_like(timeframe, min(drawdown_scale, volatility)), correlation,
                                         timeframe])
        scaled = np.where(tradable, proposed * model_scale[:, None], held)
        book = book_scales(scaled.sum(axis=0), self.limits, tradable, held.sum(axis=0))
        final = np.where(tradable, scaled * book.per_symbol[None, :], held)
        components = {
            "drawdown": float(drawdown_scale),
            "volatility": volatility,
            "correlation": float(correlation.min()) if len(correlation) else 1.0,
            "timeframe": float(timeframe.min()) if len(timeframe) else 1.0,
            "exposure": _gross_ratio(final, scaled, tradable),
            "final": _gross_ratio(final, proposed, tradable),
        }
        return RiskDecision(contributions=final, model_scale=model_scale, correlation=correlation,
                            timeframe=timeframe, book=book, components=components)


def _gross_ratio(after: np.ndarray, before: np.ndarray, tradable: np.ndarray) -> float:
    """Sum of |leg| over models and tradable symbols, after over before: in [0, 1] (1 if nothing proposed)."""
    gross_before = float(np.abs(before[:, tradable]).sum())
    gross_after = float(np.abs(after[:, tradable]).sum())
    return gross_after / gross_before if gross_before > 0 else 1.0
