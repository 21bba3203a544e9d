"""SageMaker job: fit one expert (hyperparameter ``expert``) for every symbol of the dataset channel.

Writes the ``signal_engine.registry`` artefact layout (``manifest.json`` + ``experts/<expert>/<SYMBOL>/model.pkl``)
into SM_MODEL_DIR, which SageMaker packs as ``model.tar.gz``. On the GPU instance TensorFlow experts use the GPU;
the classical ones (LightGBM, GARCH, swing levels) run on its CPUs.

With hyperparameter ``tune`` ``true`` the trend job first chooses each symbol's LightGBM settings with an Optuna study
on that fit's training rows (``signal_engine.workflow.tuning``); the studies are kept in SM_MODEL_DIR as
``tuning/optuna.db`` (so in the job's ``model.tar.gz`` in S3) and their records as ``tuning.json``, which the evaluate
job copies into the bundle's ``bundle.json``. With ``moe.experts.trend: trend_pooled`` (this job on the GPU instance)
the pooled network is tuned instead, one study over every symbol's rows (``signal_engine.tuning.keras``), and so is
every refit of its pooled walk-forward, whose records go to ``pooled_tuning.json`` for the train_gate job.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from signal_engine.errors import ConfigError
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job, single_root
from signal_engine.workflow.steps import DATASET_FILE, EXPERTS
from signal_engine.workflow.tuning import TUNED_EXPERT, read_records, require_optuna


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    expert = job.require("expert")
    if expert not in EXPERTS:
        raise ConfigError(f"hyperparameter 'expert' is {expert!r}; expected one of {', '.join(EXPERTS)} "
                          "(the execution input's 'experts' list)")
    config, _ = job.settings()
    tuning = job.tuning()
    if tuning.enabled and expert == TUNED_EXPERT:
        require_optuna("hyperparameter 'tune'")
    dataset = single_root(job.channel("dataset"), DATASET_FILE)
    # pandas and the models only once the hyperparameters and channels are known good: a bad job fails in a second
    from signal_engine.workflow.training import load_dataset, train_expert

    series = load_dataset(dataset)
    artefact = train_expert(expert, series, config, job.model_dir, tuning=tuning)
    print(f"trained {expert} for {', '.join(s.symbol for s in series)} into {artefact.root}")
    for symbol, record in read_records([artefact.root]).get(expert, {}).items():
        print(f"tuned {expert}/{symbol}: trials={record.get('trials', 0)} best_value={record.get('best_value')} "
              f"params={json.dumps(record.get('params', {}), sort_keys=True)} study={record.get('study_name')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("train_expert", main))
