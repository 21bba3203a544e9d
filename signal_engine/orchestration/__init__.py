"""Orchestration layer (seed 004): timeframe models that cooperate for capital.

Four MoE models trained on different horizons (scalping, short, medium, long) are combined into one book:
a capital allocation manager (performance tracker, regime detector, bounded and smoothed optimiser), a
position coordination layer (signal alignment, conflict resolution, trade scheduler) and a unified risk
manager (exposure monitor, drawdown defender, correlation analyser, volatility target). ``orchestrate`` is
the batch entry point, the fold of ``signal_engine.orchestration.step.step`` (one bar over a serialisable
``BookState``; not re-exported here, where ``step`` names the module) that the live book
(``signal_engine.orchestration.live``) applies bar by bar; every component is a small pure NumPy/pandas module
usable on its own.
"""

from signal_engine.orchestration.adapter import (
    SIGNAL_FRAME_COLUMNS,
    PrecomputedTimeframeModel,
    RealisedFeedback,
    TimeframeModel,
    TimeframeSignal,
    signal_frame,
)
from signal_engine.orchestration.config import TIMEFRAME_NAMES, OrchestrationConfig
from signal_engine.orchestration.events import EVENT_COLUMNS, EventLog, OrchestrationEvent
from signal_engine.orchestration.result import RETURN_COLUMNS, OrchestrationResult
from signal_engine.orchestration.risk import RISK_COMPONENTS
from signal_engine.orchestration.runner import orchestrate
from signal_engine.orchestration.state import BookState, BookStateError
from signal_engine.orchestration.step import BarInputs, StepResult, bar_inputs_at, initial_state
from signal_engine.orchestration.timeframes import TimeframeSpec, timeframe_run_config, timeframe_specs

__all__ = [
    "EVENT_COLUMNS",
    "RETURN_COLUMNS",
    "RISK_COMPONENTS",
    "SIGNAL_FRAME_COLUMNS",
    "TIMEFRAME_NAMES",
    "BarInputs",
    "BookState",
    "BookStateError",
    "EventLog",
    "OrchestrationConfig",
    "OrchestrationEvent",
    "OrchestrationResult",
    "PrecomputedTimeframeModel",
    "RealisedFeedback",
    "StepResult",
    "TimeframeModel",
    "TimeframeSignal",
    "TimeframeSpec",
    "bar_inputs_at",
    "initial_state",
    "orchestrate",
    "signal_frame",
    "timeframe_run_config",
    "timeframe_specs",
]
