"""The text expert on the experts' endpoint: its size in the bundle and its inference time per document on CPU.

The real inference server (``sagemaker_jobs/serve.py``) on loopback serves a bundle with the text expert; requests
of ``--sizes`` headlines (the shipped corpus's texts, distinct per request so none was seen before) are timed from
the client, over HTTP, as the combiner's request for the news expert is; then the last request again (its
headlines' probabilities kept by the expert, as when a symbol is asked about again). ONNX Runtime runs on one
thread (the encoder's default; the server answers concurrent requests on threads of their own). Also: the
start-up cost of the text expert (loading the ONNX session and the tokenizer, one warm-up text) and the bytes the
bundle carries.

The bundle is ``CURRENT`` of ``--registry`` when it has the text expert, else ``tests/serving_support.py``'s
(GOOG's experts plus a head trained on 120 corpus texts: the head's size and cost do not depend on how many texts it
was trained on; the encoder is the same).

    .venv/bin/python benchmarks/bench_news_endpoint.py [--registry DIR] [--sizes 1 10 50 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bundle_folder(registry: Path | None) -> Path:
    from signal_engine.serving.bundle import ServingBundle, read_current

    if registry is not None and (registry / "CURRENT").is_file():
        folder = read_current(registry)
        if ServingBundle.load(folder).news is not None:
            return folder
    from tests.serving_support import goog_news_registry

    print("no bundle with the text expert given: building one (tests/serving_support.py)")
    return read_current(goog_news_registry())


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return dict(json.loads(response.read()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from sagemaker_jobs import serve
    from signal_engine.text.corpus import load_corpus

    folder = bundle_folder(args.registry)
    news = folder / "news"
    sizes = {p.name: p.stat().st_size for p in sorted(news.iterdir())}
    print(f"bundle {folder.name}: news/ holds {', '.join(f'{k} {v:,} B' for k, v in sizes.items())} "
          f"({sum(sizes.values()):,} B)")
    started = time.perf_counter()
    service = serve.ExpertService(folder)
    print(f"server start with the text expert (experts, ONNX session, tokenizer, one warm-up text): "
          f"{time.perf_counter() - started:.2f} s")
    handler = serve.handler_for(service)
    handler.log_message = lambda *_: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    texts = load_corpus()["text"].tolist()
    used = 0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("documents per request | request p50 ms | request min ms | per document ms (p50 / min)")
    try:
        for size in args.sizes:
            times = []
            for _ in range(args.repeats):
                batch = texts[used:used + size]
                used += size
                documents = [{"id": str(i), "published_at": "2024-01-05T12:00:00Z", "title": t}
                             for i, t in enumerate(batch)]
                start = time.perf_counter()
                answer = post(url, {"symbol": service.symbols[0], "expert": "news",
                                    "decision_time": "2024-01-05T21:00:00Z", "documents": documents})
                times.append((time.perf_counter() - start) * 1000)
                assert answer["news_count"] == size
            p50, low = statistics.median(times), min(times)
            print(f"{size:21d} | {p50:14.1f} | {low:14.1f} | {p50 / size:.2f} / {low / size:.2f}")
        again = []
        for _ in range(args.repeats):  # the last request's headlines again: answered from the kept ones
            start = time.perf_counter()
            post(url, {"symbol": service.symbols[0], "expert": "news", "decision_time": "2024-01-05T21:00:00Z",
                       "documents": documents})
            again.append((time.perf_counter() - start) * 1000)
        p50, low, count = statistics.median(again), min(again), len(documents)
        print(f"{count:17d} again | {p50:14.1f} | {low:14.1f} | {p50 / count:.2f} / {low / count:.2f} "
              "(not encoded again)")
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
