"""What the orchestrator records as events at each bar (seed 004 section 6: conflicts, risk-limit
activations, allocation history), kept apart from the decisions themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from signal_engine.orchestration.allocation import AllocationUpdate
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.conflicts import ConflictResolution
from signal_engine.orchestration.events import EventLog, LimitWatch, OrchestrationEvent
from signal_engine.orchestration.regime import Regime
from signal_engine.orchestration.risk import RiskDecision
from signal_engine.orchestration.scheduler import Schedule


class Monitor:
    """Writes the events of one run into ``log``.

    Parameters
    ----------
    config : OrchestrationConfig
        The limits that events are compared with.
    symbols, models : sequence of str
        Names, in the order of the arrays passed in.
    active_limits : iterable of (component, rule, symbol, model)
        The limits already binding (from a book state); none by default.
    """

    def __init__(self, config: OrchestrationConfig, symbols: Sequence[str], models: Sequence[str],
                 active_limits: Iterable[tuple[str, str, str, str]] = ()) -> None:
        self.config = config
        self.symbols = tuple(symbols)
        self.models = tuple(models)
        self._short_limits = tuple(config.asset_short_limit(symbol) for symbol in self.symbols)
        self.log = EventLog()
        self._watch = LimitWatch(self.log, active_limits)

    @property
    def active_limits(self) -> tuple[tuple[str, str, str, str], ...]:
        """The limits binding now (a book state carries them, so a release is recorded after a restart)."""
        return self._watch.active

    def regime_change(self, timestamp: pd.Timestamp, before: Regime | None, after: Regime) -> None:
        if before is None or before == after:
            return
        self.log.record(OrchestrationEvent(
            timestamp=timestamp, component="regime", kind="regime_change", rule=after.key,
            detail={"from": f"{before.key}/{before.liquidity}", "to": f"{after.key}/{after.liquidity}"},
        ))

    def allocation(self, timestamp: pd.Timestamp, update: AllocationUpdate, scores: np.ndarray) -> None:
        """One event per model whose share changed."""
        for m in np.flatnonzero(np.abs(update.allocation - update.previous) > 1e-12):
            self.log.record(OrchestrationEvent(
                timestamp=timestamp, component="allocation", kind="allocation_change", rule="optimiser",
                model=self.models[m], value=float(update.allocation[m]), threshold=self.config.max_allocation_change,
                detail={"previous": float(update.previous[m]), "target": float(update.target[m]),
                        "score": float(scores[m])},
            ))

    def held_calls(self, timestamp: pd.Timestamp, held: np.ndarray, own: np.ndarray, kept: np.ndarray) -> None:
        """One event per model and symbol whose exit or reversal the holding discipline overruled."""
        for m, s in zip(*np.nonzero(held), strict=True):
            self.log.record(OrchestrationEvent(
                timestamp=timestamp, component="holding", kind="call_held", rule="min_holding",
                symbol=self.symbols[s], model=self.models[m], value=float(kept[m, s]), threshold=float(own[m, s]),
                detail={"own_direction": float(own[m, s]), "held_direction": float(kept[m, s])},
            ))

    def conflict(self, timestamp: pd.Timestamp, s: int, resolution: ConflictResolution) -> None:
        if not resolution.conflict:
            return
        self.log.record(OrchestrationEvent(
            timestamp=timestamp, component="conflicts", kind="conflict", rule=self.config.conflict_strategy,
            symbol=self.symbols[s], value=abs(resolution.net_after), threshold=abs(resolution.net_before),
            detail={"long": resolution.long, "short": resolution.short, "net_before": resolution.net_before,
                    "net_after": resolution.net_after, "winner": float(resolution.winner)},
        ))

    def deferrals(self, timestamp: pd.Timestamp, s: int, schedule: Schedule, budget: float) -> None:
        """One event per model whose trade did not fit in the bar's budget."""
        for m in np.flatnonzero(np.abs(schedule.deferred) > 1e-12):
            self.log.record(OrchestrationEvent(
                timestamp=timestamp, component="scheduler", kind="schedule_deferral", rule="budget",
                symbol=self.symbols[s], model=self.models[m], value=float(schedule.filled[m]), threshold=budget,
                detail={"requested": float(schedule.requested[m]), "deferred": float(schedule.deferred[m])},
            ))

    def risk(
        self,
        timestamp: pd.Timestamp,
        decision: RiskDecision,
        *,
        drawdown: float,
        emergency: bool,
        model_correlation: np.ndarray,
        mean_correlation: np.ndarray,
    ) -> None:
        """Activations and releases of every risk limit (transitions only)."""
        self._drawdown(timestamp, decision.components["drawdown"], drawdown, emergency)
        self._correlation(timestamp, decision, model_correlation, mean_correlation)
        self._exposure(timestamp, decision)
        self._watch.observe(timestamp, "volatility", "volatility", binding=decision.components["volatility"] < 1.0,
                            value=decision.components["volatility"], threshold=self.config.target_vol_annual)

    def _drawdown(self, timestamp: pd.Timestamp, scale: float, depth: float, emergency: bool) -> None:
        c = self.config
        self._watch.observe(timestamp, "drawdown", "drawdown", binding=scale < 1.0, value=scale,
                            threshold=c.drawdown_start, detail={"drawdown": depth})
        self._watch.observe(timestamp, "drawdown", "emergency", binding=emergency, value=depth,
                            threshold=c.emergency_drawdown, kinds=("emergency_deleveraging", "emergency_released"))

    def _correlation(
        self, timestamp: pd.Timestamp, decision: RiskDecision, model_correlation: np.ndarray, mean: np.ndarray
    ) -> None:
        threshold = self.config.correlation_threshold
        pairwise = model_correlation[~np.eye(len(model_correlation), dtype=bool)]
        average = float(np.nanmean(pairwise)) if np.isfinite(pairwise).any() else float("nan")
        self._watch.observe(timestamp, "correlation", "mean_correlation", binding=average > threshold,
                            value=average, threshold=threshold, kinds=("correlation_warning", "correlation_normal"))
        for m, model in enumerate(self.models):
            self._watch.observe(timestamp, "correlation", "correlation", model=model,
                                binding=decision.correlation[m] < 1.0, value=float(decision.correlation[m]),
                                threshold=threshold, detail={"mean_correlation": float(mean[m])})

    def _exposure(self, timestamp: pd.Timestamp, decision: RiskDecision) -> None:
        c, book = self.config, decision.book
        for m, model in enumerate(self.models):
            self._watch.observe(timestamp, "exposure", "timeframe", model=model, binding=decision.timeframe[m] < 1.0,
                                value=float(decision.timeframe[m]), threshold=c.max_timeframe_exposure)
        book_limits = {"long": c.max_long_exposure, "short": c.max_short_exposure, "gross": c.max_gross_exposure,
                       "net": c.max_net_exposure}
        for rule, limit in book_limits.items():
            value = book.net if rule == "net" else float(book.asset.min())
            self._watch.observe(timestamp, "exposure", rule, binding=book.binding[rule], value=value, threshold=limit)
        for s, symbol in enumerate(self.symbols):  # a symbol's own short limit binds as "asset_short"
            capped, scale = bool(book.asset_cap[s] < 1.0), float(book.asset_cap[s])
            own_short = bool(book.asset_limit[s] < c.max_asset_exposure)
            self._watch.observe(timestamp, "exposure", "asset", symbol=symbol, binding=capped and not own_short,
                                value=scale, threshold=c.max_asset_exposure)
            self._watch.observe(timestamp, "exposure", "asset_short", symbol=symbol, binding=capped and own_short,
                                value=scale, threshold=self._short_limits[s])
