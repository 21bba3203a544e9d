"""The orchestrator's one entry point: walk the timeline bar by bar and manage the book (seed 004).

At each bar t, in this order:

1. Realise: the returns from the previous bar to t's close are booked for the positions held (managed
   book, coordinated book, each model on its own); only now do the performance tracker, the correlation
   analyser, the drawdown defender and the models' ``update_state`` see them.
2. Detect the market regime from features up to t.
3. Reallocate capital between the models when due (bounded, smoothed).
4. Per symbol with a bar at t: read each model's call at t (held for its minimum holding period when the
   holding discipline is on), align (harmony), resolve conflicts, schedule the trades within the bar's budget.
5. Apply the unified risk manager; the result is the position held from t's close to the next bar. It
   acts after the scheduler, so a risk cut (emergency deleveraging included) is never deferred.

Nothing at bar t reads anything after t's close; a symbol without a bar at t keeps its position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from signal_engine.orchestration.adapter import RealisedFeedback, TimeframeSignal
from signal_engine.orchestration.alignment import align
from signal_engine.orchestration.allocation import CapitalAllocator, allocation_scores
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.conflicts import resolve_conflict
from signal_engine.orchestration.correlation import (
    CorrelationAnalyser,
    correlation_scales,
    mean_correlation_with_others,
)
from signal_engine.orchestration.drawdown import DrawdownDefender
from signal_engine.orchestration.exposure import within_limits
from signal_engine.orchestration.holding import HoldingDiscipline
from signal_engine.orchestration.inputs import Inputs, Signals, prepare
from signal_engine.orchestration.monitoring import Monitor
from signal_engine.orchestration.performance import PerformanceTracker
from signal_engine.orchestration.regime import Regime, book_regime, thin_liquidity
from signal_engine.orchestration.result import MODEL_RETURN_PREFIX, RETURN_COLUMNS, OrchestrationResult
from signal_engine.orchestration.risk import RISK_COMPONENTS, RiskDecision, UnifiedRiskManager, book_vol_forecast
from signal_engine.orchestration.scheduler import schedule_trades


def orchestrate(
    signals: Signals,
    closes: Mapping[str, pd.Series],
    config: OrchestrationConfig,
    periods_per_year: float,
    *,
    volumes: Mapping[str, pd.Series] | None = None,
    cost_bps: Mapping[str, float] | None = None,
) -> OrchestrationResult:
    """Combine the timeframe models' walk-forward signals into one managed book.

    Parameters
    ----------
    signals : Mapping[str, Mapping[str, pandas.DataFrame | TimeframeModel]]
        symbol -> timeframe model name -> the model's point-in-time signal stream (a frame with
        ``SIGNAL_FRAME_COLUMNS`` indexed by bar, e.g. from ``signal_frame``), or an object implementing
        ``TimeframeModel``. Frames must be named after a timeframe (``scalping``, ``short``, ``medium``,
        ``long``).
    closes : Mapping[str, pandas.Series]
        symbol -> close prices indexed by bar timestamp (the full history: regime features look back).
    config : OrchestrationConfig
        See ``OrchestrationConfig`` (``OrchestrationConfig.for_periods_per_year`` for non-daily bars).
    periods_per_year : float
        Bars per year, to annualise Sharpe ratios and the volatility target.
    volumes : Mapping[str, pandas.Series], optional
        symbol -> volume, for the liquidity regime (normal liquidity without it).
    cost_bps : Mapping[str, float], optional
        symbol -> cost in basis points per unit of exposure traded; symbols not in it pay
        ``config.cost_bps``.

    Returns
    -------
    OrchestrationResult
        Positions, per-model contributions and unmanaged positions, allocation history, risk scales,
        returns (managed, coordinated, each model, the sum of the parts) and the event log.
    """
    inputs = prepare(signals, closes, config, volumes)
    walk = _Walk(inputs, config, periods_per_year, cost_bps or {})
    for i in range(len(inputs.timeline)):
        walk.step(i)
    return walk.result()


class _Walk:
    """The orchestrator's state as it walks forward; ``step(i)`` decides bar i."""

    def __init__(
        self, inputs: Inputs, config: OrchestrationConfig, periods_per_year: float, cost_bps: Mapping[str, float]
    ) -> None:
        self.inputs, self.config = inputs, config
        self.cost = np.array([cost_bps.get(symbol, config.cost_bps) for symbol in inputs.symbols]) / 1e4
        m, s, t = len(inputs.models), len(inputs.symbols), len(inputs.timeline)
        self.sleeve = 1.0 / s
        self.allocator = CapitalAllocator(inputs.models, config)
        self.tracker = PerformanceTracker(inputs.models, half_life=config.performance_half_life,
                                          periods_per_year=periods_per_year,
                                          regime_prior_bars=config.regime_prior_bars)
        self.analyser = CorrelationAnalyser(m, s, window=config.correlation_window,
                                            threshold=config.correlation_threshold, floor=config.correlation_floor)
        self.defender = DrawdownDefender(config)
        self.risk = UnifiedRiskManager(config, periods_per_year, inputs.symbols)
        self.monitor = Monitor(config, inputs.symbols, inputs.models)
        self.holding = HoldingDiscipline(inputs.min_holding, s) if config.holding_discipline else None
        self.scheduled = np.zeros((m, s))
        self.final = np.zeros((m, s))
        self.undefended = np.zeros((m, s))
        self.unmanaged = np.zeros((m, s))
        self.scores = np.full((m, s), np.nan)
        self.harmony = np.zeros(s)
        self.vol = np.full(s, np.nan)
        self.decided_allocation = self.allocator.allocation.copy()
        self.target = self.allocator.allocation.copy()
        self.regime: Regime | None = None
        self.last_update: int | None = None
        self.pending_account, self.pending_undefended, self.pending_coordinated = np.zeros(s), np.zeros(s), np.zeros(s)
        self.pending_models = np.zeros((m, s))
        self.history = {
            "positions": np.zeros((t, s)), "contributions": np.zeros((t, m, s)), "unmanaged": np.zeros((t, m, s)),
            "allocations": np.zeros((t, m)), "targets": np.zeros((t, m)),
            "scales": np.ones((t, len(RISK_COMPONENTS))), "harmony": np.zeros((t, s)),
            "returns": np.zeros((t, len(RETURN_COLUMNS) + m)),
        }
        self.regimes: list[tuple[str, str, str]] = []
        self.timestamps: list[pd.Timestamp] = list(inputs.timeline)

    # -- one bar ---------------------------------------------------------------------------------------

    def step(self, i: int) -> None:
        timestamp = self.timestamps[i]
        bar = self.inputs.has_bar[i]
        if i > 0:
            self._realise(i, timestamp, bar)
        self._detect_regime(i, timestamp, bar)
        model_corr = self.analyser.model_correlation()
        mean_corr = mean_correlation_with_others(model_corr)
        self._reallocate(timestamp, mean_corr)
        calls = self._read_calls(timestamp, bar)
        if self.holding is not None:
            own = calls["direction"]
            discipline = self.holding.apply(calls, bar)
            calls = discipline.calls
            self.monitor.held_calls(timestamp, discipline.held, own, calls["direction"])
        scheduled = self._coordinate(i, bar, calls)
        decision, undefended = self._manage_risk(i, bar, calls, scheduled, model_corr, mean_corr)
        self._commit(i, bar, calls, scheduled, decision, undefended)

    def _realise(self, i: int, timestamp: pd.Timestamp, bar: np.ndarray) -> None:
        cost = self.cost
        realised = self.inputs.asset_returns[i]
        r = np.where(np.isfinite(realised), realised, 0.0)
        account = float(self.final.sum(axis=0) @ r - cost @ self.pending_account)
        undefended = float(self.undefended.sum(axis=0) @ r - cost @ self.pending_undefended)
        coordinated = float(self.scheduled.sum(axis=0) @ r - cost @ self.pending_coordinated)
        models = self.sleeve * (self.unmanaged @ r - self.pending_models @ cost)
        self.defender.update(undefended if self.config.drawdown_basis == "undefended" else account)
        predicted = np.where(np.isfinite(realised)[None, :], self.scores, np.nan)
        self.tracker.update(models, regime=self.regime.key if self.regime else None, predicted=predicted,
                            realised=realised)
        self.analyser.update(models, realised)
        self.history["returns"][i] = [account, undefended, coordinated, float(models.mean()), *models]
        self._feed_back(timestamp, realised)

    def _feed_back(self, timestamp: pd.Timestamp, realised: np.ndarray) -> None:
        sharpe = self.tracker.sharpe()
        for s, symbol in enumerate(self.inputs.symbols):
            if not np.isfinite(realised[s]):
                continue
            for m, model in enumerate(self.inputs.streams[s]):
                if model is None:
                    continue
                taken = float(self.final[m, s])
                model.update_state(RealisedFeedback(
                    timestamp=timestamp, symbol=symbol, model=self.inputs.models[m], position_taken=taken,
                    standalone_position=float(self.unmanaged[m, s]), realised_return=float(realised[s]),
                    pnl=taken * float(realised[s]), allocation=float(self.decided_allocation[m]),
                    harmony=float(self.harmony[s]), ew_sharpe=float(sharpe[m]),
                ))

    def _detect_regime(self, i: int, timestamp: pd.Timestamp, bar: np.ndarray) -> None:
        regime = book_regime(self.inputs.features[i][bar][:, :3], self.config)
        self.monitor.regime_change(timestamp, self.regime, regime)
        self.regime = regime
        self.regimes.append((regime.trend, regime.volatility, regime.liquidity))

    def _reallocate(self, timestamp: pd.Timestamp, mean_corr: np.ndarray) -> None:
        seen = self.tracker.observations
        due = seen >= self.config.warmup_bars and (
            self.last_update is None or seen - self.last_update >= self.config.allocation_update_every)
        if not due:
            return
        self.last_update = seen
        regime = self.regime.key if self.regime else None
        scores = allocation_scores(self.tracker.scores(regime), mean_corr, self.config.correlation_penalty)
        update = self.allocator.update(scores)
        self.target = update.target
        self.monitor.allocation(timestamp, update, scores)

    def _read_calls(self, timestamp: pd.Timestamp, bar: np.ndarray) -> dict[str, np.ndarray]:
        m, s = len(self.inputs.models), len(self.inputs.symbols)
        calls = {name: np.zeros((m, s)) for name in ("direction", "size", "confidence")}
        calls["vol_forecast"] = np.full((m, s), np.nan)
        calls["score"] = np.full((m, s), np.nan)
        for j in map(int, np.flatnonzero(bar)):
            for k, model in enumerate(self.inputs.streams[j]):
                call = model.signal(timestamp) if model is not None else None
                if call is not None:
                    _put(calls, k, j, call)
        return calls

    def _coordinate(self, i: int, bar: np.ndarray, calls: dict[str, np.ndarray]) -> np.ndarray:
        timestamp = self.timestamps[i]
        scheduled = self.scheduled.copy()
        allocation = self.allocator.allocation
        thin = thin_liquidity(self.inputs.features[i, :, 2], self.config)
        for s in map(int, np.flatnonzero(bar)):
            direction, size, confidence = calls["direction"][:, s], calls["size"][:, s], calls["confidence"][:, s]
            alignment = align(direction, confidence, allocation, amplification=self.config.harmony_amplification)
            self.harmony[s] = alignment.harmony
            wanted = self.sleeve * allocation * direction * size * alignment.multipliers
            resolution = resolve_conflict(wanted, confidence, self.config.conflict_strategy)
            self.monitor.conflict(timestamp, s, resolution)
            budget = self.config.max_trade_per_bar * self.sleeve * (
                self.config.thin_liquidity_budget if thin[s] else 1.0)
            schedule = schedule_trades(self.scheduled[:, s], resolution.contributions, rank=self.inputs.rank,
                                       strength=confidence, expected_holding=self.inputs.expected_holding,
                                       budget=budget)
            self.monitor.deferrals(timestamp, s, schedule, budget)
            scheduled[:, s] = schedule.positions
        return scheduled

    def _manage_risk(
        self,
        i: int,
        bar: np.ndarray,
        calls: dict[str, np.ndarray],
        scheduled: np.ndarray,
        model_corr: np.ndarray,
        mean_corr: np.ndarray,
    ) -> tuple[RiskDecision, np.ndarray]:
        """The managed contributions, and those the book would hold without the drawdown defender."""
        timestamp = self.timestamps[i]
        self.vol = book_vol_forecast(calls["vol_forecast"], self.inputs.features[i, :, 3], self.vol, bar)
        c = self.config
        corr_scales = correlation_scales(mean_corr, threshold=c.correlation_threshold, floor=c.correlation_floor)
        common = {"correlation_scales": corr_scales, "vol_forecast": self.vol,
                  "asset_correlation": self.analyser.asset_correlation(), "tradable": bar}
        drawdown = self.defender.scale()
        decision = self.risk.apply(scheduled, drawdown_scale=drawdown, held=self.final, **common)
        same_book = drawdown == 1.0 and np.array_equal(self.undefended, self.final)
        undefended = decision.contributions if same_book else self.risk.apply(
            scheduled, drawdown_scale=1.0, held=self.undefended, **common).contributions
        self.monitor.risk(timestamp, decision, drawdown=self.defender.depth, emergency=self.defender.in_emergency,
                          model_correlation=model_corr, mean_correlation=mean_corr)
        return decision, undefended

    def _commit(
        self,
        i: int,
        bar: np.ndarray,
        calls: dict[str, np.ndarray],
        scheduled: np.ndarray,
        decision: RiskDecision,
        undefended: np.ndarray,
    ) -> None:
        unmanaged = np.where(bar, calls["direction"] * calls["size"], self.unmanaged)
        final = self._banded(decision.contributions, bar, defending=decision.components["drawdown"] < 1.0)
        self.pending_account = np.abs(final.sum(axis=0) - self.final.sum(axis=0))
        self.pending_undefended = np.abs(undefended.sum(axis=0) - self.undefended.sum(axis=0))
        self.pending_coordinated = np.abs(scheduled.sum(axis=0) - self.scheduled.sum(axis=0))
        self.pending_models = np.abs(unmanaged - self.unmanaged)
        self.scores = np.where(bar, calls["score"], self.scores)
        self.scheduled, self.final, self.undefended, self.unmanaged = scheduled, final, undefended, unmanaged
        self.decided_allocation = self.allocator.allocation.copy()
        h = self.history
        h["positions"][i] = final.sum(axis=0)
        h["contributions"][i] = final
        h["unmanaged"][i] = unmanaged
        h["allocations"][i] = self.decided_allocation
        h["targets"][i] = self.target
        h["scales"][i] = [decision.components[name] for name in RISK_COMPONENTS]
        h["harmony"][i] = np.where(bar, self.harmony, 0.0)

    def _banded(self, proposed: np.ndarray, bar: np.ndarray, *, defending: bool) -> np.ndarray:
        """The no-trade band: keep a symbol's held legs instead of a small same-side top-up (and, with
        ``no_trade_band_cuts``, a small same-side cut while the drawdown defender is idle), if all limits hold."""
        band = self.config.no_trade_band * self.sleeve
        if band <= 0.0:
            return proposed
        new, held = proposed.sum(axis=0), self.final.sum(axis=0)
        resize = np.abs(new) > np.abs(held)
        if self.config.no_trade_band_cuts and not defending:
            resize = np.abs(new) != np.abs(held)
        keep = bar & (held != 0.0) & (np.sign(new) == np.sign(held)) & resize & (np.abs(new - held) < band)
        if not keep.any():
            return proposed
        banded = np.where(keep[None, :], self.final, proposed)
        return banded if within_limits(banded, self.risk.limits) else proposed

    # -- result ----------------------------------------------------------------------------------------

    def result(self) -> OrchestrationResult:
        inputs, h = self.inputs, self.history
        index = inputs.timeline
        symbols, models = list(inputs.symbols), list(inputs.models)

        def frame(values: np.ndarray, columns: list[str]) -> pd.DataFrame:
            return pd.DataFrame(values, index=index, columns=columns)

        return OrchestrationResult(
            symbols=inputs.symbols,
            models=inputs.models,
            positions=frame(h["positions"], symbols),
            bars=frame(inputs.has_bar, symbols),
            contributions={s: frame(h["contributions"][:, :, j], models) for j, s in enumerate(symbols)},
            unmanaged={s: frame(h["unmanaged"][:, :, j], models) for j, s in enumerate(symbols)},
            allocations=frame(h["allocations"], models),
            target_allocations=frame(h["targets"], models),
            risk_scales=frame(h["scales"], list(RISK_COMPONENTS)),
            harmony=frame(h["harmony"], symbols),
            regimes=frame(np.array(self.regimes, dtype=object), ["trend", "volatility", "liquidity"]),
            returns=frame(h["returns"], [*RETURN_COLUMNS, *(f"{MODEL_RETURN_PREFIX}{m}" for m in models)]),
            asset_returns=frame(inputs.asset_returns, symbols),
            events=self.monitor.log.to_frame(),
            event_counts=self.monitor.log.counts(),
            performance=self.tracker.snapshot(),
        )


def _put(calls: dict[str, np.ndarray], m: int, s: int, call: TimeframeSignal) -> None:
    calls["direction"][m, s] = call.direction
    calls["size"][m, s] = call.size
    calls["confidence"][m, s] = call.confidence
    calls["vol_forecast"][m, s] = call.vol_forecast
    calls["score"][m, s] = call.score

