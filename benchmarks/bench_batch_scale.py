"""``POST /signals/batch`` for hundreds of symbols against the combiner Lambda's limits: time, memory, payload.

    .venv/bin/python benchmarks/bench_batch_scale.py [--symbols 1 100 500] [--repeats 3] [--no-endpoint]

The bundle is one fitted on GOOG (``tests/serving_support.py``) whose experts are registered again under
``--symbols`` names (``S0000`` ...): every symbol is answered by GOOG's fitted experts (the same model files), so
each item costs what a symbol of its own would, without fitting hundreds of models. Each symbol's stored bars
are GOOG's, in a SQLite store (the combiner reads bars from RDS the same way). Two ways of asking:

* ``store``: the items name their symbol only and the combiner reads the bars (what a trading client sends);
* ``bars``: the items carry their own 400 bars (the unmanaged answer for the caller's bars).

Items are asked one after another (``--batch-workers 1``, the service's default and the baseline) or several at
once (``batch_workers`` 5). Two expert clients: the experts in process (``signal-engine serve``) and
``SageMakerExperts`` over a real boto3 ``sagemaker-runtime`` client answered by the inference server
(``sagemaker_jobs/serve.py``) on loopback (the test harness ``tests/sagemaker_endpoints.py``), which is how the
deployed combiner asks. Reported per case: request and response bytes against the Lambda's 6 MB synchronous
payload limit (API Gateway's REST limit is 10 MB); wall time p50 / max over ``--repeats`` against the function's
timeout (the stage's ``expert_deadline_ms`` / 1000 + 10 s, at most 28: ``stacks/serving.py``) and API Gateway's
29 s integration timeout; the time per item inside the batch, p50 and p99 over the items of every repeat (the
item's own reading of its bars, asking of its experts and answering, plus its share of the batch's joint decision,
``ItemTimes``); the peak Python heap (tracemalloc) against the function's memory. Baseline: one symbol, experts in
process, one item at a time, measured in the same run (``--modes`` runs one way of asking only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAMBDA_PAYLOAD_BYTES = 6 * 2**20
API_GATEWAY_TIMEOUT_S = 29.0
BARS_PER_ITEM = 400


def aliased_bundle(source: Path, target: Path, symbols: list[str]) -> Path:
    """A copy of the one-symbol bundle at ``source`` whose experts also answer for ``symbols`` (same files)."""
    shutil.copytree(source, target)
    alias_bundle_files(target, symbols)
    return target


def alias_bundle_files(target: Path, symbols: list[str]) -> None:
    """Register the experts of the one-symbol bundle folder ``target`` again under ``symbols`` (in place)."""
    document = json.loads((target / "bundle.json").read_text(encoding="utf-8"))
    original = document["symbols"][0]
    document["symbols"] = symbols
    document["trained_through"] = {s: document["trained_through"][original] for s in symbols}
    if "per_symbol" in document:
        document["per_symbol"] = {s: document["per_symbol"][original] for s in symbols}
    (target / "bundle.json").write_text(json.dumps(document), encoding="utf-8")
    manifest_path = target / "experts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    experts = manifest["experts"]
    for name in [n for n in list(experts) if n.endswith(f"/{original}")]:
        kind = name.split("/")[0]
        for symbol in symbols:
            experts[f"{kind}/{symbol}"] = experts[name]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


class ItemTimes:
    """Seconds each item of a batch spends in ``service`` (a ``SignalService``, whose per-item steps it wraps):
    reading its bars, asking its experts and answering, keyed by symbol, and the batch's joint decision."""

    PER_ITEM = ("_query", "_ask", "_respond")

    def __init__(self, service: Any) -> None:
        self.own: defaultdict[str, float] = defaultdict(float)
        self.shared = 0.0
        self._lock = threading.Lock()
        for name in (*self.PER_ITEM, "_decide"):
            setattr(service, name, self._timed(getattr(service, name), item=name in self.PER_ITEM))

    def _timed(self, method: Callable[..., Any], item: bool) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    if item:
                        self.own[args[0].symbol] += spent
                    else:
                        self.shared += spent
        return timed

    def take(self) -> list[float]:
        """Each item's seconds since the last ``take`` (its own steps plus an equal share of the decision)."""
        share = self.shared / max(len(self.own), 1)
        items = [t + share for t in self.own.values()]
        self.own.clear()
        self.shared = 0.0
        return items


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between order statistics, as numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-endpoint", action="store_true", help="skip the endpoint client (in process only)")
    parser.add_argument("--batch-workers", type=int, nargs="+", default=[1, 5],
                        help="items asked at once (1: one after another, the baseline)")
    parser.add_argument("--modes", nargs="+", choices=["store", "bars"], default=["store", "bars"],
                        help="ways of asking (store: the combiner reads the bars; bars: the items carry them)")
    args = parser.parse_args(argv)

    import boto3
    from botocore.config import Config

    from signal_engine.adapters.inprocess_experts import InProcessExperts
    from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.adapters.sql.recent_bars import SqlRecentBars
    from signal_engine.data.loader import PriceSeries
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.serving.bundle_source import local_bundle
    from signal_engine.serving.schema import BatchRequest
    from signal_engine.serving.service import SignalService
    from signal_engine.storage.ingest import bars_from_series
    from stacks.config import load_stage_config
    from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT
    from tests.sagemaker_endpoints import serve_endpoints
    from tests.serving_support import TRAIN_BARS, goog_registry, goog_series, request_bars

    largest = max(args.symbols)
    names = [f"S{k:04d}" for k in range(largest)]
    stage = load_stage_config("prod")
    timeout = min(28, stage.expert_deadline_ms // 1000 + 10)  # stacks/serving.py
    print(f"combiner Lambda (prod stage): {stage.combiner_memory_mb} MB, timeout {timeout} s; payload limit "
          f"{LAMBDA_PAYLOAD_BYTES / 2**20:.0f} MB, API Gateway {API_GATEWAY_TIMEOUT_S:.0f} s")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = Path(scratch)
        folder = aliased_bundle(local_bundle(goog_registry()), work / "bundle", names)
        bundle = ServingBundle.load(folder)
        database = SqlDatabase.connect(f"sqlite:///{work / 'store.db'}")
        goog = goog_series()
        stored = PriceSeries(goog.symbol, goog.source, goog.bars.iloc[: TRAIN_BARS + 50])
        for name in names:
            database.prices.write_bars(bars_from_series(replace(stored, symbol=name), "1d"))
        recent = SqlRecentBars(database.engine)
        body_bars = request_bars(TRAIN_BARS + 50, BARS_PER_ITEM)

        def batch(n: int, mode: str) -> BatchRequest:
            items: list[dict[str, Any]] = [{"symbol": s} if mode == "store" else {"symbol": s, "bars": body_bars}
                                           for s in names[:n]]
            return BatchRequest.model_validate({"requests": items})

        def run(service: SignalService, request: BatchRequest) -> tuple[list[float], list[float], float, int]:
            walls: list[float] = []
            items: list[float] = []
            timer = ItemTimes(service)
            tracemalloc.start()
            response: Any = None
            for _ in range(args.repeats):
                started = time.perf_counter()
                response = service.batch(request)
                walls.append(time.perf_counter() - started)
                items += timer.take()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert response is not None and not response.errors, response.errors[:3] if response else None
            assert len(items) == len(request.requests) * args.repeats
            return walls, items, peak / 2**20, len(response.model_dump_json().encode())

        clients: dict[str, Any] = {"in process": InProcessExperts(folder / "experts")}
        endpoints = None
        if not args.no_endpoint:
            endpoints = serve_endpoints({"experts": folder})
            running = endpoints.__enter__()
            client = boto3.client("sagemaker-runtime", endpoint_url=running.url, region_name="us-east-1",
                                  aws_access_key_id=FAKE_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=FAKE_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
                                  config=Config(retries={"max_attempts": 1}, max_pool_connections=16))
            clients["endpoint"] = SageMakerExperts(client, {e: "experts" for e in bundle.experts})
        baseline: float | None = None
        print(f"{'client':<11}{'mode':<7}{'symbols':>8}{'workers':>8}{'request MB':>12}{'response MB':>13}"
              f"{'wall p50 s':>12}{'wall max s':>12}{'item p50 ms':>13}{'item p99 ms':>13}{'peak heap MB':>14}"
              f"{'x baseline':>12}")
        cases = [(label, experts, mode, n, workers) for label, experts in clients.items() for mode in args.modes
                 for workers in args.batch_workers for n in sorted(args.symbols)]
        for label, experts, mode, n, workers in cases:
            service = SignalService(bundle, experts, None, recent, deadline_s=60, batch_workers=workers)
            request = batch(n, mode)
            request_bytes = len(request.model_dump_json(exclude_none=True).encode())
            if mode == "bars" and request_bytes > LAMBDA_PAYLOAD_BYTES:
                print(f"{label:<11}{mode:<7}{n:>8}{workers:>8}{request_bytes / 2**20:>12.2f}  not run: the "
                      "request is over the Lambda's payload limit", flush=True)
                continue
            walls, items, peak, response_bytes = run(service, request)
            p50 = statistics.median(walls)
            baseline = baseline or p50
            largest_body = max(request_bytes, response_bytes)
            flag = " over the payload limit" if largest_body > LAMBDA_PAYLOAD_BYTES else ""
            flag += f" over the {timeout} s timeout" if max(walls) > timeout else ""
            print(f"{label:<11}{mode:<7}{n:>8}{workers:>8}{request_bytes / 2**20:>12.2f}"
                  f"{response_bytes / 2**20:>13.2f}"
                  f"{p50:>12.2f}{max(walls):>12.2f}{1000 * percentile(items, 0.5):>13.1f}"
                  f"{1000 * percentile(items, 0.99):>13.1f}{peak:>14.0f}{p50 / baseline:>12.1f}{flag}", flush=True)
        if endpoints is not None:
            endpoints.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
