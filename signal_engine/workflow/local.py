"""The local runner: the workflow's steps in order, in one process, into a local model registry.

``signal-engine train`` and ``signal-engine demo`` use it; in AWS the same steps run as the Step Functions
workflow of ``step_functions/training_workflow.py`` (one SageMaker job per ``job`` step, one per expert for the
``map_job`` step).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SymbolResult
from signal_engine.orchestration.state import BookState
from signal_engine.ports import DocumentStore, ModelRegistry
from signal_engine.workflow import training
from signal_engine.workflow.news import NewsTraining
from signal_engine.workflow.quality import QualityConfig
from signal_engine.workflow.steps import (
    STEPS,
    DatasetArtefact,
    EvaluationArtefact,
    ExpertArtefact,
    GateArtefact,
    Publication,
    Step,
    TrainingInputs,
)
from signal_engine.workflow.tuning import TuningRun


@dataclass(frozen=True)
class BookTraining:
    """Train the whole book with the version: the run's orchestration overrides and, when the caller ran them,
    the timeframe models' walk-forwards (``{symbol: {model: SymbolResult}}``) for their gates to reuse and the
    signal frames its books orchestrated (``Book.signals``) and the states they ended in for the seeds."""

    orchestration: Mapping[str, Any] = field(default_factory=dict)
    walk_forwards: Mapping[str, Mapping[str, SymbolResult]] | None = None
    signals: Mapping[str, Mapping[str, Any]] | None = None  # {symbol: {model: signal frame}}: Book.signals
    states: Mapping[str, BookState] | None = None  # {book: the state they ended in}: Book.result.final_state


@dataclass
class TrainingRun:
    """What a local training run produced, step by step."""

    dataset: DatasetArtefact | None = None
    experts: list[ExpertArtefact] = field(default_factory=list)
    gate: GateArtefact | None = None
    evaluation: EvaluationArtefact | None = None
    version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    publication: Publication | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    books: list[str] = field(default_factory=list)
    walk_forward: list[SymbolResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """At least one symbol passed the quality gate: the version may become CURRENT."""
        return bool(self.evaluation and self.evaluation.passed)

    @property
    def served_symbols(self) -> list[str]:
        """The symbols that passed the quality gate (the bundle serves these)."""
        return [str(s) for s in self.metrics.get("quality", {}).get("served_symbols", [])]

    @property
    def withheld(self) -> dict[str, str]:
        """The symbols that failed the quality gate, each with its reason (the bundle refuses these)."""
        return {str(k): str(v) for k, v in self.metrics.get("quality", {}).get("withheld", {}).items()}


class LocalRunner:
    """Run :data:`signal_engine.workflow.steps.STEPS` in order for already loaded series.

    Parameters
    ----------
    registry : where the bundle is published (``CURRENT`` moves only when at least one symbol passed the
        quality gate).
    config, quality : the run configuration and the quality gate's thresholds.
    console : progress and step lines go here (stderr by default).
    walk_forward_results : the backtest of the same series with the same config, when the caller already ran it
        (the demo): the gate and the evaluation reuse it instead of walking forward a second time.
    book : train the whole book into the version too (``book.json`` and every timeframe model,
        ``signal_engine.workflow.book``), with these orchestration overrides and reusable walk-forwards; None:
        the MoE's bundle only (the live book step refuses such a version).
    jobs : processes for the walk-forwards (the MoE's and the book's timeframe models', each symbol's a task
        of its own); None: ``$SIGNAL_ENGINE_JOBS`` or every core (``signal_engine.evaluation.jobs``).
    news : the ``news:`` section of the config: with ``enabled``, the bundle carries the text expert (the cached
        text-train head; ``signal_engine.workflow.news``).
    documents : where the symbols' news is stored; with ``moe.news`` (the gate's news slot) a series whose price
        file has no ``news_score`` column gets each bar's score from these documents, scored by the bundle's text
        expert (``signal_engine.workflow.news.slot_series``).
    tuning : the ``tuning:`` section (``--tune``): with ``enabled``, each trend expert's LightGBM settings are chosen
        by an Optuna study on its training rows before its fit (``signal_engine.workflow.tuning``), and so are those
        of every refit of the MoE's walk-forward, whose metrics the quality gate reads.
    """

    def __init__(self, registry: ModelRegistry, config: RunConfig, quality: QualityConfig | None = None, *,
                 console: Console | None = None, walk_forward_results: Sequence[SymbolResult] | None = None,
                 book: BookTraining | None = None, jobs: int | None = None,
                 news: NewsTraining | None = None, documents: DocumentStore | None = None,
                 tuning: TuningRun | None = None) -> None:
        self.registry = registry
        self.news = news
        self.documents = documents
        self.tuning = tuning
        self.jobs = jobs
        self._timeframes: dict[str, dict[str, SymbolResult]] = {}
        self._trend_proba: dict[str, np.ndarray] | None = None  # trend_pooled: the pooled walk-forward
        self.config = config
        self.quality = quality or QualityConfig()
        self.console = console or Console(stderr=True)
        self.walk_forward_results = list(walk_forward_results) if walk_forward_results is not None else None
        self.book = book
        self._handlers: dict[str, Callable[[TrainingInputs, Sequence[PriceSeries], Path, TrainingRun], None]] = {
            "prepare_dataset": self._prepare_dataset,
            "train_experts": self._train_experts,
            "train_gate": self._train_gate,
            "evaluate": self._evaluate,
            "decide": self._decide,
            "publish": self._publish,
        }
        missing = [s.name for s in STEPS if s.name not in self._handlers]
        if missing:
            raise NotImplementedError(f"the local runner has no handler for step(s) {missing}")

    def run(self, inputs: TrainingInputs, series: Sequence[PriceSeries], work_dir: Path | None = None) -> TrainingRun:
        """Run every step; artefacts go under ``work_dir`` (temporary when None), the bundle to the registry."""
        training.check_exportable(self.config, self.news, book=self.book is not None)
        run = TrainingRun()
        with tempfile.TemporaryDirectory(prefix="signal-engine-train-") as scratch:
            root = Path(work_dir) if work_dir is not None else Path(scratch)
            for step in STEPS:
                started = time.perf_counter()
                self._handlers[step.name](inputs, series, root, run)
                run.seconds[step.name] = time.perf_counter() - started
                run.steps.append(step.name)
                self._report(step, run)
        return run

    def _report(self, step: Step, run: TrainingRun) -> None:
        self.console.print(f"  [green]done[/green] {step.title} ({run.seconds[step.name]:.1f} s)")

    # -- steps ----------------------------------------------------------------------------------------------

    def _prepare_dataset(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path,
                         run: TrainingRun) -> None:
        chosen = [s for s in series if s.symbol in inputs.symbols] if inputs.symbols else list(series)
        if self.config.moe.news:
            chosen = self._with_news_scores(chosen)
        run.dataset = training.prepare_dataset(chosen, root / "dataset", self.config, start=inputs.start,
                                               end=inputs.end)

    def _with_news_scores(self, series: list[PriceSeries]) -> list[PriceSeries]:
        """The series with the news slot's ``news_score``: the price file's column, else the stored news."""
        from signal_engine.workflow.news import with_news_scores

        assert self.news is not None  # check_exportable: moe.news needs the news section on
        return with_news_scores(series, self.news, self.documents, on_training=self._say_training,
                                say=lambda line: self.console.print(f"  {line}"))

    def _say_training(self, folder: Path) -> None:
        self.console.print(f"  training the text expert's head into {folder} (once; later bundles reuse it)")

    def _dataset_series(self, run: TrainingRun) -> list[PriceSeries]:
        assert run.dataset is not None
        return training.load_dataset(run.dataset.root)

    def _train_experts(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path,
                       run: TrainingRun) -> None:
        data = self._dataset_series(run)
        for expert in inputs.experts:
            run.experts.append(training.train_expert(expert, data, self.config, root / "experts" / expert,
                                                     tuning=self.tuning))

    def _train_gate(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path,
                    run: TrainingRun) -> None:
        data = self._dataset_series(run)
        results = self._reusable_results(data)
        # trend_pooled: the trend step's pooled walk-forward, which the MoE's walk-forward reads as its trend expert's
        self._trend_proba = training.pooled_trend_proba([a.root for a in run.experts], data)
        if results is None:
            results = self._walk_forward(data)
        run.gate = training.train_gate(data, self.config, root / "gate", results, tuning=self.tuning,
                                       pooled_tuning=training.pooled_tuning_records([a.root for a in run.experts]))
        run.walk_forward = results

    def _reusable_results(self, data: Sequence[PriceSeries]) -> list[SymbolResult] | None:
        """The caller's backtest when it covers exactly these series (same symbols, same last bar) and this run does
        not tune (a backtest's refits are not tuned)."""
        given = self.walk_forward_results
        if given is None or self._tuned or [r.symbol for r in given] != [s.symbol for s in data]:
            return None
        for result, s in zip(given, data, strict=True):
            if result.data.get("bars") != len(s) or result.data.get("end") != str(s.bars.index[-1]):
                return None
        return given

    def _walk_forward(self, data: Sequence[PriceSeries]) -> list[SymbolResult]:
        """The MoE's walk-forward of every series and, for the book, every timeframe model's (kept for
        ``_evaluate``), as tasks of their own over ``jobs`` processes: the same bytes for any number of them; with
        ``trend_pooled`` the trend expert's scores are the pooled walk-forward's (``_trend_proba``)."""
        from signal_engine.workflow.walk_forwards import run_walk_forwards

        walked = run_walk_forwards(data, self.config, orchestration=self.book.orchestration if self.book else None,
                                   book=self.book is not None and self.book.walk_forwards is None, jobs=self.jobs,
                                   console=self.console, trend_proba=self._trend_proba, tuning=self.tuning)
        self._timeframes = walked.timeframes
        return walked.moe

    @property
    def _tuned(self) -> bool:
        return self.tuning is not None and self.tuning.enabled

    def _evaluate(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path, run: TrainingRun) -> None:
        assert run.gate is not None
        run.evaluation, run.version = training.evaluate(
            self.config, self.quality, run.experts, run.gate, root / "bundle", news=self.news,
            on_news_training=self._say_training)
        run.metrics = json.loads((run.evaluation.root / training.METRICS_FILE).read_text(encoding="utf-8"))
        if self.book is not None:
            from signal_engine.workflow.book import train_books

            started = time.perf_counter()
            books = train_books(self._dataset_series(run), self.config, self.quality, run.evaluation.root,
                                orchestration=self.book.orchestration,
                                walk_forwards=self.book.walk_forwards or self._timeframes or None,
                                moe_walk_forward=run.walk_forward, signals=self.book.signals,
                                states=self.book.states,
                                on_model=lambda what: self.console.print(f"  training the {what}"),
                                news=self.news, on_news_training=self._say_training)
            run.books = [b.name for b in books]
            self.console.print(f"  whole book: {', '.join(f'{b.name} ({len(b.models)} models)' for b in books)} "
                               f"({time.perf_counter() - started:.1f} s)")

    def _decide(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path, run: TrainingRun) -> None:
        assert run.evaluation is not None
        verdict = "[green]passed[/green]" if run.evaluation.passed else "[red]failed[/red]"
        served = ", ".join(run.served_symbols) or "none"
        self.console.print(f"  quality gate {verdict}: serves {served}"
                           + (f"; withholds {', '.join(run.withheld)}" if run.withheld else ""))

    def _publish(self, inputs: TrainingInputs, series: Sequence[PriceSeries], root: Path, run: TrainingRun) -> None:
        assert run.evaluation is not None
        path = self.registry.publish(run.evaluation.root, run.version)
        if run.evaluation.passed:
            self.registry.promote(run.version)
        run.publication = Publication(run.version, path, run.evaluation.passed)


def describe(run: TrainingRun) -> dict[str, Any]:
    """A JSON summary of a run (what ``signal-engine train`` prints at the end)."""
    return {
        "version": run.version,
        "passed": run.passed,
        "served_symbols": run.served_symbols,
        "withheld": run.withheld,
        "path": run.publication.path if run.publication else None,
        "promoted": bool(run.publication and run.publication.promoted),
        "seconds": {k: round(v, 2) for k, v in run.seconds.items()},
    }


def train_bundle(series: Sequence[PriceSeries], config: RunConfig, registry_root: Path, *,
                 console: Console | None = None,
                 walk_forward_results: Sequence[SymbolResult] | None = None,
                 book: BookTraining | None = None) -> TrainingRun:
    """Train and publish a bundle of ``series`` into the local registry at ``registry_root`` (what the demo does).

    With ``walk_forward_results`` (the backtest the caller just ran with the same config) the gate and the quality
    gate reuse that walk-forward instead of running it again.
    """
    from signal_engine.adapters.model_registry import LocalModelRegistry

    console = console or Console(stderr=True)
    registry = LocalModelRegistry(registry_root)
    console.print(f"Training the bundle of {', '.join(s.symbol for s in series)} into {registry.root}")
    runner = LocalRunner(registry, config, console=console, walk_forward_results=walk_forward_results, book=book)
    run = runner.run(TrainingInputs(symbols=tuple(s.symbol for s in series), profile=config.profile), series)
    verdict = (f"is CURRENT, serving {', '.join(run.served_symbols)}" if run.passed else
               "failed the quality gate for every symbol: kept for inspection, CURRENT unchanged")
    console.print(f"Model version {run.version} {verdict}")
    for symbol, reason in run.withheld.items():
        console.print(f"  withheld {symbol}: {reason}")
    return run
