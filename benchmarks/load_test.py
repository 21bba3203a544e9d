"""A bounded load test of the local Signal API on loopback: C concurrent clients POST /signals for S seconds.

Starts `signal-engine serve`'s HTTP server in this process (127.0.0.1, any free port; in-process experts; audit log
in a temporary SQLite file) unless ``--url`` points at a running one. Each client keeps one HTTP/1.1 connection and
sends real requests (max(400, min_bars) GOOG bars, a window chosen per request); a non-200 answer or a transport
error counts as an error. Prints requests, errors, throughput and latency percentiles.

    .venv/bin/python benchmarks/load_test.py [--clients 50] [--seconds 30] [--registry out/models] [--url URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_local_server(registry: Path | None) -> tuple[str, object]:
    """Serve the bundle of ``registry`` (or the GOOG test bundle) on 127.0.0.1; returns (url, server)."""
    from signal_engine.adapters.inprocess_experts import InProcessExperts
    from signal_engine.adapters.local_bars import LocalBars
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.serving.api import build_app
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.serving.bundle_source import local_bundle
    from signal_engine.serving.http_server import make_server
    from signal_engine.serving.service import SignalService

    if registry is not None and ((registry / "CURRENT").is_file() or (registry / "bundle.json").is_file()):
        folder = local_bundle(registry)
    else:
        from tests.serving_support import goog_registry

        folder = local_bundle(goog_registry())
    database = SqlDatabase.connect(f"sqlite:///{tempfile.mkdtemp(prefix='load-test-')}/audit.db")
    service = SignalService(ServingBundle.load(folder), InProcessExperts(folder / "experts"), database.ledger,
                            LocalBars(None), deadline_s=30)
    server = make_server(lambda: build_app(lambda: service), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def request_bodies(symbol: str, size: int, count: int = 20) -> list[bytes]:
    """``count`` request bodies of ``size`` real bars each (GOOG windows ending at different bars)."""
    from tests.serving_support import goog_series

    bars = goog_series().bars
    bodies = []
    for end in np.linspace(len(bars) - 300, len(bars), count).astype(int):
        window = bars.iloc[end - size:end]
        rows = [{"timestamp": ts.strftime("%Y-%m-%d"), **{c: float(window[c].iloc[i]) for c in
                                                          ("open", "high", "low", "close", "volume")}}
                for i, ts in enumerate(window.index)]
        bodies.append(json.dumps({"symbol": symbol, "bars": rows}).encode())
    return bodies


def client(url: str, bodies: list[bytes], stop_at: float, tally: Tally, seed: int) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    rng = np.random.default_rng(seed)
    while time.perf_counter() < stop_at:
        body = bodies[int(rng.integers(len(bodies)))]
        started = time.perf_counter()
        try:
            connection.request("POST", "/signals", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with tally.lock:
                tally.statuses[response.status] = tally.statuses.get(response.status, 0) + 1
                if response.status == 200:
                    tally.latencies_ms.append(elapsed)
                else:
                    tally.errors.append(f"{response.status}: {payload[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            with tally.lock:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    connection.close()


def run(url: str, clients: int, seconds: float, symbol: str = "GOOG") -> Tally:
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:  # the model's min_bars
        min_bars = int(json.loads(response.read())["min_bars"])
    bodies = request_bodies(symbol, max(400, min_bars))
    tally = Tally()
    stop_at = time.perf_counter() + seconds
    threads = [threading.Thread(target=client, args=(url, bodies, stop_at, tally, i)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--registry", type=Path, default=ROOT / "out" / "models")
    parser.add_argument("--url", help="a running server (default: start one here)")
    parser.add_argument("--symbol", default="GOOG")
    args = parser.parse_args(argv)
    url = args.url
    if url is None:
        url, _ = start_local_server(args.registry)
    started = time.perf_counter()
    tally = run(url, args.clients, args.seconds, args.symbol)
    elapsed = time.perf_counter() - started
    done = len(tally.latencies_ms)
    print(f"{args.clients} clients for {args.seconds:.0f} s against {url}: {done} signals, {len(tally.errors)} errors, "
          f"{done / elapsed:.1f} requests/s; statuses {dict(sorted(tally.statuses.items()))}")
    if done:
        p50, p90, p99 = np.percentile(tally.latencies_ms, [50, 90, 99])
        print(f"latency: p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, max {max(tally.latencies_ms):.0f} ms")
    for error in tally.errors[:5]:
        print("  error:", error)
    return 1 if tally.errors or not done else 0


if __name__ == "__main__":
    raise SystemExit(main())
