"""The combiner's serving costs: handler cold import, Lambda package size, combine + risk latency (1 and 1,000 symbols).

Aims (issue #9): cold import <= 300 ms, package <= 30 MB, one symbol p99 <= 1 ms in process.

* cold import: ``import combiner.handler`` from the built package in fresh isolated interpreters (the time inside
  the interpreter, so Python's own start-up is excluded), with and without the package's ``.pyc`` files.
* package: the combiner's Lambda folder built by ``lambda_src/combiner/build.py`` (``stacks/lambda_packages.py`` plus
  precompiled bytecode; boto3/botocore come with the runtime); unzipped and zipped (deflate) bytes.
* latency: ``Combiner.decide`` (scores, gate, combiner, calibration, hold rule, sizing, adjustments) on real expert
  answers, for one symbol and a batch of 1,000; the fingerprint from max(400, min_bars) bars separately; and one
  whole request through the resolver with in-process experts (what ``signal-engine serve`` does per request).

The bundle is ``CURRENT`` of ``--registry`` (``out/models`` after ``make demo``), else one fitted here on GOOG.

    .venv/bin/python benchmarks/bench_serving.py [--registry out/models] [--package build/lambda/combiner]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
from aws_lambda_powertools.utilities.typing import LambdaContext

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath")
IMPORT_SCRIPT = """
import os, sys, time
sys.path[:0] = [{path!r}, {runtime!r}]
os.environ.update(MODEL_BUNDLE_URI="s3://bench/models/", SIGNAL_ENGINE_DATABASE_URL="sqlite://")
wall, cpu = time.perf_counter(), time.process_time()
import combiner.handler
print((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
"""


def cold_import_ms(package: Path, runs: int) -> tuple[tuple[float, float], list[float], list[float]]:
    """Wall and CPU milliseconds of importing the handler from the built package in an isolated interpreter.

    ``-S -E``: no site-packages, no PYTHON* variables, so only the package folder, the standard library and what
    the Lambda runtime provides (boto3, botocore, s3transfer, jmespath) are importable. One run ignores the
    package's bytecode (``-X pycache_prefix`` at an empty folder: every module compiled, as a package without
    ``.pyc`` files costs each cold start); the others read the ``.pyc`` files that ``build.py`` ships.
    """
    import importlib.util
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="lambda-runtime-"))
    for name in RUNTIME_PROVIDED:  # what the Lambda Python runtime provides beside the package
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            (runtime / name).symlink_to(Path(spec.origin).parent)
    script = IMPORT_SCRIPT.format(path=str(package), runtime=str(runtime))

    def once(*flags: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-S", "-E", *flags, "-c", script], cwd=package, capture_output=True,
                             text=True, check=True)
        wall, cpu = out.stdout.strip().splitlines()[-1].split()
        return float(wall), float(cpu)

    compiling = once("-X", f"pycache_prefix={tempfile.mkdtemp(prefix='lambda-pycache-')}")
    shipped = [once("-B") for _ in range(runs)]
    return compiling, [w for w, _ in shipped], [c for _, c in shipped]


def package_size(folder: Path) -> tuple[int, int, int]:
    """(files, unzipped bytes, zipped bytes) of a Lambda package folder."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != ".requirements.sha256"]
    unzipped = sum(p.stat().st_size for p in files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in files:
            archive.write(path, path.relative_to(folder))
    return len(files), unzipped, len(buffer.getvalue())


def percentiles(run: Callable[[], object], repeats: int) -> tuple[float, float, float, float]:
    """Wall p50, p99 and this thread's CPU p50, p99, in milliseconds (CPU time is what a busy host cannot inflate)."""
    for _ in range(min(50, repeats)):
        run()
    wall, cpu = np.empty(repeats), np.empty(repeats)
    for i in range(repeats):
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        run()
        wall[i] = (time.perf_counter_ns() - start) / 1e6
        cpu[i] = (time.thread_time_ns() - start_cpu) / 1e6
    return (float(np.percentile(wall, 50)), float(np.percentile(wall, 99)), float(np.percentile(cpu, 50)),
            float(np.percentile(cpu, 99)))


def show(label: str, p: tuple[float, float, float, float], unit: str = "ms", digits: int = 3) -> None:
    print(f"{label}: wall p50 {p[0]:.{digits}f} {unit}, p99 {p[1]:.{digits}f} {unit}; "
          f"CPU p50 {p[2]:.{digits}f} {unit}, p99 {p[3]:.{digits}f} {unit}")


def bundle_folder(registry: Path) -> Path:
    from signal_engine.serving.bundle_source import local_bundle

    if (registry / "CURRENT").is_file() or (registry / "bundle.json").is_file():
        return local_bundle(registry)
    from tests.serving_support import goog_registry

    print(f"no bundle under {registry}: fitting one on GOOG (tests/serving_support.py)")
    return local_bundle(goog_registry())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", type=Path, default=ROOT / "out" / "models")
    parser.add_argument("--package", type=Path, default=ROOT / "build" / "lambda" / "combiner",
                        help="the combiner package folder (lambda_src/combiner/build.py builds or refreshes it)")
    parser.add_argument("--imports", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)

    from signal_engine.adapters.inprocess_experts import InProcessExperts
    from signal_engine.serving.api import build_app
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.serving.combine import Combiner, fingerprint_row
    from signal_engine.serving.experts import answer, market_frame
    from signal_engine.serving.service import SignalService
    from tests.serving_support import goog_series

    print(f"building/refreshing the combiner package {args.package} (pip only when its requirements changed) ...")
    subprocess.run([sys.executable, str(ROOT / "lambda_src" / "combiner" / "build.py"), str(args.package.parent)],
                   cwd=ROOT, check=True, capture_output=True)
    compiling, walls, cpus = cold_import_ms(args.package, args.imports)
    print(f"handler cold import, package without .pyc (compiles): wall {compiling[0]:.0f} ms, "
          f"CPU {compiling[1]:.0f} ms")
    print(f"handler cold import, package with .pyc (build.py): wall min {min(walls):.0f} ms, median "
          f"{statistics.median(walls):.0f} ms; CPU min {min(cpus):.0f} ms, median {statistics.median(cpus):.0f} ms "
          f"over {len(walls)} runs (aim <= 300 ms)")
    files, unzipped, zipped = package_size(args.package)
    print(f"combiner package {args.package}: {files} files, {unzipped / 2**20:.1f} MiB unzipped, "
          f"{zipped / 2**20:.1f} MiB zipped (aim <= 30 MB; boto3/botocore come with the runtime)")

    folder = bundle_folder(args.registry)
    bundle = ServingBundle.load(folder)
    symbol = bundle.symbols[0]
    experts = InProcessExperts(folder / "experts")
    if symbol == "GOOG":
        bars = goog_series().bars
    else:
        from signal_engine.adapters.local_bars import LocalBars

        rows = LocalBars(None).recent_bars(symbol, bundle.timeframe_of(symbol), None, 2000)
        from signal_engine.serving.experts import bars_frame

        bars = bars_frame(rows)
    size = max(400, bundle.min_bars)
    window = bars.iloc[-size:]
    fitted = {name: experts._experts[experts.artefact_name(name, symbol) or name] for name in bundle.experts}
    frame = market_frame(window)
    answers = {name: answer(name, fitted[name], window, history=bundle.scores.volatility_window, frame=frame)
               for name in bundle.experts}
    high, low, close = (window[c].to_numpy() for c in ("high", "low", "close"))
    volume = window["volume"].to_numpy() if "volume" in window.columns else None
    fingerprint = fingerprint_row(high, low, close, volume, bundle.gate.features)
    combiner = Combiner(bundle)
    last = np.array([close[-1]])
    one = percentiles(lambda: combiner.decide([answers], last, fingerprint[None, :]), args.repeats)
    show("combine + risk, 1 symbol (aim p99 <= 1 ms)", one)
    batch_answers, batch_close = [answers] * 1000, np.full(1000, close[-1])
    batch_prints = np.repeat(fingerprint[None, :], 1000, axis=0)
    many = percentiles(lambda: combiner.decide(batch_answers, batch_close, batch_prints), max(20, args.repeats // 20))
    show("combine + risk, 1,000 symbols", many, digits=1)
    fp = percentiles(lambda: fingerprint_row(high, low, close, volume, bundle.gate.features), args.repeats // 4)
    show(f"fingerprint of {size} bars", fp)

    service = SignalService(bundle, experts, None, deadline_s=30)
    app = build_app(lambda: service)
    body = json.dumps({"symbol": symbol, "bars": [
        {"timestamp": ts.isoformat(), **{c: float(window[c].iloc[i]) for c in ("open", "high", "low", "close")}}
        for i, ts in enumerate(window.index)]})
    event = {"resource": "/signals", "path": "/signals", "httpMethod": "POST",
             "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {}, "body": body,
             "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
             "stageVariables": None, "isBase64Encoded": False,
             "requestContext": {"requestId": "bench", "stage": "local", "path": "/signals", "httpMethod": "POST"}}
    context = cast(LambdaContext, SimpleNamespace(aws_request_id="bench"))
    assert app.resolve(event, context)["statusCode"] == 200
    request = percentiles(lambda: app.resolve(event, context), 100)
    show("whole POST /signals in process (validation, in-process experts in threads, combine; no audit)", request,
         digits=1)
    experts.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
