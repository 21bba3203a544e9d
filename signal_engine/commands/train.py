"""`signal-engine train`: run the training workflow's steps locally into a model registry, or start one SageMaker job.

The quality gate judges each symbol on its own walk-forward metrics: the bundle serves the symbols that passed and
withholds the others (printed with the failed checks). Exit status: 0 when at least one symbol passed and the
bundle became CURRENT; 3 when no symbol passed (the bundle is kept in the registry for inspection, CURRENT is
unchanged); 2 for bad input (as every command).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from signal_engine.ports import DocumentStore
    from signal_engine.workflow.local import TrainingRun
    from signal_engine.workflow.tuning import TuningRun

EXIT_QUALITY_GATE_FAILED = 3
REGISTRY_VARIABLE = "SIGNAL_ENGINE_MODEL_REGISTRY"


def default_registry() -> Path:
    """``$SIGNAL_ENGINE_MODEL_REGISTRY`` or ``out/models``."""
    return Path(os.environ.get(REGISTRY_VARIABLE) or "out/models")


def register(subparsers: Any) -> None:
    """Add the train sub-command."""
    from signal_engine.config import PROFILES
    from signal_engine.data.datasets import DATASETS

    train = subparsers.add_parser(
        "train", help="train the MoE (experts, gate, confidence), evaluate it walk-forward and publish a bundle",
        description="Runs prepare dataset -> train experts -> train gate -> evaluate -> quality gate -> publish. "
                    "Each symbol is judged on its own metrics; the bundle serves those that passed. "
                    "Exit 0: at least one symbol passed, CURRENT; 3: none passed (bundle kept, CURRENT unchanged).")
    source = train.add_argument_group("data (local runs)")
    source.add_argument("--prices", type=Path, action="append", metavar="FILE.csv", help="Yahoo-layout CSV; repeat")
    source.add_argument("--symbol", action="append", metavar="SYMBOL", help="symbol per --prices file")
    source.add_argument("--dataset", action="append", choices=sorted(DATASETS), metavar="NAME",
                        help=f"a real series shipped with the dependencies: {', '.join(DATASETS)}; repeat")
    train.add_argument("--start", metavar="YYYY-MM-DD", help="first bar to use (default: the first)")
    train.add_argument("--end", metavar="YYYY-MM-DD", help="last bar to use (default: the last)")
    train.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    train.add_argument("--config", type=Path, metavar="FILE", help="YAML/JSON overrides, plus a 'quality:' section "
                       "and a 'news:' section ('news: {enabled: true}': the bundle carries the text expert)")
    train.add_argument("--registry", type=Path, default=None, metavar="DIR",
                       help=f"model registry folder (default: ${REGISTRY_VARIABLE} or out/models)")
    train.add_argument("--no-book", action="store_true",
                       help="train the MoE only, not the whole book (its timeframe models and book.json, which "
                            "`signal-engine step` and the book-step Lambda need); about 3x faster")
    train.add_argument("--database", metavar="URL",
                       help="with moe.news: the document store whose news gives a price file without a news_score "
                            "column its scores (default: $SIGNAL_ENGINE_DATABASE_URL or "
                            "sqlite:///out/store/signal_engine.db)")
    train.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="processes for the walk-forwards (each symbol's MoE and timeframe models are tasks of "
                            "their own; default: $SIGNAL_ENGINE_JOBS, else every core; 0: every core); any N gives "
                            "the same bundle")
    train.add_argument("--tune", action="store_true",
                       help="choose each symbol's LightGBM trend settings (with trend_pooled: the pooled network's) "
                            "with an Optuna study on its training rows before the final fit (nested; the 'tuning:' "
                            "config section sets trials and timeout_s); needs pip install 'signal-engine[tune]'")
    train.add_argument("--tune-storage", metavar="URL",
                       help="Optuna storage for the studies (an SQLAlchemy URL: sqlite:///FILE, "
                            "mysql+pymysql://user:password@host/db); default: sqlite in <registry>/tuning/optuna.db")
    train.add_argument("--on", choices=("local", "sagemaker"), default="local",
                       help="local: every step in this process; sagemaker: start one SageMaker training job")
    job = train.add_argument_group("SageMaker job (--on sagemaker; needs pip install 'signal-engine[sagemaker]')")
    job.add_argument("--entry", default="train_expert", help="entry point: prepare, train_expert, train_gate, evaluate")
    job.add_argument("--expert", default="trend", help="expert for --entry train_expert")
    job.add_argument("--channel", action="append", default=[], metavar="NAME=S3URI", help="input channel; repeat")
    job.add_argument("--image", metavar="URI", help="training image URI (containers/training pushed to ECR)")
    job.add_argument("--role", metavar="ARN", help="SageMaker execution role ARN")
    job.add_argument("--output", metavar="S3URI", help="where SageMaker writes model.tar.gz")
    job.add_argument("--instance-type", default="ml.g5.xlarge")
    job.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace, console: Console) -> int:
    if args.on == "sagemaker":
        return _start_sagemaker_job(args, console)
    return _train_locally(args, console)


def _train_locally(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.adapters.model_registry import LocalModelRegistry
    from signal_engine.cli import orchestration_section, with_dataset_costs, with_dataset_limits
    from signal_engine.config import _read_mapping
    from signal_engine.data.datasets import export_dataset
    from signal_engine.pipeline import load_all
    from signal_engine.workflow.local import BookTraining, LocalRunner
    from signal_engine.workflow.news import news_section
    from signal_engine.workflow.settings import load_training_settings
    from signal_engine.workflow.steps import TrainingInputs

    if not args.prices and not args.dataset:
        raise InputError("--prices", "no data given; pass --prices FILE.csv or --dataset NAME (e.g. --dataset SPX)")
    config, quality = load_training_settings(args.profile, args.config)
    registry = LocalModelRegistry(args.registry or default_registry())
    tuning = tuning_settings(args, registry.root)
    orchestration = orchestration_section(args.config)
    with tempfile.TemporaryDirectory(prefix="signal-engine-datasets-") as scratch:
        paths = list(args.prices or [])
        symbols = list(args.symbol or [])
        if args.dataset:
            if symbols:
                raise InputError("--symbol", "names --prices files only; drop it when using --dataset")
            paths += [export_dataset(name, Path(scratch)) for name in args.dataset]
            config = with_dataset_costs(config)
            orchestration = with_dataset_limits(orchestration)
        series = load_all(paths, symbols or None)
    inputs = TrainingInputs(symbols=tuple(s.symbol for s in series), profile=config.profile, start=args.start,
                            end=args.end)
    console.print(f"Training {', '.join(inputs.symbols)} ({config.profile}) into {registry.root}")
    book = None if args.no_book else BookTraining(orchestration)
    news = news_section(_read_mapping(args.config) if args.config else None, str(args.config))
    with _documents(args.database if config.moe.news else None, config.moe.news) as documents:
        run = LocalRunner(registry, config, quality, console=console, book=book, jobs=args.jobs,
                          news=news, documents=documents, tuning=tuning).run(inputs, series)
    if tuning.enabled:
        print_tuning(run, console)
    print_run(run, console, trend_expert=config.moe.experts.trend)
    return 0 if run.passed else EXIT_QUALITY_GATE_FAILED


@contextmanager
def _documents(url: str | None, wanted: bool) -> Iterator[DocumentStore | None]:
    """The local document store (``--database``, else the default store) when ``wanted`` (moe.news), else None."""
    if not wanted:
        yield None
        return
    from signal_engine.bootstrap import Settings, bootstrap

    storage = bootstrap(Settings.from_env(database_url=url))
    try:
        yield storage.documents
    finally:
        storage.close()


def tuning_settings(args: argparse.Namespace, registry_root: Path) -> TuningRun:
    """The ``tuning:`` section of ``--config`` with ``--tune`` and ``--tune-storage`` applied; with tuning on, Optuna
    must import (else one line naming the extra) and the storage defaults to ``<registry>/tuning/optuna.db``."""
    from dataclasses import replace

    from signal_engine.config import _read_mapping
    from signal_engine.workflow.tuning import require_optuna, sqlite_storage, tuning_section

    tuning = tuning_section(_read_mapping(args.config) if args.config else None, str(args.config))
    if args.tune:
        tuning = replace(tuning, enabled=True)
    if args.tune_storage and not tuning.enabled:
        raise InputError("--tune-storage", "is the tuning studies' storage; add --tune (or 'tuning: {enabled: true}')")
    if not tuning.enabled:
        return tuning
    require_optuna("--tune")
    return replace(tuning, storage=args.tune_storage or sqlite_storage(registry_root))


def print_tuning(run: TrainingRun, console: Console) -> None:
    """Each symbol's tuned trend settings (the bundle's ``tuning`` section) and where its study is kept."""
    from rich.table import Table

    assert run.publication is not None
    bundle = json.loads((Path(run.publication.path) / "bundle.json").read_text(encoding="utf-8"))
    records = bundle.get("tuning", {}).get("trend", {})
    table = Table(title="Tuned trend expert (Optuna, on each symbol's training rows)")
    for column in ("symbol", "trials", "pruned", "inner log loss", "settings served"):
        table.add_column(column, justify="left" if column in ("symbol", "settings served") else "right")
    for symbol, record in records.items():
        if not record.get("tuned"):
            table.add_row(symbol, "0", "0", "n/a", record.get("reason") or "defaults (too few inner training rows)")
            continue
        settings = ", ".join(f"{k}={_short(v)}" for k, v in sorted(record["params"].items()))
        table.add_row(symbol, str(record["trials"]), str(record["pruned"]), _fmt(record["best_value"], "{:.4f}"),
                      settings)
    console.print(table)
    stored = {r["storage"] for r in records.values() if r.get("storage")}
    if stored:
        console.print(f"  studies kept in {', '.join(sorted(stored))}")
    judged = bundle.get("tuning", {}).get("walk_forward")
    if judged:
        refits = sum(v["refits"] for v in judged["refits"].values())
        console.print(f"  the quality gate judged the walk-forward tuned at each of its {refits} refits "
                      f"({judged['trials']} trials, timeout {judged['timeout_s']} s a refit)")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_run(run: TrainingRun, console: Console, trend_expert: str = "trend_lightgbm") -> None:
    """The version, the evaluation numbers (``trend_expert``: the MoE's trend model) and the decision of a run."""
    from rich.table import Table

    assert run.evaluation is not None and run.publication is not None
    metrics = run.metrics
    strategies = metrics.get("strategies", {})
    numbers = Table(title="Walk-forward evaluation (out of sample, net of costs; mean over symbols)")
    for column in ("MoE Sharpe", "B&H Sharpe", "MoE max DD", "trend log loss", "prior log loss", "confidence ECE"):
        numbers.add_column(column, justify="right")
    numbers.add_row(
        _fmt(strategies.get("moe", {}).get("sharpe")), _fmt(strategies.get("baseline_buy_and_hold", {}).get("sharpe")),
        _fmt(strategies.get("moe", {}).get("max_drawdown"), "{:.1%}"),
        _fmt(metrics.get("trend", {}).get(trend_expert, {}).get("log_loss"), "{:.4f}"),
        _fmt(metrics.get("trend", {}).get("baseline_majority", {}).get("log_loss"), "{:.4f}"),
        _fmt(metrics.get("confidence", {}).get("moe", {}).get("ece"), "{:.3f}"),
    )
    console.print(numbers)
    checks = Table(title="Quality gate (each symbol on its own walk-forward metrics)")
    for column in ("symbol", "check", "value", "threshold", "result"):
        checks.add_column(column, justify="left" if column in ("symbol", "check") else "right")
    for symbol, verdict in metrics["quality"]["symbols"].items():
        for check in verdict["checks"]:
            checks.add_row(symbol, check["name"], _fmt(check["value"], "{:.4f}"), f"{check['threshold']:.4f}",
                           "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]")
    console.print(checks)
    if run.passed:
        console.print(f"Version {run.version} passed the quality gate and is now CURRENT: {run.publication.path}")
        console.print(f"  serves {', '.join(run.served_symbols)}")
    else:
        console.print(f"Version {run.version} [red]failed[/red] the quality gate for every symbol: kept at "
                      f"{run.publication.path} for inspection; CURRENT was not changed (exit status 3)")
    for symbol, reason in run.withheld.items():
        console.print(f"  withheld {symbol}: {reason}")
    print(run.version)


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _start_sagemaker_job(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.workflow.sagemaker_launch import JobRequest, sagemaker_sdk, start_training_job

    sdk = sagemaker_sdk()  # fails first, with the install hint, when the SDK is absent
    missing = [flag for flag, value in (("--image", args.image), ("--role", args.role), ("--output", args.output))
               if not value]
    if missing:
        raise InputError(missing[0], "is required with --on sagemaker")
    channels = {}
    for item in args.channel:
        name, _, uri = item.partition("=")
        channels[name] = uri
    symbols = [s.upper() for s in (args.symbol or args.dataset or [])]
    hyperparameters = {"profile": args.profile, "symbols": json.dumps(symbols), "start": args.start or "",
                       "end": args.end or "", "config": json.dumps(_config_overrides(args.config))}
    if args.entry == "train_expert":
        hyperparameters["expert"] = args.expert
    if args.tune_storage:
        raise InputError("--tune-storage", "applies to local runs; a SageMaker job keeps its studies in its "
                         "model.tar.gz (tuning/optuna.db)")
    if args.tune:
        hyperparameters["tune"] = "true"
    request = JobRequest(entry=args.entry, image_uri=args.image, role_arn=args.role, output_path=args.output,
                         channels=channels, instance_type=args.instance_type, hyperparameters=hyperparameters)
    name = start_training_job(request, wait=args.wait, sdk=sdk)
    console.print(f"Started SageMaker training job {name} ({args.entry} on {args.instance_type})")
    print(name)
    return 0


def _config_overrides(path: Path | None) -> dict[str, Any]:
    from signal_engine.config import _read_mapping

    return {} if path is None else _read_mapping(path)
