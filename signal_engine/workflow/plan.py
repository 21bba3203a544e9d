"""The training plan: which accelerator each training job needs, decided from the run's config.

A job needs a GPU (and the NVIDIA TensorFlow image) only when it fits a Keras model (``uses_tensorflow``: the LSTM,
transformer and kernel-bank trend experts, the MLP gate); every other model (LightGBM, logistic regression,
GARCH/EWMA, HAR, swing levels, the softmax and rule gates) trains on a CPU instance with the slim CPU image. An
expert's job fits the model the config picks for it. The train_gate job walks forward (refitting the MoE's experts and
gate at every refit, except a pooled trend expert: its out-of-sample probabilities come from the trend job) and fits
the gate; the evaluate job fits nothing of the MoE (it packs the fitted experts and the gate's NumPy weights), but
with the whole book it trains each timeframe model as the MoE is trained (experts and gate). The prepare job writes
:func:`training_plan` to ``runs/<execution>/plan.json``; the Step Functions workflow reads it and starts each job
on the instance type and image it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from signal_engine import components
from signal_engine.config import POOLED_TRENDS, RunConfig, for_bars
from signal_engine.errors import ConfigError
from signal_engine.workflow.steps import EXPERTS

Accelerator = Literal["gpu", "cpu"]
PLAN_SCHEMA_VERSION = 2
# The jobs besides the experts' whose accelerator the plan names (``steps``), by workflow step name.
PLANNED_STEPS = ("train_gate", "evaluate")


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


def per_symbol_models(config: RunConfig) -> list[Any]:
    """The unfitted models a walk-forward of ``config`` refits per symbol (and the book's timeframe models train):
    the MoE's experts and its gate, but a pooled trend network, which only the trend job trains (the walk-forward
    reads that job's out-of-sample probabilities; the book refuses it, ``training.check_exportable``)."""
    pooled = config.moe.experts.trend in POOLED_TRENDS
    return [*(expert_model(e, config) for e in EXPERTS if not (pooled and e == "trend")), components.gate(config)]


def step_accelerators(config: RunConfig, intraday: Iterable[bool], *, book: bool) -> dict[str, Accelerator]:
    """The accelerator of the train_gate and evaluate jobs for the run's series (``intraday``: one flag per series)
    under ``config``; ``book``: the jobs train the whole book (``JobEnvironment.book``).

    train_gate walks forward, refitting the MoE's per-symbol models at every refit (:func:`per_symbol_models`), and
    fits the gate: ``gpu`` when one of those is a Keras model. evaluate loads the fitted experts (a Keras expert
    pickles as NumPy weights) and the gate's weights, and with ``book`` trains the book's timeframe models as the
    MoE is trained: ``gpu`` only with ``book`` and a Keras model among those."""
    models = [m for k in set(intraday) or {False} for m in per_symbol_models(for_bars(config, k))]
    keras = any(model_accelerator(m) == "gpu" for m in models)
    return {"train_gate": "gpu" if keras else "cpu", "evaluate": "gpu" if keras and book else "cpu"}


def training_plan(experts: Sequence[str], config: RunConfig, intraday: Iterable[bool], *,
                  book: bool = True) -> dict[str, Any]:
    """Each expert with its accelerator: ``gpu`` when its model is a Keras model for any of the run's series
    (``intraday`` holds one flag per series), else ``cpu``; and under ``steps`` the train_gate and evaluate jobs'
    (:func:`step_accelerators`, ``book``: whether they train the whole book). The JSON document the workflow reads."""
    if not experts:
        raise ConfigError(f"experts: none given; expected some of {', '.join(EXPERTS)}")
    unknown = [e for e in experts if e not in EXPERTS]
    if unknown or len(set(experts)) != len(experts):
        raise ConfigError(f"experts: {list(experts)} must name each of {', '.join(EXPERTS)} at most once"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    kinds = set(intraday) or {False}
    steps = step_accelerators(config, kinds, book=book)
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "experts": [
            {"expert": expert,
             "accelerator": "gpu" if any(expert_accelerator(expert, config, intraday=k) == "gpu" for k in kinds)
             else "cpu"}
            for expert in experts
        ],
        "steps": {step: {"accelerator": steps[step]} for step in PLANNED_STEPS},
    }
