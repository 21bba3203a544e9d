"""The live book step (``signal-engine step``, the book-step Lambda) for hundreds of symbols against the Lambda's
memory and timeout.

    .venv/bin/python benchmarks/bench_book_step_scale.py [--symbols 1 50 500] [--bars 1 3] [--no-endpoint]

A whole-book version is trained on the first ``--train-bars`` real GOOG bars (``signal-engine train`` with the
two-model book of ``tests/fixtures/configs.py``: the MoE's own ``short`` model and a ``medium`` model of its own,
seconds), then aliased to ``--symbols`` names (``S0000`` ...): every timeframe model's bundle registers GOOG's fitted
experts again under each name (the same model files, as ``bench_batch_scale.py`` does), ``book.json`` lists the
names with GOOG's cost and timeframe, and the book's seed is GOOG's seed state repeated per symbol. Each symbol's
stored bars are GOOG's (SQLite), the book is stored at its seed (the last training bar) and the step then steps
``--bars`` new bars: 1 is the daily case, the step after each collection. So each symbol costs what a symbol of its
own would, without fitting hundreds of models.

Each case runs in a fresh Python process, as a cold Lambda does: its peak resident memory (``VmHWM``, the
imports and the loaded bundle included; also shown before the step, after the imports) is what the function's
memory must hold; wall and CPU time (user + system) are the step's own. Two expert clients: the experts in
process (``step_books``' default, what the container Lambda runs) and ``SageMakerExperts`` over a real boto3
``sagemaker-runtime`` client answered by the inference servers (``sagemaker_jobs/serve.py``, one per model bundle)
on loopback in this, the parent, process (``tests/sagemaker_endpoints.py``), so the case's CPU and memory are the
caller's. Baseline: one symbol, one bar, experts in process, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batch_scale import alias_bundle_files  # noqa: E402

from signal_engine.orchestration.state import BookState  # noqa: E402

STATE_MATRICES = ("scheduled", "final", "undefended", "unmanaged", "scores", "pending_models")
STATE_VECTORS = ("harmony", "vol", "pending_account", "pending_undefended", "pending_coordinated")


def aliased_state(state: BookState, symbols: list[str]) -> BookState:
    """A one-symbol book state repeated for ``symbols``: every per-symbol array, cost, window column, online learner
    and short limit of the original symbol, once per name."""
    if len(state.symbols) != 1:
        raise ValueError(f"expected a one-symbol state, got {list(state.symbols)}")
    original, n = state.symbols[0], len(symbols)
    holding = state.holding
    assets = state.correlation.assets
    learners = {key: value for key, value in state.model_state.items() if not key.endswith(f"/{original}")}
    for key, value in state.model_state.items():
        if key.endswith(f"/{original}"):
            learners.update({f"{key.rsplit('/', 1)[0]}/{s}": value for s in symbols})
    limits = dict(state.config.max_asset_short_exposure)
    config = state.config
    if original in limits:
        limit = limits.pop(original)
        config = replace(config, max_asset_short_exposure=tuple({**limits, **dict.fromkeys(symbols, limit)}.items()))
    arrays: dict[str, Any] = {name: np.tile(getattr(state, name), (1, n)) for name in STATE_MATRICES}
    arrays.update({name: np.tile(getattr(state, name), n) for name in STATE_VECTORS})
    return replace(
        state, symbols=tuple(symbols), cost_bps=state.cost_bps * n, config=config, **arrays,
        correlation=replace(state.correlation, assets=replace(assets, rows=np.tile(assets.rows, (1, n)))),
        holding=replace(holding, **{f.name: np.tile(getattr(holding, f.name), (1, n))
                                    for f in dataclasses.fields(holding)}),
        model_state=learners,
    )


def alias_version(version: Path, symbols: list[str]) -> None:
    """Make the whole-book version at ``version`` (one symbol) answer for ``symbols``: every model bundle's experts
    registered under each name, ``book.json`` and each book's seed listing them (in place)."""
    path = version / "book.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    folders = {version / entry["bundle"] for book in document["books"] for entry in book["models"]}
    for folder in folders:
        alias_bundle_files(folder, symbols)
    for book in document["books"]:
        original = book["symbols"][0]
        if len(book["symbols"]) != 1:
            raise ValueError(f"book {book['name']}: expected one symbol, got {book['symbols']}")
        book["symbols"] = symbols
        for field in ("timeframes", "cost_bps"):
            book[field] = {s: book[field][original] for s in symbols}
        limits = dict(book["orchestration"].get("max_asset_short_exposure") or [])
        if original in limits:
            limit = limits.pop(original)
            book["orchestration"]["max_asset_short_exposure"] = sorted({**limits, **dict.fromkeys(symbols, limit)}
                                                                       .items())
        if book.get("seed"):
            seed = version / book["seed"]
            seed.write_text(aliased_state(BookState.from_json(seed.read_bytes()), symbols).to_json(),
                            encoding="utf-8")
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def measure(version: Path, store: Path, until: str, endpoint_url: str | None) -> dict[str, float]:
    """Step every book of ``version`` over the bars of ``store`` up to ``until`` in this process: wall and CPU
    seconds of the step, resident memory before it and at the peak (MB)."""
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.live.books import step_books
    from tests.live_step_support import Stores

    experts = None if endpoint_url is None else endpoint_experts(version, endpoint_url)
    database = SqlDatabase.connect(f"sqlite:///{store}")
    memory_before = peak_memory_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    reports = step_books(Stores(database), version, until=_naive(until), experts=experts)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    database.close()
    return {"wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "rss_before_mb": memory_before, "rss_peak_mb": peak_memory_mb(),
            "stepped": float(min(r.stepped for r in reports))}


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (``VmHWM``: unlike ``ru_maxrss``, which Linux carries over from
    the parent that forked it, it starts afresh at ``exec``)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def endpoint_experts(version: Path, url: str) -> Any:
    """``step_books``' expert factory: each model bundle's experts asked at its endpoint, as the live-step tests do."""
    import boto3
    from botocore.config import Config

    from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
    from signal_engine.serving.book_bundle import BookBundle

    bundle = BookBundle.load(version)
    key_of = {bundle.folder(key): key for key in bundle.bundles}
    runtime = boto3.session.Session().client(
        "sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
        config=Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 1}, max_pool_connections=32))

    def experts(folder: Path) -> Any:
        key = key_of[folder]
        return SageMakerExperts(runtime, dict.fromkeys(bundle.bundles[key].experts, endpoint_name(key)))

    return experts


def endpoint_name(bundle: str) -> str:
    return "experts" if bundle == "." else "experts-" + bundle.replace("/", "-")


def _naive(stamp: str) -> Any:
    import pandas as pd

    return pd.Timestamp(stamp).to_pydatetime()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 50, 500])
    parser.add_argument("--bars", type=int, nargs="+", default=[1, 3], help="new bars per step (1: the daily case)")
    parser.add_argument("--train-bars", type=int, default=650, help="GOOG bars the book is trained on")
    parser.add_argument("--no-endpoint", action="store_true", help="skip the endpoint client (in process only)")
    parser.add_argument("--measure", nargs=3, metavar=("VERSION", "STORE", "UNTIL"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        version, store, until = args.measure
        print(json.dumps(measure(Path(version), Path(store), until, args.endpoint_url)))
        return 0
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.data.datasets import export_dataset
    from signal_engine.data.loader import load_prices
    from signal_engine.orchestration.live import seed_book
    from signal_engine.serving.book_bundle import BookBundle
    from signal_engine.storage.ingest import bars_from_series
    from stacks.config import load_stage_config
    from tests.fixtures.configs import TWO_MODEL_BOOK
    from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT
    from tests.live_step_support import cut_prices, train_book
    from tests.sagemaker_endpoints import serve_endpoints

    stage = load_stage_config("prod")
    memory, timeout = stage.book_step_memory_mb, stage.book_step_timeout_seconds
    print(f"book-step Lambda (prod stage): {memory} MB, timeout {timeout} s")
    counts, steps = sorted(set(args.symbols)), sorted(set(args.bars))
    names = [f"S{k:04d}" for k in range(max(counts))]
    with tempfile.TemporaryDirectory(prefix="bench-book-step-") as scratch:
        work = Path(scratch)
        source = export_dataset("GOOG", work)
        cut = cut_prices(work, {"GOOG": source}, (args.train_bars, args.train_bars + max(steps)))
        (work / "train").mkdir()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trained = train_book(work / "train", TWO_MODEL_BOOK, {"GOOG": cut["GOOG", args.train_bars]})
        print(f"whole-book version trained on {args.train_bars} GOOG bars in {time.perf_counter() - started:.1f} s")
        series = load_prices(cut["GOOG", args.train_bars + max(steps)], symbol="GOOG")
        new_bars = series.bars.index[args.train_bars:]
        environment = {**os.environ, **FAKE_AWS_ENVIRONMENT}
        endpoints = None
        if not args.no_endpoint:
            served = work / "served"
            shutil.copytree(trained, served)
            alias_version(served, names)
            bundle = BookBundle.load(served)
            endpoints = serve_endpoints({endpoint_name(key): bundle.folder(key) for key in bundle.bundles})
            url: str | None = endpoints.__enter__().url
        print(f"{'client':<11}{'symbols':>8}{'bars':>6}{'wall s':>9}{'wall/bar s':>12}{'cpu s':>9}"
              f"{'rss before MB':>15}{'rss peak MB':>13}{'x baseline':>12}")
        baseline: float | None = None
        for n in counts:
            version = work / f"v{n}"
            shutil.copytree(trained, version)
            alias_version(version, names[:n])
            base_store = work / f"store{n}.db"
            database = SqlDatabase.connect(f"sqlite:///{base_store}")
            for name in names[:n]:
                database.prices.write_bars(bars_from_series(replace(series, symbol=name), "1d"))
            books = BookBundle.load(version)
            for book in books.books:
                state = books.seed_state(book)
                assert state is not None
                seed_book(database.books, book.name, state)
            database.close()
            clients = [("in process", None)] + ([] if endpoints is None else [("endpoint", url)])
            for label, endpoint in clients:
                for k in steps:
                    store = work / "case.db"
                    shutil.copyfile(base_store, store)
                    command = [sys.executable, __file__, "--measure", str(version), str(store),
                               new_bars[k - 1].isoformat()]
                    if endpoint is not None:  # the endpoints' bundle answers for every name
                        command[3] = str(served)
                        command += ["--endpoint-url", endpoint]
                        _step_book_json(served, version)
                    out = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    assert result["stepped"] == k, result
                    baseline = baseline or result["wall_s"]
                    flags = " over the timeout" if result["wall_s"] > timeout else ""
                    flags += " over the memory" if result["rss_peak_mb"] > memory else ""
                    print(f"{label:<11}{n:>8}{k:>6}{result['wall_s']:>9.2f}{result['wall_s'] / k:>12.2f}"
                          f"{result['cpu_s']:>9.2f}{result['rss_before_mb']:>15.0f}{result['rss_peak_mb']:>13.0f}"
                          f"{result['wall_s'] / baseline:>12.1f}{flags}", flush=True)
        if endpoints is not None:
            endpoints.__exit__(None, None, None)
    return 0


def _step_book_json(served: Path, version: Path) -> None:
    """Give the endpoints' version the case's books (its bundles answer for every name; the book lists the case's)."""
    for relative in ["book.json", *(str(p.relative_to(version)) for p in (version / "books").glob("*/seed.json"))]:
        shutil.copyfile(version / relative, served / relative)


if __name__ == "__main__":
    raise SystemExit(main())
