"""The backtest use case: load price files, walk forward through each, write signals, metrics, report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import InputError
from signal_engine.evaluation.backtest import SIGNAL_COLUMNS, SymbolResult, blocks_for, check_length, run_symbol
from signal_engine.report import render_report

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


def load_all(paths: Sequence[Path], symbols: Sequence[str] | None) -> list[PriceSeries]:
    """Load and validate every file before any long work starts."""
    if symbols and len(symbols) != len(paths):
        raise InputError("--symbol", f"given {len(symbols)} times for {len(paths)} --prices files; give one per file")
    loaded = [load_prices(p, symbols[i] if symbols else None) for i, p in enumerate(paths)]
    seen: dict[str, str] = {}
    for series in loaded:
        if series.symbol in seen:
            raise InputError(series.source, f"symbol {series.symbol} is also taken by {seen[series.symbol]}; "
                             "rename the file or pass --symbol for each file")
        seen[series.symbol] = series.source
    return loaded


def run_backtest(
    paths: Sequence[Path],
    out_dir: Path,
    config: RunConfig,
    *,
    symbols: Sequence[str] | None = None,
    console: Console | None = None,
) -> BacktestOutput:
    """Walk forward through every price file and write ``signals.csv``, ``metrics.json``, ``report.html``."""
    return backtest_series(load_all(paths, symbols), out_dir, config, console=console)


def backtest_series(
    series: Sequence[PriceSeries], out_dir: Path, config: RunConfig, *, console: Console | None = None
) -> BacktestOutput:
    """The backtest of already loaded series (from files or from the price store)."""
    console = console or Console(stderr=True)
    for s in series:
        check_length(s, config)
    results = _walk_forward(list(series), config, console)
    out_dir.mkdir(parents=True, exist_ok=True)
    signals_path = out_dir / "signals.csv"
    signals = pd.concat([r.signals for r in results], ignore_index=True).loc[:, list(SIGNAL_COLUMNS)]
    signals.to_csv(signals_path, index=False, float_format="%.10g", lineterminator="\n")
    explanations = pd.concat([r.explanations for r in results], ignore_index=True)
    explanations.to_csv(out_dir / "explanations.csv", index=False, float_format="%.10g", lineterminator="\n")
    metrics = build_metrics(results, config)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    report_path = out_dir / "report.html"
    report_path.write_text(render_report(results, metrics), encoding="utf-8")
    return BacktestOutput(signals_path, metrics_path, report_path, metrics, results)


def _walk_forward(series: list[PriceSeries], config: RunConfig, console: Console) -> list[SymbolResult]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn())
    results = []
    with Progress(*columns, console=console, transient=False) as progress:
        for s in series:
            task = progress.add_task(f"{s.symbol:>8} walk-forward", total=blocks_for(s, config), unit="refits")
            result = run_symbol(s, config, on_block=partial(progress.advance, task))
            if config.suite.enabled:
                result.experts = _expert_suite(s, config, progress)
            results.append(result)
    return results


def _expert_suite(series: PriceSeries, config: RunConfig, progress: Progress) -> dict[str, Any]:
    from signal_engine.evaluation.expert_suite import run_expert_suite

    task = progress.add_task(f"{series.symbol:>8} expert suite", total=None, unit="models")
    suite = run_expert_suite(series, config, on_model=lambda _name: progress.advance(task))
    progress.update(task, total=progress.tasks[task].completed)
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
    """The ``metrics.json`` document of DESIGN.md; several symbols are summarised by their mean."""
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
            merged[model][key] = float(values.sum()) if total else float(np.nanmean(values))
    return merged


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
