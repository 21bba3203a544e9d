"""The four timeframe models (seed 004): one MoE each, trained on labels of its own horizon."""

from __future__ import annotations

from dataclasses import dataclass, replace

from signal_engine.config import RunConfig
from signal_engine.errors import ConfigError
from signal_engine.orchestration.config import TIMEFRAME_NAMES, OrchestrationConfig


@dataclass(frozen=True)
class TimeframeSpec:
    """What a timeframe model is: its name, priority rank (0 = shortest) and holding periods in bars.

    Parameters
    ----------
    name : str
        ``scalping``, ``short``, ``medium`` or ``long`` (or any name for a custom model).
    rank : int
        Execution priority of the trade scheduler: shorter timeframes first (seed 004 section 2).
    horizon : int
        Label horizon of the model's trend expert, in bars.
    min_holding, expected_holding, max_holding : int
        Holding periods in bars, from the horizon as in the seed 004 section 4 adapter table: expected =
        horizon, min = horizon // 4 (at least 1), max = 4 x horizon.
    """

    name: str
    rank: int
    horizon: int
    min_holding: int
    expected_holding: int
    max_holding: int

    @classmethod
    def from_horizon(cls, name: str, rank: int, horizon: int) -> TimeframeSpec:
        """The spec of a model trained on ``horizon``-bar labels."""
        if horizon < 1:
            raise ConfigError(f"timeframe '{name}': horizon must be at least 1 bar, got {horizon}")
        return cls(name=name, rank=rank, horizon=horizon, min_holding=max(1, horizon // 4),
                   expected_holding=horizon, max_holding=4 * horizon)


def timeframe_specs(config: OrchestrationConfig) -> dict[str, TimeframeSpec]:
    """``{name: spec}`` of the four timeframe models, shortest first, from ``config.timeframe_horizons``."""
    return {
        name: TimeframeSpec.from_horizon(name, rank, horizon)
        for rank, (name, horizon) in enumerate(zip(TIMEFRAME_NAMES, config.timeframe_horizons, strict=True))
    }


def timeframe_run_config(run_config: RunConfig, spec: TimeframeSpec) -> RunConfig:
    """The backtest config of one timeframe model: the same MoE, its trend labels over ``spec.horizon`` bars."""
    return replace(run_config, labels=replace(run_config.labels, horizon=spec.horizon))
