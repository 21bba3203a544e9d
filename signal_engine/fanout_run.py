"""A fanned-out backtest kept in an object store: its frozen inputs, its plan of batches, its batches and its merge.

The cloud fan-out (``step_functions/backtest_fanout.py``) runs these steps on Lambda or SageMaker Processing; each
step here reads and writes the run's folder ``<run>/`` of an ``ObjectStore`` (the artifacts bucket under
``backtests/`` in AWS, any folder locally)::

    <run>/inputs/run.json             the request: symbols (in order), profile, config, batches
    <run>/inputs/config.json          the config overrides, as a local run's --config file
    <run>/inputs/prices/<SYMBOL>.csv  each symbol's prices, copied when the run is planned
    <run>/batches.json                one item per batch (the Distributed Map's ItemReader)
    <run>/batches/<I>/                batch I's folder (``signal_engine.fanout``: batch.json last)
    <run>/result/                     the merge: signals, explanations, events, metrics.json, report

The prices are copied once, when the run is planned, so every batch walks forward the same bars even while the
collectors append to the source files; ``fanout.merge_batches`` checks that (the inputs' hash of every batch).
A local ``signal-engine backtest --prices <the same files, in order> --profile P --config config.json`` gives the
merge's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.fanout import BatchSpec, backtest_batch, batch_symbols, merge_batches
from signal_engine.pipeline import check_series, load_all
from signal_engine.ports import ObjectStore

RUN_FORMAT = "signal-engine-backtest-run"
RUN_FORMAT_VERSION = 1
PROFILES = ("quick", "full")
RUNNERS = ("auto", "lambda", "processing")
DEFAULT_BATCH_SYMBOLS = 10
# CPU seconds per symbol-bar of the walk-forward with the default four timeframe models (docs/research/scaling.md:
# 18-20 ms measured); a batch's estimate is its symbol-bars times this.
SECONDS_PER_SYMBOL_BAR = 0.020
# A batch estimated above this runs on SageMaker Processing: Lambda stops a function at 900 s, and the estimate
# is kept well under it for slower data and cold starts.
LAMBDA_BUDGET_SECONDS = 450.0
# The merge runs the books, the metrics' bootstrap intervals and the report over every symbol: 22.6 s of CPU for
# 3 symbols of 2,000 bars with one timeframe model (docs/research/scaling.md), about 4 ms per symbol-bar; it moves
# to Processing past the same budget.
MERGE_SECONDS_PER_SYMBOL_BAR = 0.004
INPUTS, BATCHES, RESULT, ITEMS = "inputs", "batches", "result", "batches.json"
# SageMaker Processing job names: se-bt-<16 hex of the run's SHA-256>-<batch or "merge">-<retry>, valid for SageMaker
# (letters, digits, hyphens; at most 63) whatever the run's (execution's) name.
JOB_PREFIX = "se-bt-"


class FanOutError(ConfigError):
    """A fan-out request or run folder that cannot be run; the message names the field and the fix."""


@dataclass(frozen=True)
class FanOutRequest:
    """What a user gives a cloud backtest: the same settings as a local ``signal-engine backtest``."""

    symbols: tuple[str, ...]
    profile: str = "quick"
    config: Mapping[str, Any] | None = None
    batch_symbols: int = DEFAULT_BATCH_SYMBOLS
    runner: str = "auto"

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> FanOutRequest:
        """The request of an execution input; a ``FanOutError`` naming the field otherwise."""
        known = {"symbols", "profile", "config", "batch_symbols", "runner"}
        unknown = sorted(set(document) - known)
        if unknown:
            raise FanOutError(f"input: unknown field(s) {unknown}; expected {sorted(known)}")
        symbols = document.get("symbols")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s for s in symbols):
            raise FanOutError('symbols: expected a non-empty list of symbol names, e.g. {"symbols": ["SPX", "GOOG"]}')
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        if repeated:
            raise FanOutError(f"symbols: {repeated} given more than once; give each symbol once")
        bad = [s for s in symbols if "/" in s or s.startswith(".")]
        if bad:
            raise FanOutError(f"symbols: {bad} cannot name a price file; a symbol holds no '/' and no leading '.'")
        profile = document.get("profile", "quick")
        if profile not in PROFILES:
            raise FanOutError(f"profile: {profile!r}; expected one of {list(PROFILES)}")
        config = document.get("config") or {}
        if not isinstance(config, dict):
            raise FanOutError("config: expected an object of config overrides (what a local run's --config file "
                              "holds), e.g. {\"trading\": {\"cost_bps\": 2}}")
        size = document.get("batch_symbols", DEFAULT_BATCH_SYMBOLS)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise FanOutError(f"batch_symbols: {size!r}; expected a whole number of symbols per batch, at least 1")
        runner = document.get("runner", "auto")
        if runner not in RUNNERS:
            raise FanOutError(f"runner: {runner!r}; expected one of {list(RUNNERS)} (auto: Lambda for batches "
                              f"estimated under {LAMBDA_BUDGET_SECONDS:.0f} s, else SageMaker Processing)")
        return cls(tuple(symbols), profile, config, size, runner)

    @property
    def batches(self) -> int:
        return math.ceil(len(self.symbols) / self.batch_symbols)


@dataclass(frozen=True)
class BatchItem:
    """One batch of the plan, as the Distributed Map reads it."""

    run: str
    batch: str
    index: int
    count: int
    symbols: list[str]
    symbol_bars: int
    estimated_seconds: float
    runner: str
    inputs: str
    out: str
    job: str


@dataclass(frozen=True)
class RunPlan:
    """The planned run: its batches and where the merge runs."""

    run: str
    items: list[BatchItem]
    merge_runner: str
    merge_estimated_seconds: float

    def summary(self) -> dict[str, Any]:
        return {"run": self.run, "items": f"{self.run}/{ITEMS}", "batches": len(self.items),
                "runners": sorted({i.runner for i in self.items}), "merge_runner": self.merge_runner,
                "merge_job": f"{job_prefix(self.run)}-merge",
                "merge_estimated_seconds": round(self.merge_estimated_seconds, 1),
                "estimated_seconds": round(sum(i.estimated_seconds for i in self.items), 1)}


def plan_run(store: ObjectStore, run: str, request: FanOutRequest, prices: Callable[[str], bytes],
             *, source: Callable[[str], str] = "{}.csv".format, console: Console | None = None) -> RunPlan:
    """Copy each symbol's prices (``prices(symbol)``; ``KeyError`` when there are none) into the run's inputs,
    check the series and the config as a local run does before any walk-forward, and write the plan.
    ``source(symbol)`` names where the prices came from (the reports name it)."""
    _check_run_name(run)
    console = console or Console(stderr=True)
    missing = []
    with tempfile.TemporaryDirectory(prefix="signal-engine-plan-") as scratch:
        folder = Path(scratch)
        for symbol in request.symbols:
            try:
                data = prices(symbol)
            except KeyError:
                missing.append(symbol)
                continue
            (folder / f"{symbol}.csv").write_bytes(data)
        if missing:
            raise FanOutError(f"symbols: no prices for {missing}; collect them first (the bar export writes "
                              "bars/1d/<SYMBOL>.csv) or leave them out")
        (folder / "config.json").write_text(json.dumps(request.config or {}))
        series = load_all([folder / f"{s}.csv" for s in request.symbols], list(request.symbols))
        from signal_engine.cli import load_configs

        config, orchestration = load_configs(request.profile, folder / "config.json")
        check_series(series, config, orchestration)
        for symbol in request.symbols:
            store.put(f"{run}/{INPUTS}/prices/{symbol}.csv", (folder / f"{symbol}.csv").read_bytes(), "text/csv")
    bars = {s.symbol: len(s.bars) for s in series}
    store.put(f"{run}/{INPUTS}/config.json", json.dumps(request.config or {}, indent=1).encode(), "application/json")
    store.put(f"{run}/{INPUTS}/run.json", json.dumps({
        "format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, "run": run, "symbols": list(request.symbols),
        "profile": request.profile, "batches": request.batches, "bars": bars,
        "sources": {symbol: source(symbol) for symbol in request.symbols},
    }, indent=1).encode(), "application/json")
    plan = _plan(run, request, bars)
    store.put(f"{run}/{ITEMS}", json.dumps([asdict(i) for i in plan.items]).encode(), "application/json")
    console.print(f"Planned {run}: {len(request.symbols)} symbol(s) in {len(plan.items)} batch(es) "
                  f"({', '.join(sorted({i.runner for i in plan.items}))}), merge on {plan.merge_runner}")
    return plan


def _plan(run: str, request: FanOutRequest, bars: Mapping[str, int]) -> RunPlan:
    items = []
    for index in range(1, request.batches + 1):
        spec = BatchSpec(index, request.batches)
        symbols = batch_symbols(list(request.symbols), spec)
        symbol_bars = sum(bars[s] for s in symbols)
        estimate = symbol_bars * SECONDS_PER_SYMBOL_BAR
        items.append(BatchItem(
            run=run, batch=str(spec), index=index, count=spec.count, symbols=symbols, symbol_bars=symbol_bars,
            estimated_seconds=round(estimate, 1), runner=_runner(request.runner, estimate),
            inputs=f"{run}/{INPUTS}/", out=f"{run}/{BATCHES}/{index}/", job=f"{job_prefix(run)}-{index}",
        ))
    merge_estimate = sum(bars.values()) * MERGE_SECONDS_PER_SYMBOL_BAR
    return RunPlan(run, items, _runner(request.runner, merge_estimate), merge_estimate)


def job_prefix(run: str) -> str:
    """The run's SageMaker Processing job names start with this (``JOB_PREFIX``)."""
    return JOB_PREFIX + hashlib.sha256(run.encode()).hexdigest()[:16]


def _runner(requested: str, estimate: float) -> str:
    if requested != "auto":
        return requested
    return "lambda" if estimate <= LAMBDA_BUDGET_SECONDS else "processing"


def _check_run_name(run: str) -> None:
    if not run or "/" in run or run.startswith("."):
        raise FanOutError(f"run {run!r}: a run name holds no '/' and no leading '.' (it names a folder)")


@dataclass(frozen=True)
class RunInputs:
    """A run's inputs in a local folder: what ``run_batch_folder`` and ``merge_folder`` take."""

    folder: Path
    document: dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> RunInputs:
        path = folder / "run.json"
        if not path.is_file():
            raise FanOutError(f"{folder}: no run.json; expected the inputs folder of a planned run "
                              f"(<run>/{INPUTS}/)")
        document = json.loads(path.read_text())
        if document.get("format") != RUN_FORMAT or document.get("version") != RUN_FORMAT_VERSION:
            raise FanOutError(f"{path}: format {document.get('format')!r} version {document.get('version')!r}; "
                              f"expected {RUN_FORMAT!r} version {RUN_FORMAT_VERSION}")
        return cls(folder, document)

    @property
    def symbols(self) -> list[str]:
        return list(self.document["symbols"])

    @property
    def paths(self) -> list[Path]:
        return [self.folder / "prices" / f"{s}.csv" for s in self.symbols]

    def series(self) -> list[PriceSeries]:
        """The run's series, each naming the prices it was copied from rather than its copy."""
        sources = self.document["sources"]
        return [replace(s, source=sources[s.symbol]) for s in load_all(self.paths, self.symbols)]

    def configs(self) -> tuple[Any, dict[str, Any]]:
        from signal_engine.cli import load_configs

        return load_configs(self.document["profile"], self.folder / "config.json")


def run_batch_folder(inputs: Path, spec: BatchSpec, out_dir: Path, *, console: Console | None = None,
                     jobs: int | None = 1) -> dict[str, Any]:
    """Batch ``spec`` of the run whose inputs are in ``inputs``, written into ``out_dir``."""
    run = RunInputs.read(inputs)
    if spec.count != run.document["batches"]:
        raise FanOutError(f"--batch {spec}: the run {run.document['run']} was planned in "
                          f"{run.document['batches']} batches")
    config, orchestration = run.configs()
    return backtest_batch(run.series(), out_dir, config, spec, console=console,
                          orchestration=orchestration, jobs=jobs)


def merge_folder(inputs: Path, batch_dirs: Sequence[Path], out_dir: Path, *,
                 console: Console | None = None) -> dict[str, Any]:
    """Merge the run's batch folders into ``out_dir``; returns the portfolio's headline numbers."""
    run = RunInputs.read(inputs)
    config, orchestration = run.configs()
    output = merge_batches(batch_dirs, out_dir, config, console=console, orchestration=orchestration)
    return {"symbols": run.symbols, "files": sorted(p.name for p in out_dir.iterdir() if p.is_file()),
            "metrics": _headline(output.metrics)}


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Each book's symbols and its orchestrated strategy's Sharpe, return and drawdown (the execution's output)."""
    headline = {}
    for name, book in (metrics.get("portfolio") or {}).items():
        orchestrated = book.get("strategies", {}).get("orchestrated", {})
        headline[name] = {"symbols": book.get("symbols"),
                          **{k: orchestrated.get(k) for k in ("sharpe", "total_return", "max_drawdown")}}
    return headline


def download(store: ObjectStore, prefix: str, folder: Path) -> list[Path]:
    """Every object under ``prefix`` into ``folder`` (keys relative to the prefix); the files written."""
    written = []
    for key in store.keys(prefix):
        relative = key[len(prefix):].lstrip("/")
        if not relative or relative.endswith("/"):
            continue
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get(key))
        written.append(path)
    return written


def upload(store: ObjectStore, folder: Path, prefix: str, *, last: str | None = None) -> int:
    """Every file under ``folder`` to ``prefix``; the file named ``last`` (the batch's ``batch.json``) goes last,
    so a batch whose upload stops midway has no manifest and is never merged."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == last)
    for path in files:
        store.put(prefix + path.relative_to(folder).as_posix(), path.read_bytes())
    return len(files)


def stored_batch(store: ObjectStore, item: Mapping[str, Any], workdir: Path, *,
                 console: Console | None = None) -> dict[str, Any]:
    """A planned batch (``BatchItem`` as a mapping) from and to the store: what the batch Lambda runs."""
    spec = BatchSpec(int(item["index"]), int(item["count"]))
    inputs, out = workdir / "inputs", workdir / "batch"
    download(store, str(item["inputs"]), inputs)
    manifest = run_batch_folder(inputs, spec, out, console=console)
    upload(store, out, str(item["out"]), last="batch.json")
    return {"batch": str(spec), "symbols": [e["symbol"] for e in manifest["symbols"]],
            "seconds": round(float(manifest["seconds"]), 1)}


def stored_merge(store: ObjectStore, run: str, workdir: Path, *, console: Console | None = None) -> dict[str, Any]:
    """Merge the run's stored batches into ``<run>/result/``: what the merge Lambda runs."""
    _check_run_name(run)
    inputs = workdir / "inputs"
    download(store, f"{run}/{INPUTS}/", inputs)
    count = int(RunInputs.read(inputs).document["batches"])
    folders = []
    for index in range(1, count + 1):
        folder = workdir / BATCHES / str(index)
        download(store, f"{run}/{BATCHES}/{index}/", folder)
        folders.append(folder)
    out = workdir / RESULT
    summary = merge_folder(inputs, folders, out, console=console)
    upload(store, out, f"{run}/{RESULT}/")
    return {"run": run, "result": f"{run}/{RESULT}/", **summary}


def failed_batches(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The failures among the Distributed Map's results, one line each: batch, error, cause."""
    lines = []
    for result in results:
        if result.get("failed"):
            cause = str(result.get("cause") or "")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                cause = json.loads(cause).get("errorMessage", cause)
            lines.append(f"batch {result.get('batch')}: {result.get('error')}: {cause}")
    return lines
