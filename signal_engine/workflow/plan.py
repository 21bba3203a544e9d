"""The training plan: which accelerator each expert's training job needs, decided from the run's config.

An expert's job needs a GPU (and the NVIDIA TensorFlow image) only when the model the config picks for it is a
Keras model (``uses_tensorflow``: the LSTM, transformer and kernel-bank trend experts); every other model
(LightGBM, logistic regression, GARCH/EWMA, HAR, swing levels) trains on a CPU instance with the slim CPU
image. The prepare job writes :func:`training_plan` to ``runs/<execution>/plan.json``; the Step Functions
workflow reads it and starts each expert's job on the instance type and image it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from signal_engine import components
from signal_engine.config import RunConfig, for_bars
from signal_engine.errors import ConfigError
from signal_engine.workflow.steps import EXPERTS

Accelerator = Literal["gpu", "cpu"]
PLAN_SCHEMA_VERSION = 1


def expert_model(expert: str, config: RunConfig) -> Any:
    """The unfitted model that ``expert`` is fitted as under ``config`` (what the train_expert job fits)."""
    if expert == "trend":
        return components.trend_expert(config)
    if expert == "levels":
        return components.levels_expert(config)
    if expert == "volatility":
        return components.served_volatility_expert(config)
    raise ConfigError(f"unknown expert '{expert}'; expected one of {', '.join(EXPERTS)}")


def model_accelerator(model: Any) -> Accelerator:
    """``gpu`` for a Keras model (its class says ``uses_tensorflow``), else ``cpu``."""
    return "gpu" if getattr(type(model), "uses_tensorflow", False) else "cpu"


def expert_accelerator(expert: str, config: RunConfig, *, intraday: bool = False) -> Accelerator:
    """Where ``expert`` trains for a series of daily (or, with ``intraday``, intraday) bars under ``config``."""
    return model_accelerator(expert_model(expert, for_bars(config, intraday)))


def training_plan(experts: Sequence[str], config: RunConfig, intraday: Iterable[bool]) -> dict[str, Any]:
    """Each expert with its accelerator: ``gpu`` when its model is a Keras model for any of the run's series
    (``intraday`` holds one flag per series), else ``cpu``. The JSON document the workflow's Map reads."""
    if not experts:
        raise ConfigError(f"experts: none given; expected some of {', '.join(EXPERTS)}")
    unknown = [e for e in experts if e not in EXPERTS]
    if unknown or len(set(experts)) != len(experts):
        raise ConfigError(f"experts: {list(experts)} must name each of {', '.join(EXPERTS)} at most once"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    kinds = set(intraday) or {False}
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "experts": [
            {"expert": expert,
             "accelerator": "gpu" if any(expert_accelerator(expert, config, intraday=k) == "gpu" for k in kinds)
             else "cpu"}
            for expert in experts
        ],
    }
