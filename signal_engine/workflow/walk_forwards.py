"""The walk-forwards a training run learns from: the MoE's (its gate's training rows and the quality gate's metrics)
and, for the whole book, every timeframe model's.

They are the backtest's walk-forwards of the same series and config, so a training run either walks forward
itself, each symbol's MoE and timeframe models as tasks of their own over every core (``run_walk_forwards``), or
reads them from folders in the batch format of ``signal-engine backtest-batch`` (``read_walk_forwards``): the
batches of a backtest fanned out over many machines, or the folder the gate job leaves for the evaluate job
(``write_walk_forwards``), so the run walks forward once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SymbolResult
from signal_engine.fanout import MANIFEST, BatchError, BatchSpec, inputs_hash, read_batches, write_batch
from signal_engine.workflow.tuning import TuningRun

WALK_FORWARD_FOLDER = "walkforward"


@dataclass(frozen=True)
class WalkForwards:
    """The MoE's walk-forward of each series (in the series' order) and ``timeframes[symbol][model]``: each
    timeframe model's (empty when the book is not trained)."""

    moe: list[SymbolResult]
    timeframes: dict[str, dict[str, SymbolResult]]


def run_walk_forwards(series: Sequence[PriceSeries], config: RunConfig, *, orchestration: Mapping[str, Any] | None,
                      book: bool, jobs: int | None, console: Console | None = None,
                      trend_proba: Mapping[str, np.ndarray] | None = None,
                      tuning: TuningRun | None = None) -> WalkForwards:
    """Walk forward the MoE of every series and, with ``book``, every timeframe model of the book over ``jobs``
    processes (None: ``$SIGNAL_ENGINE_JOBS`` or every core); the same bytes for any number of them. The expert
    suite is not run: training never reads it. ``trend_proba``: the pooled trend expert's out-of-sample
    probabilities by symbol (``moe.experts.trend: trend_pooled``; the trend artefact's ``pooled_trend.npz``).
    ``tuning`` (enabled: ``train --tune``): every refit of the MoE's trend expert is tuned by a nested Optuna study
    first, as its final fit is, so the metrics judge what is served."""
    from signal_engine.pipeline import walk_forward

    quiet = replace(config, suite=replace(config.suite, enabled=False))
    moe, timeframes = walk_forward(list(series), quiet, console or Console(stderr=True), orchestration, jobs,
                                   timeframes=book, trend_proba=trend_proba,
                                   tuning=tuning if tuning is not None and tuning.enabled else None)
    return WalkForwards(moe, timeframes)


def write_walk_forwards(walk_forwards: WalkForwards, series: Sequence[PriceSeries], config: RunConfig,
                        orchestration: Mapping[str, Any] | None, out: Path) -> Path:
    """``walk_forwards`` of ``series`` as the single batch of one run of ``config`` in ``out``; returns ``out``."""
    write_batch(out, series, series, walk_forwards.moe, walk_forwards.timeframes, config, BatchSpec(1, 1),
                orchestration=orchestration)
    return out


def batch_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a batch's ``batch.json``, in path order."""
    return sorted(path.parent for path in root.rglob(MANIFEST))


def read_walk_forwards(root: Path, series: Sequence[PriceSeries], config: RunConfig,
                       orchestration: Mapping[str, Any] | None) -> WalkForwards:
    """The walk-forwards of ``series`` under ``config`` from the batch folders under ``root``.

    ``BatchError`` naming the fault when they are not every batch of one run of this config (as the merge
    refuses them) or not of these series: the same symbols, in the same order, with the same bars.
    """
    folders = batch_folders(root)
    if not folders:
        raise BatchError(f"{root}: no batch folder ({MANIFEST}); expected the batches of `signal-engine "
                         "backtest-batch` or of the train_gate job")
    stored, moe, timeframes = read_batches(folders, config, orchestration)
    wanted, found = [s.symbol for s in series], [s.symbol for s in stored]
    if found != wanted:
        raise BatchError(f"{root}: the batches walked forward {', '.join(found)}; this run trains "
                         f"{', '.join(wanted)}; run the backtest on the training run's symbols, in its order")
    if inputs_hash(stored) != inputs_hash(series):
        raise BatchError(f"{root}: the batches walked forward other bars than this run's dataset (another window "
                         "or a later collection); run them on the dataset the training run prepares")
    return WalkForwards(moe, timeframes)
