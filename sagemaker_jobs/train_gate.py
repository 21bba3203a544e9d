"""SageMaker job: walk forward through the dataset, fit the pooled gate and the confidence map on the experts'
out-of-sample outputs, and keep the walk-forward metrics (``gate.npz`` - none for a rule gate, whose parameters
are in ``gate.json`` -, ``calibration.json``, ``gate.json``, ``metrics.json`` in SM_MODEL_DIR)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job, single_root
from signal_engine.workflow.training import DATASET_FILE, load_dataset, train_gate, walk_forward


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, _ = job.settings()
    series = load_dataset(single_root(job.channel("dataset"), DATASET_FILE))
    results = walk_forward(series, config)
    artefact = train_gate(series, config, job.model_dir, results)
    print(f"gate trained on the walk-forward of {', '.join(s.symbol for s in series)} into {artefact.root}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("train_gate", main))
