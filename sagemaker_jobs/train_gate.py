"""SageMaker job: walk forward through the dataset, fit the pooled gate and the confidence map on the experts'
out-of-sample outputs, and keep the walk-forward metrics (``gate.npz`` - none for a rule gate, whose parameters
are in ``gate.json`` -, ``calibration.json``, ``gate.json``, ``metrics.json`` in SM_MODEL_DIR).

The walk-forwards (the MoE's and, unless hyperparameter ``book`` is ``false``, every timeframe model's of the
book) run over every core of the instance (hyperparameter ``jobs``: processes, default every core), or are read
from the optional ``walkforward`` channel: the batch folders of `signal-engine backtest-batch` of the same
symbols, bars and config (a backtest fanned out over many machines). With ``moe.experts.trend: trend_pooled`` the
MoE's walk-forward reads the trend expert's out-of-sample probabilities from the ``experts`` channel (the trend job's
``pooled_trend.npz``: the pooled walk-forward that job ran on the GPU) instead of fitting a trend expert per symbol.
Walked here, they are left in ``walkforward/`` of SM_MODEL_DIR for the evaluate job, so the run walks forward once.

With hyperparameter ``tune`` ``true`` (what the workflow sends for an execution input with ``"tune": true``, as to
the expert jobs) every refit of the MoE's trend expert in the walk-forward is tuned by a nested Optuna study first,
with the ``tuning`` section's trials and timeout per refit (``signal_engine.workflow.tuning``), so the quality gate
judges the tuned procedure the trend job serves; ``metrics.json`` gets a ``tuning`` section. With
``trend_pooled`` the trend probabilities are those of the trend job's pooled walk-forward, every refit of which that
job tuned (``pooled_tuning.json`` in the ``experts`` channel: its refits' records). A ``walkforward``
channel (a backtest fan-out's batches, walked forward with the defaults) is refused then.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from signal_engine.errors import ConfigError
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job, single_root
from signal_engine.workflow.steps import DATASET_FILE
from signal_engine.workflow.tuning import require_optuna


def pooled_trend(job: JobEnvironment, series: Sequence[Any]) -> Any:
    """The pooled trend expert's out-of-sample probabilities from the ``experts`` channel's trend artefact
    (``pooled_trend.npz``, written by the trend job with ``moe.experts.trend: trend_pooled``), else None."""
    if "experts" not in job.channels:
        return None
    from signal_engine.workflow.sagemaker_env import unpack
    from signal_engine.workflow.training import pooled_trend_proba

    return pooled_trend_proba(unpack(job.channel("experts")), series)


def pooled_tuning(job: JobEnvironment) -> Any:
    """The tuned pooled walk-forward's refit records by symbol from the ``experts`` channel's trend artefact
    (``pooled_tuning.json``, written by the trend job with ``trend_pooled`` and hyperparameter ``tune``), else None."""
    if "experts" not in job.channels:
        return None
    from signal_engine.workflow.sagemaker_env import unpack
    from signal_engine.workflow.training import pooled_tuning_records

    return pooled_tuning_records(unpack(job.channel("experts")))


def walked_refits(gate_root: Any) -> int:
    """The tuned refits the gate's metrics record, summed over symbols (``metrics.json``'s ``tuning`` section)."""
    import json

    from signal_engine.workflow.training import METRICS_FILE

    metrics = json.loads((gate_root / METRICS_FILE).read_text(encoding="utf-8"))
    return sum(int(v["refits"]) for v in metrics["tuning"]["refits"].values())


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, _ = job.settings()
    orchestration = job.orchestration()
    tuning = job.tuning()
    if tuning.enabled:
        require_optuna("hyperparameter 'tune'")
        if "walkforward" in job.channels:
            raise ConfigError("hyperparameter 'tune' is true, but the walkforward channel's batches (a backtest "
                              "fan-out) were walked forward with the config's trend settings: the quality gate would "
                              "judge another procedure than the one served; drop walk_forward_run or tune")
    dataset = single_root(job.channel("dataset"), DATASET_FILE)
    # pandas and the models only once the hyperparameters and channels are known good: a bad job fails in a second
    from signal_engine.workflow.training import load_dataset, train_gate
    from signal_engine.workflow.walk_forwards import (
        WALK_FORWARD_FOLDER,
        read_walk_forwards,
        run_walk_forwards,
        write_walk_forwards,
    )

    series = load_dataset(dataset)
    if "walkforward" in job.channels:
        walked = read_walk_forwards(job.channel("walkforward"), series, config, orchestration)
        print(f"read the walk-forwards of {len(series)} symbol(s) from the walkforward channel")
    else:
        walked = run_walk_forwards(series, config, orchestration=orchestration, book=job.book(),
                                   jobs=job.jobs(), trend_proba=pooled_trend(job, series), tuning=tuning)
        write_walk_forwards(walked, series, config, orchestration, job.model_dir / WALK_FORWARD_FOLDER)
    artefact = train_gate(series, config, job.model_dir, walked.moe, tuning=tuning,
                          pooled_tuning=pooled_tuning(job) if tuning.enabled else None)
    print(f"gate trained on the walk-forward of {', '.join(s.symbol for s in series)} into {artefact.root}")
    if tuning.enabled:
        print(f"walk-forward tuned at every refit: trials={tuning.trials} timeout_s={tuning.timeout_s} "
              f"refits={walked_refits(artefact.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("train_gate", main))
