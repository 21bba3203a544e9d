"""The training workflow: one list of steps (``steps``), what each does (``training``), the local runner (``local``)."""

from signal_engine.workflow.steps import STEPS, Step, TrainingInputs

__all__ = ["STEPS", "Step", "TrainingInputs"]
