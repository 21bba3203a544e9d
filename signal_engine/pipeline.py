"""The backtest use case: load price files, walk forward through each, orchestrate them into books, write
signals, events, metrics and the report."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.console import Console

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries, load_all
from signal_engine.evaluation.backtest import (
    SymbolResult,
    blocks_for,
    run_symbol,
    series_frame,
    signal_columns,
)
from signal_engine.evaluation.jobs import Task, resolve_jobs, run_tasks
from signal_engine.evaluation.planning import check_series, timeframe_plan
from signal_engine.evaluation.portfolio import (
    PortfolioRun,
    build_books,
    portfolio_section,
    timeframe_run_config,
)
from signal_engine.json_values import json_safe
from signal_engine.orchestration.live import seed_book
from signal_engine.orchestration.state import BookStateError
from signal_engine.ports import BookStore, RiskLog
from signal_engine.report import render_report
from signal_engine.storage.records import RiskEvent

if TYPE_CHECKING:
    from signal_engine.workflow.tuning import TuningRun

SCHEMA_VERSION = 1
SECTIONS = ("trend", "volatility", "levels", "strategies")


@dataclass(frozen=True)
class BacktestOutput:
    """Where a backtest wrote its files, and what it measured."""

    signals_path: Path
    metrics_path: Path
    report_path: Path
    metrics: dict[str, Any]
    results: list[SymbolResult]
    events_path: Path | None = None
    portfolio: PortfolioRun | None = None


def run_backtest(
    paths: Sequence[Path],
    out_dir: Path,
    config: RunConfig,
    *,
    symbols: Sequence[str] | None = None,
    console: Console | None = None,
    orchestration: Mapping[str, Any] | None = None,
    risk_log: RiskLog | None = None,
    jobs: int | None = None,
) -> BacktestOutput:
    """Walk forward through every price file, orchestrate them, write ``signals.csv``, ``metrics.json``, ..."""
    return backtest_series(load_all(paths, symbols), out_dir, config, console=console, orchestration=orchestration,
                           risk_log=risk_log, jobs=jobs)


def backtest_series(
    series: Sequence[PriceSeries],
    out_dir: Path,
    config: RunConfig,
    *,
    console: Console | None = None,
    orchestration: Mapping[str, Any] | None = None,
    risk_log: RiskLog | None = None,
    jobs: int | None = None,
) -> BacktestOutput:
    """The backtest of already loaded series (from files or from the price store).

    Every symbol's timeframe models are walked forward, then the symbols of each bar frequency are
    orchestrated as one book (``signal_engine.evaluation.portfolio``); ``position`` in ``signals.csv`` is the
    book's position in the symbol as a fraction of the book's capital. ``orchestration`` overrides
    ``OrchestrationConfig`` settings (the ``orchestration`` section of a config file); ``risk_log`` receives
    every orchestration event (also written to ``events.csv``); ``jobs`` processes share the walk-forward
    (None: every core; the result is the same bytes for any number).
    """
    console = console or Console(stderr=True)
    check_series(series, config, orchestration)
    results, timeframes = walk_forward(list(series), config, console, orchestration, jobs)
    return write_backtest(series, results, timeframes, out_dir, config, console=console,
                          orchestration=orchestration, risk_log=risk_log)


def write_backtest(
    series: Sequence[PriceSeries],
    results: list[SymbolResult],
    timeframes: dict[str, dict[str, SymbolResult]],
    out_dir: Path,
    config: RunConfig,
    *,
    console: Console,
    orchestration: Mapping[str, Any] | None = None,
    risk_log: RiskLog | None = None,
) -> BacktestOutput:
    """Everything of a backtest that spans symbols, from the walk-forward's per-symbol results: orchestrate the
    books, then write signals, explanations, events, metrics and the report.

    ``results`` and ``timeframes`` are ``walk_forward``'s, in the order of ``series`` (the merge of a fanned-out
    backtest, ``signal_engine.fanout``, reads them back from its batches).
    """
    started = time.perf_counter()
    run = build_books(series, results, timeframes, config, orchestration)
    console.print(f"Orchestrated {len(run.books)} book(s) with their bootstrap intervals in "
                  f"{time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    signals_path = out_dir / "signals.csv"
    signals = pd.concat([r.signals for r in results], ignore_index=True).loc[:, list(signal_columns(config))]
    signals.to_csv(signals_path, index=False, float_format="%.10g", lineterminator="\n")
    explanations = pd.concat([r.explanations for r in results], ignore_index=True)
    explanations.to_csv(out_dir / "explanations.csv", index=False, float_format="%.10g", lineterminator="\n")
    events = run.events
    events_path = out_dir / "events.csv"
    events.to_csv(events_path, index=False, float_format="%.10g", lineterminator="\n")
    if risk_log is not None:
        persist_events(risk_log, events)
    metrics = build_metrics(results, config)
    metrics["portfolio"] = portfolio_section(run)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n")
    report_path = out_dir / "report.html"
    report_path.write_text(render_report(results, metrics, books=run.books), encoding="utf-8")
    console.print(f"Wrote signals, events, explanations, metrics and the report in "
                  f"{time.perf_counter() - started:.0f} s")
    return BacktestOutput(signals_path, metrics_path, report_path, metrics, results, events_path, run)


def risk_events(events: pd.DataFrame) -> list[RiskEvent]:
    """The orchestration event table as ``RiskEvent`` rows for the storage layer's risk log.

    ``kind`` is the event kind; ``detail`` keeps the book, component, rule, model, value and threshold
    beside the event's own numbers, so no column of ``events.csv`` is lost.
    """
    rows = []
    for event in events.to_dict("records"):
        numbers = {"value": float(event["value"]), "threshold": float(event["threshold"])}
        detail = {
            "book": str(event["book"]), "component": str(event["component"]), "rule": str(event["rule"]),
            "model": str(event["model"]), **{k: (v if np.isfinite(v) else None) for k, v in numbers.items()},
            **json.loads(str(event["detail"])),
        }
        occurred = pd.Timestamp(event["timestamp"]).to_pydatetime()
        rows.append(RiskEvent(symbol=str(event["symbol"]), kind=str(event["kind"]), detail=detail,
                              occurred_at=occurred))
    return rows


def persist_events(risk_log: RiskLog, events: pd.DataFrame) -> int:
    """Store the events the risk log does not hold yet (a re-run stores nothing twice); returns how many were new."""
    rows = risk_events(events)
    stored = {_event_key(e) for symbol in sorted({r.symbol for r in rows}) for e in risk_log.risk_events(symbol)}
    new = [r for r in rows if _event_key(r) not in stored]
    risk_log.record_risk_events(new)
    return len(new)


def seed_live_books(books: BookStore, run: PortfolioRun) -> list[str]:
    """Store each book's final state as its live book (``seed_book``); one line per book saying what was done.

    A store that already holds a book of that name with another state keeps it (a stored book is never
    overwritten): the line says so and how to replace it.
    """
    lines = []
    for book in run.books:
        state = book.result.final_state
        if state is None:
            continue
        held = ", ".join(f"{s} {p:+.3f}" for s, p in zip(state.symbols, state.final.sum(axis=0), strict=True))
        try:
            stored = seed_book(books, book.name, state, book.result.last_events)
        except BookStateError as exc:
            lines.append(f"kept the stored live book {book.name!r}: {exc}")
            continue
        verb = "stored" if stored else "already held"
        lines.append(f"{verb} live book {book.name!r} at {state.bar_time}: {held}")
    return lines


def _event_key(event: RiskEvent) -> tuple[str, str, str, str]:
    when = event.occurred_at.replace(tzinfo=None, microsecond=0).isoformat()
    return event.symbol, event.kind, when, json.dumps(event.detail, sort_keys=True)


def walk_forward(
    series: list[PriceSeries],
    config: RunConfig,
    console: Console,
    orchestration: Mapping[str, Any] | None,
    jobs: int | None,
    *,
    timeframes: bool = True,
    trend_proba: Mapping[str, np.ndarray] | None = None,
    tuning: TuningRun | None = None,
) -> tuple[list[SymbolResult], dict[str, dict[str, SymbolResult]]]:
    """Every symbol's MoE, timeframe models and expert suite, as independent tasks over ``jobs`` processes.

    Each symbol's features are computed once here and shared by its tasks; a timeframe model with the MoE's
    horizon is the MoE's own run. ``timeframes`` False: the MoE (and the suite) only, and no timeframe models.
    ``trend_proba``: by symbol, the pooled trend expert's out-of-sample probabilities, which the MoE's walk-forward
    of that symbol reads as its trend expert's (``run_symbol``). ``tuning`` (``train --tune``): every refit of the
    MoE's trend expert is tuned first (``run_symbol``); the timeframe models are not.
    """
    tasks: list[Task] = []
    given = trend_proba or {}
    for s in series:
        features = series_frame(s)
        blocks = blocks_for(s, config)
        tasks.append(Task((s.symbol, MOE_TASK), f"{s.symbol} MoE walk-forward", blocks,
                          partial(run_symbol, s, config, features=features, trend_proba=given.get(s.symbol),
                                  tuning=tuning)))
        for spec in timeframe_plan(s, config, orchestration) if timeframes else ():
            if spec.horizon != config.labels.horizon:
                tasks.append(Task((s.symbol, spec.name), f"{s.symbol} {spec.name} timeframe model", blocks,
                                  partial(run_symbol, s, timeframe_run_config(config, spec), features=features)))
        if config.suite.enabled:
            tasks.append(Task((s.symbol, SUITE_TASK), f"{s.symbol} expert suite", SUITE_WEIGHT * blocks,
                              partial(expert_suite_metrics, s, config, features)))
    done = run_tasks(tasks, resolve_jobs(jobs), console, "Walk-forward")
    results, models = [], {}
    for s in series:
        result = done[(s.symbol, MOE_TASK)]
        models[s.symbol] = {
            spec.name: result if spec.horizon == config.labels.horizon else done[(s.symbol, spec.name)]
            for spec in (timeframe_plan(s, config, orchestration) if timeframes else ())
        }
        if config.suite.enabled:
            result.experts = done[(s.symbol, SUITE_TASK)]
        results.append(result)
    return results, models


MOE_TASK, SUITE_TASK = "moe", "suite"
# The expert suite walks about this many refits of models per MoE refit (for the estimate of the time left).
SUITE_WEIGHT = 3


def expert_suite_metrics(
    series: PriceSeries, config: RunConfig, features: pd.DataFrame | None = None
) -> dict[str, Any]:
    """The expert suite of ``series`` as the ``experts`` section of its metrics."""
    from signal_engine.evaluation.expert_suite import run_expert_suite

    suite = run_expert_suite(series, config, features=features)
    return {
        **suite.metrics,
        "baselines": suite.baselines,
        "archetype": suite.archetype,
        "fingerprint": suite.fingerprint,
        "seconds": suite.seconds,
        "refits": suite.refits,
        "skipped": suite.skipped,
    }


def build_metrics(results: list[SymbolResult], config: RunConfig) -> dict[str, Any]:
    """The ``metrics.json`` document (docs/files.md); several symbols are summarised by their mean."""
    wf = config.walk_forward
    summary = {section: _mean_over_symbols([r.metrics[section] for r in results]) for section in SECTIONS}
    summary["confidence"] = _mean_over_symbols(
        [{m: {k: v for k, v in t.items() if k != "bins"} for m, t in r.metrics["confidence"].items()} for r in results]
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "data": {
            "profile": config.profile,
            "symbols": {r.symbol: r.data for r in results},
            "config": config.to_dict(),
        },
        "evaluation": {
            "scheme": "walk_forward",
            "test_start": min(r.data["test_start"] for r in results),
            "cost_bps": config.trading.cost_bps,
            "initial_window": wf.initial_window,
            "validation_bars": wf.validation_bars,
            "refit_every": wf.refit_every,
            "embargo": wf.embargo,
            "horizon": config.labels.horizon,
            "summary": "single symbol" if len(results) == 1 else f"mean over {len(results)} symbols",
        },
        **summary,
        **({"experts": _experts_summary(results)} if results[0].experts else {}),
        "per_symbol": {
            r.symbol: {**r.metrics, "diagnostics": r.diagnostics, **({"experts": r.experts} if r.experts else {})}
            for r in results
        },
    }


EXPERT_SECTIONS = ("trend", "volatility", "levels")


def _experts_summary(results: list[SymbolResult]) -> dict[str, Any]:
    """Each expert's metrics next to its baseline's (mean over symbols when there are several)."""
    summary: dict[str, Any] = {
        section: _mean_over_symbols([r.experts[section] for r in results]) for section in EXPERT_SECTIONS
    }
    summary["baselines"] = results[0].experts["baselines"]
    summary["archetypes"] = {r.symbol: r.experts["archetype"] for r in results}
    return summary


def _mean_over_symbols(tables: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    if len(tables) == 1:
        return tables[0]
    merged: dict[str, dict[str, float]] = {}
    for model in tables[0]:
        if not all(model in t for t in tables):
            continue
        merged[model] = {}
        for key in tables[0][model]:
            values = np.array([t[model].get(key, np.nan) for t in tables], dtype=float)
            total = key in ("rows", "trades")
            if total:
                merged[model][key] = float(values.sum())
            else:  # NaN where no symbol has the number (a metric undefined on every symbol), without a warning
                merged[model][key] = float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")
    return merged
