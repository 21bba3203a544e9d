"""The training workflow as one list of steps, shared by the local runner and the Step Functions definition.

Each step names what it consumes and produces (the artefact types below), which SageMaker script-mode entry
point runs it in AWS (``sagemaker_jobs/<entry>.py``) and which Step Functions state represents it.
``signal_engine.workflow.local.LocalRunner`` runs the steps in order in one process;
``step_functions/training_workflow.py`` builds one state (or a Map of states) per step from this list, and
``tests/infra/test_training_workflow.py`` walks both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

StepKind = Literal["job", "map_job", "choice", "deploy"]
EXPERTS = ("trend", "levels", "volatility")  # config.PRICE_EXPERTS: the experts with a training job and a bundle
# slot (the news slot of moe.news trains no expert: its input is the text expert's score, the bundle's news section)
DATASET_FILE = "dataset.json"  # in the prepared dataset's folder: its symbols and their files


@dataclass(frozen=True)
class TrainingInputs:
    """What a training run is asked to do (the Step Functions execution input carries the same fields).

    ``start``/``end`` are ISO dates (inclusive) bounding the bars used, or None for all of them;
    ``hyperparameters`` map a step name to its overrides, in ``--config`` section form.
    """

    symbols: tuple[str, ...]
    profile: str = "quick"
    start: str | None = None
    end: str | None = None
    experts: tuple[str, ...] = EXPERTS
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetArtefact:
    """The prepared dataset: one validated Yahoo-layout CSV per symbol plus ``dataset.json``."""

    root: Path
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class ExpertArtefact:
    """One expert fitted per symbol, saved by ``signal_engine.registry.save_experts`` as ``<expert>/<SYMBOL>``."""

    expert: str
    root: Path


@dataclass(frozen=True)
class GateArtefact:
    """The pooled gate (``gate.npz``; a rule gate's parameters in ``gate.json``), the confidence map
    (``calibration.json``) and the walk-forward metrics."""

    root: Path


@dataclass(frozen=True)
class EvaluationArtefact:
    """``metrics.json`` and ``decision.json`` of the run (the quality gate's verdict)."""

    root: Path
    passed: bool


@dataclass(frozen=True)
class Publication:
    """Where the bundle went and whether it became the version serving uses."""

    version: str
    path: str
    promoted: bool


@dataclass(frozen=True)
class Step:
    """One step of the training workflow.

    Parameters
    ----------
    name : identifier used by both runners (and the hyperparameters of :class:`TrainingInputs`).
    state : the Step Functions state name.
    kind : ``job`` (one SageMaker training job), ``map_job`` (one job per expert, in parallel), ``choice``
        (a branch on the previous step's decision) or ``deploy`` (publish the bundle, update the endpoint).
    entry : the ``sagemaker_jobs`` entry point that runs it in AWS (None for steps Step Functions does itself).
    inputs, outputs : artefact type names, in the order the step takes and gives them.
    instance : ``cpu`` or ``gpu``: which instance type of the execution input (and training image) the job runs
        on; ``plan``: the training plan's (``signal_engine.workflow.plan``: ``gpu`` only for a job that fits a Keras
        model), each expert's own for the Map.
    """

    name: str
    state: str
    kind: StepKind
    title: str
    entry: str | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    instance: Literal["cpu", "gpu", "plan", "none"] = "none"


STEPS: tuple[Step, ...] = (
    Step("prepare_dataset", "PrepareDataset", "job", "prepare dataset", "prepare",
         ("TrainingInputs",), ("DatasetArtefact",), "cpu"),
    Step("train_experts", "TrainExperts", "map_job", "train each expert", "train_expert",
         ("DatasetArtefact",), ("ExpertArtefact",), "plan"),
    Step("train_gate", "TrainGate", "job", "train gate and meta-model", "train_gate",
         ("DatasetArtefact",), ("GateArtefact",), "plan"),
    Step("evaluate", "Evaluate", "job", "evaluate walk-forward", "evaluate",
         ("DatasetArtefact", "ExpertArtefact", "GateArtefact"), ("EvaluationArtefact",), "plan"),
    Step("decide", "QualityGate", "choice", "decide on quality", None,
         ("EvaluationArtefact",), ("EvaluationArtefact",)),
    Step("publish", "Publish", "deploy", "publish", None,
         ("EvaluationArtefact",), ("Publication",)),
)


def step(name: str) -> Step:
    """The step called ``name``."""
    for candidate in STEPS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no workflow step '{name}'; expected one of {', '.join(s.name for s in STEPS)}")
