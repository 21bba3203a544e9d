"""SageMaker job: fit one expert (hyperparameter ``expert``) for every symbol of the dataset channel.

Writes the ``signal_engine.registry`` artefact layout (``manifest.json`` + ``experts/<expert>/<SYMBOL>/model.pkl``)
into SM_MODEL_DIR, which SageMaker packs as ``model.tar.gz``. On the GPU instance TensorFlow experts use the GPU;
the classical ones (LightGBM, GARCH, swing levels) run on its CPUs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from signal_engine.errors import SignalEngineError
from signal_engine.workflow.sagemaker_env import JobEnvironment, single_root
from signal_engine.workflow.training import DATASET_FILE, load_dataset, train_expert


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, _ = job.settings()
    series = load_dataset(single_root(job.channel("dataset"), DATASET_FILE))
    expert = job.require("expert")
    artefact = train_expert(expert, series, config, job.model_dir)
    print(f"trained {expert} for {', '.join(s.symbol for s in series)} into {artefact.root}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SignalEngineError as exc:
        print(f"train_expert: error: {exc}", file=sys.stderr)
        sys.exit(2)
