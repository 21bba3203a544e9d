"""The orchestrator's batch entry point: the fold of ``step`` over the whole timeline (seed 004).

``prepare`` puts the inputs on one timeline; at each bar ``step`` runs in its two parts: ``realise``
books the returns and the models are told what their positions realised, then their calls at that bar are
read (``bar_inputs_at``) and ``decide`` decides the bar (``signal_engine.orchestration.step`` lists what
happens in it). The live book applies the same step to each new bar and persists the state in between, so
backtest and live are one engine.

Nothing at bar t reads anything after t's close; a symbol without a bar at t keeps its position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from signal_engine.orchestration.adapter import RealisedFeedback
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.events import EventLog, OrchestrationEvent
from signal_engine.orchestration.inputs import Inputs, Signals, prepare
from signal_engine.orchestration.performance import PerformanceTracker
from signal_engine.orchestration.result import MODEL_RETURN_PREFIX, RETURN_COLUMNS, OrchestrationResult
from signal_engine.orchestration.risk import RISK_COMPONENTS
from signal_engine.orchestration.state import BookState
from signal_engine.orchestration.step import BarDecisions, bar_inputs_at, initial_state, realise


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
    state = initial_state(inputs.symbols, inputs.models, inputs.specs, config, periods_per_year, cost_bps)
    decided: list[BarDecisions] = []
    log = EventLog()
    last_events: tuple[OrchestrationEvent, ...] = ()
    for i in range(len(inputs.timeline)):
        realised = realise(state, inputs.timeline[i], inputs.asset_returns[i], config, periods_per_year, cost_bps)
        _tell_models(inputs, realised.feedback)
        result = realised.decide(bar_inputs_at(inputs, i))
        state = result.state
        decided.append(result.decisions)
        for event in result.events:
            log.record(event)
        last_events = result.events
    return assemble(inputs, decided, log, state, last_events)


def _tell_models(inputs: Inputs, feedback: tuple[RealisedFeedback, ...]) -> None:
    """Hand each model its realised feedback (a symbol's models only; before their calls at the bar are read)."""
    symbol_at = {symbol: s for s, symbol in enumerate(inputs.symbols)}
    model_at = {model: m for m, model in enumerate(inputs.models)}
    for told in feedback:
        model = inputs.streams[symbol_at[told.symbol]][model_at[told.model]]
        if model is not None:
            model.update_state(told)


def assemble(inputs: Inputs, decided: list[BarDecisions], log: EventLog, state: BookState,
             last_events: tuple[OrchestrationEvent, ...] = ()) -> OrchestrationResult:
    """The result frames of a fold: one row per bar of ``inputs.timeline`` from ``decided``, the events, the
    performance tracker of the final ``state``, that state and the last bar's events."""
    index = inputs.timeline
    symbols, models = list(inputs.symbols), list(inputs.models)
    contributions = np.stack([d.contributions for d in decided])
    unmanaged = np.stack([d.unmanaged for d in decided])

    def frame(values: np.ndarray, columns: list[str]) -> pd.DataFrame:
        return pd.DataFrame(values, index=index, columns=columns)

    c = state.config
    tracker = PerformanceTracker.from_state(state.models, state.tracker, half_life=c.performance_half_life,
                                            periods_per_year=state.periods_per_year,
                                            regime_prior_bars=c.regime_prior_bars)
    regimes = [(d.regime.trend, d.regime.volatility, d.regime.liquidity) for d in decided]
    return OrchestrationResult(
        symbols=inputs.symbols,
        models=inputs.models,
        positions=frame(np.stack([d.positions for d in decided]), symbols),
        bars=frame(inputs.has_bar, symbols),
        contributions={s: frame(contributions[:, :, j], models) for j, s in enumerate(symbols)},
        unmanaged={s: frame(unmanaged[:, :, j], models) for j, s in enumerate(symbols)},
        allocations=frame(np.stack([d.allocation for d in decided]), models),
        target_allocations=frame(np.stack([d.target for d in decided]), models),
        risk_scales=frame(np.stack([d.risk_scales for d in decided]), list(RISK_COMPONENTS)),
        harmony=frame(np.stack([d.harmony for d in decided]), symbols),
        regimes=frame(np.array(regimes, dtype=object), ["trend", "volatility", "liquidity"]),
        returns=frame(np.stack([d.returns for d in decided]),
                      [*RETURN_COLUMNS, *(f"{MODEL_RETURN_PREFIX}{m}" for m in models)]),
        asset_returns=frame(inputs.asset_returns, symbols),
        events=log.to_frame(),
        event_counts=log.counts(),
        performance=tracker.snapshot(),
        final_state=state,
        last_events=last_events,
    )
