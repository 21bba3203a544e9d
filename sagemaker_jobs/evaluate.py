"""SageMaker job: the quality gate and the bundle.

Channels ``gate`` (the train_gate job's model.tar.gz) and ``experts`` (the prefix holding every train_expert
job's model.tar.gz). Writes the complete bundle (``docs/model-bundle.md``) into SM_MODEL_DIR, so the job's
``model.tar.gz`` is what the experts' endpoint loads; publishes it to the registry (hyperparameter ``registry``:
``s3://bucket/models`` or a folder) without promoting it; writes the report ``{"version", "passed",
"served_symbols", "withheld", "checks", "bundle"}`` to hyperparameter ``report`` (an ``s3://`` URI or a path),
which the workflow's Choice reads: ``passed`` (promote) when at least one symbol passed the quality gate;
``checks`` is every symbol's checks in one list, each with its ``symbol``. Prints ``quality_passed=<0|1>`` for
SageMaker metric definitions. A tuned trend artefact (``tuning.json``, hyperparameter ``tune``) must come with a
gate artefact whose walk-forward was tuned at every refit (its ``metrics.json`` has ``tuning``), and the reverse:
the job fails naming the mismatch otherwise; the bundle's ``tuning.walk_forward`` records that budget.

With the ``dataset`` channel (the prepare job's output) it also trains the whole book into the bundle
(``book.json`` and ``books/<book>/<model>/``, ``signal_engine.workflow.book``), with the ``orchestration``
section of the ``config`` hyperparameter; hyperparameter ``book`` = ``false`` leaves it out (the live book step
then refuses the version). The book's timeframe models reuse the walk-forwards of the ``walkforward`` channel
(a fanned-out backtest's batches) or those the train_gate job left in ``walkforward/`` of its artefact. With the
MoE's news slot (``moe.news``) every timeframe model has the slot too: the dataset's ``news_score`` column (the
prepare job's scores) is its input, and each model's bundle carries the same text expert as the version's.

With ``"news": {"enabled": true, ...}`` in the ``config`` hyperparameter the bundle also carries the text expert
(``signal_engine.workflow.news``; ``news/head.npz`` and the ``news`` section of ``bundle.json``): the head of the
``text`` channel's text model folder (``signal-engine text-train --model DIR``, uploaded), else one trained here on
the shipped corpus (a few minutes; the image has the encoder's packages).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from signal_engine.errors import ConfigError
from signal_engine.registry import MANIFEST
from signal_engine.workflow.book import train_books
from signal_engine.workflow.sagemaker_env import JobEnvironment, run_job, single_root, unpack
from signal_engine.workflow.steps import ExpertArtefact, GateArtefact
from signal_engine.workflow.training import DATASET_FILE, GATE_INFO_FILE, evaluate, load_dataset
from signal_engine.workflow.walk_forwards import WALK_FORWARD_FOLDER, WalkForwards, read_walk_forwards


def registry_for(target: str) -> Any:
    """The model registry at ``target``: S3 for ``s3://`` URIs (boto3, imported here only), else a folder."""
    if target.startswith("s3://"):
        import boto3

        from signal_engine.adapters.s3_model_registry import S3ModelRegistry

        return S3ModelRegistry.from_uri(boto3.client("s3"), target)
    from signal_engine.adapters.model_registry import LocalModelRegistry

    return LocalModelRegistry(target)


def write_report(target: str, report: dict[str, Any]) -> None:
    body = (json.dumps(report, indent=2) + "\n").encode("utf-8")
    if target.startswith("s3://"):
        import boto3

        bucket, _, key = target[len("s3://"):].partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def walk_forwards(job: JobEnvironment, gate: GateArtefact, series: list[Any], config: Any) -> WalkForwards | None:
    """The run's walk-forwards for the book: the ``walkforward`` channel's batches, else those the train_gate job
    left in its artefact; None when neither holds them (the book then walks forward here)."""
    if "walkforward" in job.channels:
        return read_walk_forwards(job.channel("walkforward"), series, config, job.orchestration())
    if (gate.root / WALK_FORWARD_FOLDER).is_dir():
        return read_walk_forwards(gate.root / WALK_FORWARD_FOLDER, series, config, job.orchestration())
    return None


def say_training(folder: Path) -> None:
    print(f"training the text expert's head into {folder}")


def main(argv: Sequence[str] | None = None) -> int:
    job = JobEnvironment.from_env(argv=sys.argv[1:] if argv is None else argv)
    config, quality = job.settings()
    gate = GateArtefact(single_root(job.channel("gate"), GATE_INFO_FILE))
    experts = [ExpertArtefact(root.name, root) for root in unpack(job.channel("experts"))
               if (root / MANIFEST).is_file()]
    if not experts:
        raise ConfigError(f"{job.channel('experts')}: no expert artefacts; point the 'experts' channel at the prefix "
                          "of the train_expert jobs' outputs")
    evaluation, version = evaluate(config, quality, experts, gate, job.model_dir, news=job.news(),
                                   on_news_training=say_training)
    if job.book():
        series = load_dataset(single_root(job.channel("dataset"), DATASET_FILE))
        walked = walk_forwards(job, gate, series, config)
        books = train_books(series, config, quality, evaluation.root, orchestration=job.orchestration(),
                            walk_forwards=walked.timeframes if walked else None,
                            moe_walk_forward=walked.moe if walked else None,
                            on_model=lambda what: print(f"training the {what}"), news=job.news(),
                            on_news_training=say_training)
        print(f"whole book: {', '.join(f'{b.name} ({len(b.models)} models)' for b in books)}")
    decision = json.loads((evaluation.root / "decision.json").read_text(encoding="utf-8"))
    location = registry_for(job.require("registry")).publish(evaluation.root, version)
    checks = [{"symbol": symbol, **check} for symbol, verdict in decision["symbols"].items()
              for check in verdict["checks"]]
    report = {"version": version, "passed": evaluation.passed, "served_symbols": decision["served_symbols"],
              "withheld": decision["withheld"], "checks": checks, "bundle": location}
    write_report(job.require("report"), report)
    print(f"quality_passed={int(evaluation.passed)}")
    for check in checks:
        print(f"check {check['symbol']} {check['name']}={check['value']} threshold={check['threshold']} "
              f"passed={check['passed']}")
    print(f"serves {', '.join(decision['served_symbols']) or 'no symbol'}")
    for symbol, reason in decision["withheld"].items():
        print(f"withheld {symbol}: {reason}")
    print(f"published {version} to {location} (not promoted: the workflow promotes it after deploying)")
    return 0


if __name__ == "__main__":
    sys.exit(run_job("evaluate", main))
