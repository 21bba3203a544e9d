"""A backtest fanned out over batches of symbols, then merged into the outputs of one local backtest.

Every batch is given the run's whole input (the same price files and config as ``run_backtest``) and walks
forward its own share of the symbols: the symbols sorted by name and dealt round robin, so batch ``I`` of
``N`` (from 1) takes the sorted symbols at positions ``I - 1``, ``I - 1 + N``, ``I - 1 + 2N``, ... . It writes
each symbol's bars and walk-forward results (the MoE's and every timeframe model's) into its folder
(``signal_engine.evaluation.result_files``) and, last, ``batch.json``, which names the run it belongs to: the
hash of its config, the hash of every input series, the symbols in input order.

The merge checks that its batches are the ``N`` batches of one run and of the config it is given, reads the
results back in the input order and runs everything that spans symbols (``pipeline.write_backtest``: the
books, the metrics, the report), so its files are those of ``run_backtest`` on the same input.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from signal_engine import __version__
from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.evaluation.backtest import SymbolResult
from signal_engine.evaluation.result_files import dump_json, read_result, read_series, write_result, write_series
from signal_engine.json_values import json_safe
from signal_engine.pipeline import BacktestOutput, check_series, load_all, walk_forward, write_backtest
from signal_engine.ports import RiskLog

BATCH_FORMAT = "signal-engine-backtest-batch"
BATCH_FORMAT_VERSION = 1
MANIFEST = "batch.json"
MOE_FOLDER = "moe"


class BatchError(SignalEngineError):
    """Batches that are not the complete set of one run of the given config."""


@dataclass(frozen=True)
class BatchSpec:
    """Batch ``index`` (from 1) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> BatchSpec:
        """``I/N`` as given to ``--batch``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise ConfigError(f"--batch {text!r}: expected I/N with 1 <= I <= N, e.g. 2/5")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def batch_symbols(symbols: Sequence[str], spec: BatchSpec) -> list[str]:
    """The symbols of batch ``spec``: ``symbols`` sorted, dealt round robin; the result in sorted order."""
    if spec.count > len(symbols):
        raise ConfigError(f"--batch {spec}: the run has {len(symbols)} symbol(s), so at most {len(symbols)} batches")
    return sorted(symbols)[spec.index - 1 :: spec.count]


def config_hash(config: RunConfig, orchestration: Mapping[str, Any] | None) -> str:
    """SHA-256 of the run config and the orchestration settings (what decides every number of a backtest)."""
    document = json_safe({"config": config.to_dict(), "orchestration": dict(orchestration or {})})
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def inputs_hash(series: Sequence[PriceSeries]) -> str:
    """SHA-256 of every series' symbol and bars, in input order (not of the file paths)."""
    digest = hashlib.sha256()
    for s in series:
        digest.update(s.symbol.encode() + b"\0")
        digest.update(pd.util.hash_pandas_object(s.bars, index=True).to_numpy().tobytes())
        digest.update(",".join(map(str, s.bars.columns)).encode() + b"\0")
    return digest.hexdigest()


def run_backtest_batch(
    paths: Sequence[Path],
    out_dir: Path,
    config: RunConfig,
    spec: BatchSpec,
    *,
    symbols: Sequence[str] | None = None,
    console: Console | None = None,
    orchestration: Mapping[str, Any] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Walk forward batch ``spec``'s symbols of the price files (every file is loaded and checked, as
    ``run_backtest`` does) and write their results into ``out_dir``; returns what ``batch.json`` holds."""
    return backtest_batch(load_all(paths, symbols), out_dir, config, spec, console=console,
                          orchestration=orchestration, jobs=jobs)


def backtest_batch(
    series: Sequence[PriceSeries],
    out_dir: Path,
    config: RunConfig,
    spec: BatchSpec,
    *,
    console: Console | None = None,
    orchestration: Mapping[str, Any] | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """``run_backtest_batch`` of already loaded series."""
    console = console or Console(stderr=True)
    check_series(series, config, orchestration)
    chosen = set(batch_symbols([s.symbol for s in series], spec))
    members = [s for s in series if s.symbol in chosen]
    started = time.perf_counter()
    results, timeframes = walk_forward(members, config, console, orchestration, jobs)
    seconds = time.perf_counter() - started
    manifest = write_batch(out_dir, series, members, results, timeframes, config, spec,
                           orchestration=orchestration, seconds=seconds)
    console.print(f"Batch {spec}: walked forward {', '.join(e['symbol'] for e in manifest['symbols'])} in "
                  f"{seconds:.0f} s; wrote {out_dir}")
    return manifest


def write_batch(
    out_dir: Path,
    universe: Sequence[PriceSeries],
    members: Sequence[PriceSeries],
    results: Sequence[SymbolResult],
    timeframes: Mapping[str, Mapping[str, SymbolResult]],
    config: RunConfig,
    spec: BatchSpec,
    *,
    orchestration: Mapping[str, Any] | None = None,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """Batch ``spec`` of the run of ``config`` over ``universe``: the walk-forward ``results`` (and
    ``timeframes``) of its ``members``, then ``batch.json``, last (a folder without it is never read)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    entries = [_write_symbol(out_dir, k, s, result, timeframes.get(s.symbol, {}))
               for k, (s, result) in enumerate(zip(members, results, strict=True), start=1)]
    manifest = {
        "format": BATCH_FORMAT, "version": BATCH_FORMAT_VERSION, "signal_engine": __version__,
        "batch": spec.index, "batches": spec.count,
        "config_hash": config_hash(config, orchestration), "inputs_hash": inputs_hash(universe),
        "universe": [s.symbol for s in universe], "symbols": entries, "seconds": seconds,
    }
    (out_dir / MANIFEST).write_text(dump_json(manifest))
    return manifest


def _write_symbol(out_dir: Path, k: int, series: PriceSeries, result: SymbolResult,
                  timeframes: Mapping[str, SymbolResult]) -> dict[str, Any]:
    folder = f"symbol-{k}"
    write_series(series, out_dir / folder)
    write_result(result, out_dir / folder / MOE_FOLDER)
    models = {}
    for name, run in timeframes.items():
        models[name] = MOE_FOLDER if run is result else f"timeframe-{name}"
        if run is not result:
            write_result(run, out_dir / folder / models[name])
    return {"symbol": series.symbol, "folder": folder, "timeframes": models}


@dataclass(frozen=True)
class BatchFolder:
    """A finished batch's folder and its ``batch.json``."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.folder} (batch {self.manifest['batch']}/{self.manifest['batches']})"


def merge_batches(
    folders: Sequence[Path],
    out_dir: Path,
    config: RunConfig,
    *,
    console: Console | None = None,
    orchestration: Mapping[str, Any] | None = None,
    risk_log: RiskLog | None = None,
) -> BacktestOutput:
    """The outputs of ``run_backtest`` (signals, explanations, events, metrics, report) from the batch folders of
    one run of ``config``; refuses (``BatchError``, naming the batch) a batch of another config, code version or
    input, a batch or symbol given twice, and a missing batch."""
    console = console or Console(stderr=True)
    series, results, timeframes = read_batches(folders, config, orchestration)
    console.print(f"Read {len(series)} symbol(s) from {len(folders)} batch(es)")
    return write_backtest(series, results, timeframes, out_dir, config, console=console,
                          orchestration=orchestration, risk_log=risk_log)


def read_batches(
    folders: Sequence[Path],
    config: RunConfig,
    orchestration: Mapping[str, Any] | None = None,
) -> tuple[list[PriceSeries], list[SymbolResult], dict[str, dict[str, SymbolResult]]]:
    """The series and walk-forward results of every batch of one run of ``config``, in the run's input order
    (``BatchError`` as ``merge_batches`` says)."""
    batches = check_batches([read_batch(f) for f in folders], config_hash(config, orchestration))
    universe: list[str] = batches[0].manifest["universe"]
    where = {e["symbol"]: (b.folder, e) for b in batches for e in b.manifest["symbols"]}
    series, results, timeframes = [], [], {}
    for symbol in universe:
        folder, entry = where[symbol]
        path = folder / entry["folder"]
        series.append(read_series(path))
        runs: dict[str, SymbolResult] = {MOE_FOLDER: read_result(path / MOE_FOLDER)}
        for model_folder in sorted(set(entry["timeframes"].values()) - {MOE_FOLDER}):
            runs[model_folder] = read_result(path / model_folder)
        results.append(runs[MOE_FOLDER])
        timeframes[symbol] = {name: runs[f] for name, f in entry["timeframes"].items()}
    return series, results, timeframes


def read_batch(folder: Path) -> BatchFolder:
    """The batch in ``folder``; a ``BatchError`` when it holds no finished batch of this format."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BatchError(f"{folder}: no {MANIFEST}; not a finished batch of `signal-engine backtest-batch` (it failed, "
                         "is still running or is another folder)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != BATCH_FORMAT or manifest.get("version") != BATCH_FORMAT_VERSION:
        raise BatchError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; expected "
                         f"{BATCH_FORMAT!r} version {BATCH_FORMAT_VERSION}")
    return BatchFolder(folder, manifest)


def check_batches(batches: Sequence[BatchFolder], expected_config: str) -> list[BatchFolder]:
    """``batches`` ordered by number, when they are every batch of one run of the config hashed
    ``expected_config``; else a ``BatchError`` naming the batch at fault."""
    if not batches:
        raise BatchError("no batch folders given")
    first = batches[0].manifest
    for batch in batches:
        m = batch.manifest
        if m["config_hash"] != expected_config:
            raise BatchError(f"{batch.name}: run with another config (hash {m['config_hash'][:12]}) than the one given "
                             f"(hash {expected_config[:12]}); give the merge the batches' --profile and --config")
        if m["signal_engine"] != __version__:
            raise BatchError(f"{batch.name}: written by signal-engine {m['signal_engine']}, not {__version__}")
        for key, what in (("batches", "number of batches"), ("universe", "symbols"), ("inputs_hash", "prices")):
            if m[key] != first[key]:
                raise BatchError(f"{batch.name}: another run's batch (its {what} differ from those of "
                                 f"{batches[0].name})")
    by_number: dict[int, BatchFolder] = {}
    for batch in batches:
        other = by_number.setdefault(batch.manifest["batch"], batch)
        if other is not batch:
            raise BatchError(f"{batch.name}: batch {batch.manifest['batch']}/{first['batches']} given twice, also "
                             f"as {other.folder}")
    count = first["batches"]
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in by_number]
    if missing:
        raise BatchError(f"batch {', '.join(missing)} missing: given {', '.join(b.name for b in batches)}")
    owner: dict[str, BatchFolder] = {}
    for number in sorted(by_number):
        batch = by_number[number]
        symbols = sorted(e["symbol"] for e in batch.manifest["symbols"])
        for symbol in symbols:
            other = owner.setdefault(symbol, batch)
            if other is not batch:
                raise BatchError(f"{batch.name}: symbol {symbol} is also in {other.name}")
        expected = batch_symbols(first["universe"], BatchSpec(number, first["batches"]))
        if symbols != expected:
            raise BatchError(f"{batch.name}: holds {', '.join(symbols)}; batch {number}/{first['batches']} of this "
                             f"run is {', '.join(expected)}")
    return [by_number[i] for i in sorted(by_number)]
