"""SageMaker job: fit one expert (hyperparameter ``expert``) for every symbol of the dataset channel.

Writes the ``signal_engine.registry`` artefact layout (``manifest.json`` + ``experts/<expert>/<SYMBOL>/model.pkl``)
into SM_MODEL_DIR, which SageMaker packs as ``model.tar.gz``. On the GPU instance TensorFlow experts use the GPU;
the classical ones (LightGBM, GARCH, swing levels) run on its CPUs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from signal_engine.errors import ConfigError
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job, single_root
from signal_engine.workflow.steps import DATASET_FILE, EXPERTS


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    expert = job.require("expert")
    if expert not in EXPERTS:
        raise ConfigError(f"hyperparameter 'expert' is {expert!r}; expected one of {', '.join(EXPERTS)} "
                          "(the execution input's 'experts' list)")
    config, _ = job.settings()
    dataset = single_root(job.channel("dataset"), DATASET_FILE)
    # pandas and the models only once the hyperparameters and channels are known good: a bad job fails in a second
    from signal_engine.workflow.training import load_dataset, train_expert

    series = load_dataset(dataset)
    artefact = train_expert(expert, series, config, job.model_dir)
    print(f"trained {expert} for {', '.join(s.symbol for s in series)} into {artefact.root}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("train_expert", main))
