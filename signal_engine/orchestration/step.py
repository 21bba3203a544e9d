"""The orchestrator as a step: ``step(state, inputs at bar t) -> (new state, decisions, events)``.

At each bar t, in this order (seed 004; the batch backtest ``orchestrate`` is the fold of this step):

1. Realise: the returns from the previous bar to t's close are booked for the positions held (managed
   book, coordinated book, each model on its own); only now do the performance tracker, the correlation
   analyser and the drawdown defender see them (``realise``; its ``feedback`` is what the models are told).
2. Detect the market regime from the features at t.
3. Reallocate capital between the models when due (bounded, smoothed).
4. Per symbol with a bar at t: read each model's call at t (held for its minimum holding period when the
   holding discipline is on), align (harmony), resolve conflicts, schedule the trades within the bar's budget.
5. Apply the unified risk manager and the no-trade band; the result is the position held from t's close to
   the next bar. It acts after the scheduler, so a risk cut (emergency deleveraging included) is never deferred.

``step`` is pure: it reads the state it is given and one bar's inputs (``BarInputs``: nothing after t's
close), and returns a new state. A symbol without a bar at t keeps its position.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from signal_engine.orchestration.events import OrchestrationEvent
from signal_engine.orchestration.exposure import within_limits
from signal_engine.orchestration.holding import HoldingDiscipline
from signal_engine.orchestration.inputs import Inputs
from signal_engine.orchestration.monitoring import Monitor
from signal_engine.orchestration.performance import PerformanceTracker
from signal_engine.orchestration.regime import REGIME_FEATURES, Regime, book_regime, thin_liquidity
from signal_engine.orchestration.result import RETURN_COLUMNS
from signal_engine.orchestration.risk import RISK_COMPONENTS, RiskDecision, UnifiedRiskManager, book_vol_forecast
from signal_engine.orchestration.scheduler import schedule_trades
from signal_engine.orchestration.state import BookState, BookStateError, HoldingState, resolved_costs
from signal_engine.orchestration.timeframes import TimeframeSpec


class StaleBarError(BookStateError):
    """A bar at or before the latest bar the book has stepped."""


@dataclass(frozen=True)
class BarInputs:
    """What the book sees at one bar's close, and nothing later.

    Parameters
    ----------
    timestamp : pandas.Timestamp
        The bar.
    symbols, models : tuple of str
        The book's symbols and models, in the order of the arrays (must be the state's).
    has_bar : numpy.ndarray
        Per symbol, bool: whether the symbol has a bar (a close, and a decision) at ``timestamp``.
    asset_returns : numpy.ndarray
        Per symbol: the simple return from the symbol's previous close to this one (NaN without a bar).
    features : numpy.ndarray
        symbols x ``REGIME_FEATURES``: the regime features at this bar (NaN where unknown).
    calls : tuple of tuple of TimeframeSignal or None
        ``calls[s][m]``: model m's call on symbol s at this bar (None: no call, or no bar).
    model_state : mapping or None
        What the models carry from bar to bar after this bar (JSON values, e.g. the live book's online learners,
        ``signal_engine.live.online``), opaque to the orchestrator: the step stores it in the new state
        (``BookState.model_state``), so it is committed with the bar. None keeps the state's.
    """

    timestamp: pd.Timestamp
    symbols: tuple[str, ...]
    models: tuple[str, ...]
    has_bar: np.ndarray
    asset_returns: np.ndarray
    features: np.ndarray
    calls: tuple[tuple[TimeframeSignal | None, ...], ...]
    model_state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BarDecisions:
    """What the book decided at one bar (one row of each of ``OrchestrationResult``'s frames).

    ``positions`` per symbol and ``contributions`` (models x symbols) are held from this bar's close to the
    next; ``unmanaged`` is each model's own ask (direction x size); ``allocation`` the capital shares in
    force and ``target`` the optimiser's latest target; ``risk_scales`` per ``RISK_COMPONENTS``;
    ``harmony`` per symbol (0 without a bar); ``returns`` the net returns realised at this bar
    (``RETURN_COLUMNS`` then one per model; 0 at the book's first bar); ``feedback`` what the models are told
    (one per model for every symbol with a realised return; a caller hands each to the models it runs).
    """

    timestamp: pd.Timestamp
    positions: np.ndarray
    contributions: np.ndarray
    unmanaged: np.ndarray
    allocation: np.ndarray
    target: np.ndarray
    risk_scales: np.ndarray
    harmony: np.ndarray
    regime: Regime
    returns: np.ndarray
    feedback: tuple[RealisedFeedback, ...]


@dataclass(frozen=True)
class StepResult:
    """The book after a bar, what it decided, and the events of that bar in the order they happened."""

    state: BookState
    decisions: BarDecisions
    events: tuple[OrchestrationEvent, ...]


def initial_state(
    symbols: Sequence[str],
    models: Sequence[str],
    specs: Sequence[TimeframeSpec],
    config: OrchestrationConfig,
    periods_per_year: float,
    cost_bps: Mapping[str, float] | None = None,
) -> BookState:
    """The book before its first bar: flat, equal capital shares, empty windows and trackers.

    ``specs`` are the models' timeframes (in the order of ``models``); ``cost_bps`` the cost per symbol in
    basis points per unit traded (``config.cost_bps`` for symbols not in it).
    """
    symbols, models, specs = tuple(symbols), tuple(models), tuple(specs)
    if [spec.name for spec in specs] != list(models):
        raise BookStateError(f"book state: specs {[spec.name for spec in specs]} do not match models {list(models)}")
    if not symbols or len(set(symbols)) != len(symbols):
        raise BookStateError(f"book state: expected distinct symbols, got {list(symbols)}")
    m, s = len(models), len(symbols)
    allocator = CapitalAllocator(models, config)
    tracker = PerformanceTracker(models, half_life=config.performance_half_life, periods_per_year=periods_per_year,
                                 regime_prior_bars=config.regime_prior_bars)
    analyser = CorrelationAnalyser(m, s, window=config.correlation_window, threshold=config.correlation_threshold,
                                   floor=config.correlation_floor)
    holding = HoldingDiscipline(np.array([spec.min_holding for spec in specs]), s)
    return BookState(
        symbols=symbols, models=models, specs=specs, config=config, periods_per_year=float(periods_per_year),
        cost_bps=resolved_costs(symbols, config, cost_bps), bar_time=None, bars=0,
        allocation=allocator.allocation.copy(), target=allocator.allocation.copy(), last_update=None, regime=None,
        scheduled=np.zeros((m, s)), final=np.zeros((m, s)), undefended=np.zeros((m, s)), unmanaged=np.zeros((m, s)),
        scores=np.full((m, s), np.nan), pending_models=np.zeros((m, s)), harmony=np.zeros(s), vol=np.full(s, np.nan),
        pending_account=np.zeros(s), pending_undefended=np.zeros(s), pending_coordinated=np.zeros(s),
        tracker=tracker.to_state(), correlation=analyser.to_state(), defender=DrawdownDefender(config).to_state(),
        holding=holding.to_state(), active_limits=(),
    )


def bar_inputs_at(inputs: Inputs, i: int) -> BarInputs:
    """Bar ``i`` of prepared inputs; the models' calls are read at that bar only (for symbols with a bar)."""
    timestamp = inputs.timeline[i]
    bar = inputs.has_bar[i]
    calls = tuple(
        tuple(model.signal(timestamp) if model is not None and bar[s] else None for model in streams)
        for s, streams in enumerate(inputs.streams)
    )
    return BarInputs(timestamp=timestamp, symbols=inputs.symbols, models=inputs.models, has_bar=bar.copy(),
                     asset_returns=inputs.asset_returns[i].copy(), features=inputs.features[i].copy(), calls=calls)


def step(
    state: BookState,
    bar: BarInputs,
    config: OrchestrationConfig,
    periods_per_year: float,
    cost_bps: Mapping[str, float] | None = None,
) -> StepResult:
    """Decide one bar: the new state, the decisions and the events; ``state`` is left as it was.

    ``config``, ``periods_per_year`` and ``cost_bps`` must be those the book was built with
    (``initial_state``); anything else is a ``BookStateError``. A bar at or before ``state.bar_time`` is a
    ``StaleBarError``; inputs for other symbols or models, or a call dated after the bar, a ``BookStateError``.
    ``step(state, bar, ...)`` is ``realise(state, bar.timestamp, bar.asset_returns, ...).decide(bar)``.
    """
    return realise(state, bar.timestamp, bar.asset_returns, config, periods_per_year, cost_bps).decide(bar)


def realise(
    state: BookState,
    timestamp: pd.Timestamp,
    asset_returns: np.ndarray,
    config: OrchestrationConfig,
    periods_per_year: float,
    cost_bps: Mapping[str, float] | None = None,
) -> Realised:
    """The first part of a step: book the returns realised at ``timestamp`` (per symbol, NaN without a bar).

    Its ``feedback`` is what each model is told once the bar's return is realised; a caller that runs
    adaptive models tells them before asking for their calls at the bar, then calls ``decide``.
    """
    state.check_settings(config, periods_per_year, resolved_costs(state.symbols, config, cost_bps))
    when = pd.Timestamp(timestamp)
    if state.bar_time is not None and when <= state.bar_time:
        raise StaleBarError(f"book step: bar {when} is not after the book's latest bar {state.bar_time}; bars are "
                            "stepped once, in time order")
    returns = np.asarray(asset_returns, dtype=float)
    if returns.shape != (len(state.symbols),):
        raise BookStateError(f"book step at {when}: asset_returns has shape {returns.shape}, expected "
                             f"({len(state.symbols)},)")
    work = _Step(state)
    feedback = work.realise(when, returns) if state.bar_time is not None else ()
    return Realised(work, when, returns, feedback)


class Realised:
    """A step after its realisation (``realise``): ``feedback`` for the models, then ``decide`` the bar, once."""

    def __init__(self, work: _Step, timestamp: pd.Timestamp, returns: np.ndarray,
                 feedback: tuple[RealisedFeedback, ...]) -> None:
        self._work: _Step | None = work
        self.timestamp, self._returns, self.feedback = timestamp, returns, feedback

    def decide(self, bar: BarInputs) -> StepResult:
        """Decide the bar with the models' calls at it (``bar`` must be the bar that was realised)."""
        if self._work is None:
            raise BookStateError(f"book step at {self.timestamp}: this bar was already decided")
        work, self._work = self._work, None
        _check_bar(work.state, bar)
        if pd.Timestamp(bar.timestamp) != self.timestamp or not np.array_equal(
                np.asarray(bar.asset_returns, dtype=float), self._returns, equal_nan=True):
            raise BookStateError(f"book step: realised bar {self.timestamp}, but given inputs of bar {bar.timestamp} "
                                 "(or other returns) to decide")
        return work.decide(bar, self.feedback)


def _check_bar(state: BookState, bar: BarInputs) -> None:
    when = pd.Timestamp(bar.timestamp)
    if tuple(bar.symbols) != state.symbols:
        raise BookStateError(f"book step at {when}: inputs for symbols {list(bar.symbols)}, but the book holds "
                             f"{list(state.symbols)}")
    if tuple(bar.models) != state.models:
        raise BookStateError(f"book step at {when}: inputs for models {list(bar.models)}, but the book was built for "
                             f"{list(state.models)}")
    if state.bar_time is not None and when <= state.bar_time:
        raise StaleBarError(f"book step: bar {when} is not after the book's latest bar {state.bar_time}; bars are "
                            "stepped once, in time order")
    s, m = len(state.symbols), len(state.models)
    for name, value, shape in (("has_bar", bar.has_bar, (s,)), ("asset_returns", bar.asset_returns, (s,)),
                               ("features", bar.features, (s, len(REGIME_FEATURES)))):
        if np.shape(value) != shape:
            raise BookStateError(f"book step at {when}: {name} has shape {np.shape(value)}, expected {shape}")
    if len(bar.calls) != s or any(len(row) != m for row in bar.calls):
        raise BookStateError(f"book step at {when}: calls must be {s} symbols x {m} models")
    for j, row in enumerate(bar.calls):
        for k, call in enumerate(row):
            if call is None:
                continue
            if not bar.has_bar[j] or call.symbol != state.symbols[j] or call.model != state.models[k] or (
                    call.timestamp > when):
                where = f"book step at {when}: call for {state.symbols[j]}/{state.models[k]}"
                if not bar.has_bar[j]:
                    raise BookStateError(f"{where} given, but {state.symbols[j]} has no bar then")
                if call.timestamp > when:
                    raise BookStateError(f"{where} is dated {call.timestamp}, after the bar (look-ahead)")
                raise BookStateError(f"{where} is {call.symbol}/{call.model}'s")


class _Step:
    """One bar's work: the components are rebuilt from ``state`` (copying what they hold) and written back to a
    new state; the arrays the step writes in place (or may leave as they are) are copied, the rest are replaced."""

    bar: BarInputs | None = None

    def __init__(self, state: BookState) -> None:
        c = state.config
        self.config = c
        h = state.holding
        self.state = dataclasses.replace(
            state, harmony=state.harmony.copy(), target=state.target.copy(), vol=state.vol.copy(),
            holding=HoldingState(direction=h.direction.copy(), size=h.size.copy(), confidence=h.confidence.copy(),
                                 age=h.age.copy()))
        state = self.state
        self.cost = np.array(state.cost_bps) / 1e4
        self.sleeve = 1.0 / len(state.symbols)
        self.allocator = CapitalAllocator(state.models, c, state.allocation)
        self.tracker = PerformanceTracker.from_state(state.models, state.tracker, half_life=c.performance_half_life,
                                                     periods_per_year=state.periods_per_year,
                                                     regime_prior_bars=c.regime_prior_bars)
        self.analyser = CorrelationAnalyser.from_state(state.correlation, window=c.correlation_window,
                                                       threshold=c.correlation_threshold, floor=c.correlation_floor)
        self.defender = DrawdownDefender.from_state(c, state.defender)
        self.risk = UnifiedRiskManager(c, state.periods_per_year, state.symbols)
        self.monitor = Monitor(c, state.symbols, state.models, state.active_limits)
        min_holding = np.array([spec.min_holding for spec in state.specs])
        self.holding = HoldingDiscipline.from_state(min_holding, state.holding) if c.holding_discipline else None
        self.returns = np.zeros(len(RETURN_COLUMNS) + len(state.models))

    def decide(self, inputs: BarInputs, feedback: tuple[RealisedFeedback, ...]) -> StepResult:
        self.bar = inputs
        st, bar, timestamp = self.state, inputs.has_bar.astype(bool), pd.Timestamp(inputs.timestamp)
        regime = self._detect_regime(timestamp, bar)
        model_corr = self.analyser.model_correlation()
        mean_corr = mean_correlation_with_others(model_corr)
        self._reallocate(timestamp, mean_corr)
        calls = self._read_calls(bar)
        if self.holding is not None:
            own = calls["direction"]
            discipline = self.holding.apply(calls, bar)
            calls = discipline.calls
            self.monitor.held_calls(timestamp, discipline.held, own, calls["direction"])
        scheduled = self._coordinate(timestamp, bar, calls)
        decision, undefended = self._manage_risk(timestamp, bar, calls, scheduled, model_corr, mean_corr)
        final, unmanaged = self._commit(bar, calls, scheduled, decision, undefended)
        st.bar_time, st.bars = timestamp, st.bars + 1
        if inputs.model_state is not None:
            st.model_state = copy.deepcopy(dict(inputs.model_state))
        self._write_back()
        decisions = BarDecisions(
            timestamp=timestamp, positions=final.sum(axis=0), contributions=final.copy(), unmanaged=unmanaged.copy(),
            allocation=st.allocation.copy(), target=st.target.copy(),
            risk_scales=np.array([decision.components[name] for name in RISK_COMPONENTS]),
            harmony=np.where(bar, st.harmony, 0.0), regime=regime, returns=self.returns.copy(), feedback=feedback,
        )
        return StepResult(state=st, decisions=decisions, events=tuple(self.monitor.log))

    # -- the parts of a bar, in order ---------------------------------------------------------------------

    def realise(self, timestamp: pd.Timestamp, realised: np.ndarray) -> tuple[RealisedFeedback, ...]:
        st, cost = self.state, self.cost
        r = np.where(np.isfinite(realised), realised, 0.0)
        account = float(st.final.sum(axis=0) @ r - cost @ st.pending_account)
        undefended = float(st.undefended.sum(axis=0) @ r - cost @ st.pending_undefended)
        coordinated = float(st.scheduled.sum(axis=0) @ r - cost @ st.pending_coordinated)
        models = self.sleeve * (st.unmanaged @ r - st.pending_models @ cost)
        self.defender.update(undefended if self.config.drawdown_basis == "undefended" else account)
        predicted = np.where(np.isfinite(realised)[None, :], st.scores, np.nan)
        self.tracker.update(models, regime=st.regime.key if st.regime else None, predicted=predicted,
                            realised=realised)
        self.analyser.update(models, realised)
        self.returns = np.array([account, undefended, coordinated, float(models.mean()), *models])
        return self._feedback(timestamp, realised)

    def _feedback(self, timestamp: pd.Timestamp, realised: np.ndarray) -> tuple[RealisedFeedback, ...]:
        st = self.state
        sharpe = self.tracker.sharpe()
        told = []
        for s, symbol in enumerate(st.symbols):
            if not np.isfinite(realised[s]):
                continue
            for m, model in enumerate(st.models):
                taken = float(st.final[m, s])
                told.append(RealisedFeedback(
                    timestamp=timestamp, symbol=symbol, model=model, position_taken=taken,
                    standalone_position=float(st.unmanaged[m, s]), realised_return=float(realised[s]),
                    pnl=taken * float(realised[s]), allocation=float(st.allocation[m]),
                    harmony=float(st.harmony[s]), ew_sharpe=float(sharpe[m]),
                ))
        return tuple(told)

    def _detect_regime(self, timestamp: pd.Timestamp, bar: np.ndarray) -> Regime:
        assert self.bar is not None
        regime = book_regime(np.asarray(self.bar.features, dtype=float)[bar][:, :3], self.config)
        self.monitor.regime_change(timestamp, self.state.regime, regime)
        self.state.regime = regime
        return regime

    def _reallocate(self, timestamp: pd.Timestamp, mean_corr: np.ndarray) -> None:
        st = self.state
        seen = self.tracker.observations
        due = seen >= self.config.warmup_bars and (
            st.last_update is None or seen - st.last_update >= self.config.allocation_update_every)
        if not due:
            return
        st.last_update = seen
        regime = st.regime.key if st.regime else None
        scores = allocation_scores(self.tracker.scores(regime), mean_corr, self.config.correlation_penalty)
        update = self.allocator.update(scores)
        st.target = update.target
        self.monitor.allocation(timestamp, update, scores)

    def _read_calls(self, bar: np.ndarray) -> dict[str, np.ndarray]:
        assert self.bar is not None
        m, s = len(self.state.models), len(self.state.symbols)
        calls = {name: np.zeros((m, s)) for name in ("direction", "size", "confidence")}
        calls["vol_forecast"] = np.full((m, s), np.nan)
        calls["score"] = np.full((m, s), np.nan)
        for j in map(int, np.flatnonzero(bar)):
            for k, call in enumerate(self.bar.calls[j]):
                if call is not None:
                    _put(calls, k, j, call)
        return calls

    def _coordinate(self, timestamp: pd.Timestamp, bar: np.ndarray, calls: dict[str, np.ndarray]) -> np.ndarray:
        assert self.bar is not None
        st, c = self.state, self.config
        scheduled = st.scheduled.copy()
        allocation = self.allocator.allocation
        rank = np.array([spec.rank for spec in st.specs])
        expected_holding = np.array([spec.expected_holding for spec in st.specs])
        thin = thin_liquidity(np.asarray(self.bar.features, dtype=float)[:, 2], c)
        for s in map(int, np.flatnonzero(bar)):
            direction, size, confidence = calls["direction"][:, s], calls["size"][:, s], calls["confidence"][:, s]
            alignment = align(direction, confidence, allocation, amplification=c.harmony_amplification)
            st.harmony[s] = alignment.harmony
            wanted = self.sleeve * allocation * direction * size * alignment.multipliers
            resolution = resolve_conflict(wanted, confidence, c.conflict_strategy)
            self.monitor.conflict(timestamp, s, resolution)
            budget = c.max_trade_per_bar * self.sleeve * (c.thin_liquidity_budget if thin[s] else 1.0)
            schedule = schedule_trades(st.scheduled[:, s], resolution.contributions, rank=rank, strength=confidence,
                                       expected_holding=expected_holding, budget=budget)
            self.monitor.deferrals(timestamp, s, schedule, budget)
            scheduled[:, s] = schedule.positions
        return scheduled

    def _manage_risk(
        self,
        timestamp: pd.Timestamp,
        bar: np.ndarray,
        calls: dict[str, np.ndarray],
        scheduled: np.ndarray,
        model_corr: np.ndarray,
        mean_corr: np.ndarray,
    ) -> tuple[RiskDecision, np.ndarray]:
        """The managed contributions, and those the book would hold without the drawdown defender."""
        assert self.bar is not None
        st, c = self.state, self.config
        st.vol = book_vol_forecast(calls["vol_forecast"], np.asarray(self.bar.features, dtype=float)[:, 3], st.vol,
                                   bar)
        corr_scales = correlation_scales(mean_corr, threshold=c.correlation_threshold, floor=c.correlation_floor)
        common = {"correlation_scales": corr_scales, "vol_forecast": st.vol,
                  "asset_correlation": self.analyser.asset_correlation(), "tradable": bar}
        drawdown = self.defender.scale()
        decision = self.risk.apply(scheduled, drawdown_scale=drawdown, held=st.final, **common)
        same_book = drawdown == 1.0 and np.array_equal(st.undefended, st.final)
        undefended = decision.contributions if same_book else self.risk.apply(
            scheduled, drawdown_scale=1.0, held=st.undefended, **common).contributions
        self.monitor.risk(timestamp, decision, drawdown=self.defender.depth, emergency=self.defender.in_emergency,
                          model_correlation=model_corr, mean_correlation=mean_corr)
        return decision, undefended

    def _commit(
        self,
        bar: np.ndarray,
        calls: dict[str, np.ndarray],
        scheduled: np.ndarray,
        decision: RiskDecision,
        undefended: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        st = self.state
        unmanaged = np.where(bar, calls["direction"] * calls["size"], st.unmanaged)
        final = self._banded(decision.contributions, bar, defending=decision.components["drawdown"] < 1.0)
        st.pending_account = np.abs(final.sum(axis=0) - st.final.sum(axis=0))
        st.pending_undefended = np.abs(undefended.sum(axis=0) - st.undefended.sum(axis=0))
        st.pending_coordinated = np.abs(scheduled.sum(axis=0) - st.scheduled.sum(axis=0))
        st.pending_models = np.abs(unmanaged - st.unmanaged)
        st.scores = np.where(bar, calls["score"], st.scores)
        st.scheduled, st.final, st.undefended, st.unmanaged = scheduled, final, undefended, unmanaged
        st.allocation = self.allocator.allocation.copy()
        return final, unmanaged

    def _banded(self, proposed: np.ndarray, bar: np.ndarray, *, defending: bool) -> np.ndarray:
        """The no-trade band: keep a symbol's held legs instead of a small same-side top-up (and, with
        ``no_trade_band_cuts``, a small same-side cut while the drawdown defender is idle), if all limits hold."""
        band = self.config.no_trade_band * self.sleeve
        if band <= 0.0:
            return proposed
        held_legs = self.state.final
        new, held = proposed.sum(axis=0), held_legs.sum(axis=0)
        resize = np.abs(new) > np.abs(held)
        if self.config.no_trade_band_cuts and not defending:
            resize = np.abs(new) != np.abs(held)
        keep = bar & (held != 0.0) & (np.sign(new) == np.sign(held)) & resize & (np.abs(new - held) < band)
        if not keep.any():
            return proposed
        banded = np.where(keep[None, :], held_legs, proposed)
        return banded if within_limits(banded, self.risk.limits) else proposed

    def _write_back(self) -> None:
        st = self.state
        st.tracker = self.tracker.to_state()
        st.correlation = self.analyser.to_state()
        st.defender = self.defender.to_state()
        if self.holding is not None:
            st.holding = self.holding.to_state()
        st.active_limits = self.monitor.active_limits


def _put(calls: dict[str, np.ndarray], m: int, s: int, call: TimeframeSignal) -> None:
    calls["direction"][m, s] = call.direction
    calls["size"][m, s] = call.size
    calls["confidence"][m, s] = call.confidence
    calls["vol_forecast"][m, s] = call.vol_forecast
    calls["score"][m, s] = call.score
