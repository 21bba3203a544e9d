"""`signal-engine serve`: the Signal API on 127.0.0.1 with the locally trained models.

The same Powertools resolver as the combiner Lambda (:mod:`signal_engine.serving.api`) answers over a standard
library HTTP server; the experts run in-process from the ``CURRENT`` bundle of the local model registry
(``out/models``, or ``$SIGNAL_ENGINE_MODEL_REGISTRY``, or ``--registry``); every signal is written to the audit
log of the local store. Requests without ``bars`` read them from the local price store, else from the data
sets shipped with the dependencies (SPX, IXIC, GOOG, EURUSD); a bundle with the text expert reads the symbol's news
from the local document store (``news`` in the answer); a symbol of a live book in the store (written by the
book step or ``signal-engine paper``) is answered from the book, and ``GET /book`` answers the books.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.serving.local_jobs import LocalJobWorker
    from signal_engine.serving.service import SignalService
    from signal_engine.text.serving import NewsExpert

DEFAULT_REGISTRY = Path("out/models")
REGISTRY_VARIABLE = "SIGNAL_ENGINE_MODEL_REGISTRY"
TOKEN_VARIABLE = "SIGNAL_ENGINE_API_TOKEN"
LOCAL_JOB_TIMEOUT_S = 3600.0
JOB_STOP_WAIT_S = 10.0  # how long a stop waits for the running batch job before storing it failed


def register(subparsers: Any) -> None:
    """Add the serve sub-command."""
    serve = subparsers.add_parser("serve", help="serve signals over HTTP on 127.0.0.1 with the trained models")
    serve.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000; 0: any free)")
    serve.add_argument("--registry", type=Path, metavar="DIR",
                       help=f"model registry or bundle folder (default: ${REGISTRY_VARIABLE} or {DEFAULT_REGISTRY})")
    serve.add_argument("--version", dest="model_version", metavar="VERSION",
                       help="serve this version of the registry instead of CURRENT (e.g. one that did not pass the "
                       "quality gate, for inspection; symbols its quality gate withheld are still refused)")
    serve.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_VARIABLE}; "
                       "none: open, on loopback only)")
    serve.add_argument("--deadline-ms", type=int, default=5000, metavar="MS",
                       help="how long the experts get per request before the signal degrades (default 5000)")
    serve.add_argument("--database", metavar="URL", help="audit log, price store and live books: sqlite:///PATH or "
                       "mysql+pymysql://... (default: $SIGNAL_ENGINE_DATABASE_URL or sqlite:///out/store/signal_engine.db)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.adapters.inprocess_experts import InProcessExperts
    from signal_engine.adapters.local_bars import LocalBars
    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.errors import ConfigError
    from signal_engine.serving.api import build_app
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.serving.http_server import make_server
    from signal_engine.serving.service import SignalService

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0..65535")
    if args.deadline_ms < 10:
        raise ConfigError(f"--deadline-ms {args.deadline_ms}: expected at least 10")
    registry = args.registry or Path(os.environ.get(REGISTRY_VARIABLE) or DEFAULT_REGISTRY)
    folder = _bundle_folder(registry, args.model_version)
    bundle = ServingBundle.load(folder)
    experts = InProcessExperts(folder / "experts", news=news_expert(folder, bundle))
    settings = Settings.from_env(database_url=args.database)
    storage = bootstrap(settings)
    service = SignalService(bundle, experts, storage.audit, LocalBars(storage.prices, market=storage.market),
                            deadline_s=args.deadline_ms / 1000, books=storage.books, documents=storage.documents)
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    worker = local_batch_jobs(settings.object_store, service)
    server = make_server(lambda: build_app(lambda: service, token=lambda: token, jobs=lambda: worker.jobs),
                         "127.0.0.1", args.port)
    host, port = "127.0.0.1", server.server_address[1]
    served = bundle.served_symbols
    console.print(f"serving model [bold]{bundle.version}[/] ({', '.join(served) or 'no symbol'}) on "
                  f"http://{host}:{port} {'(token required)' if token else '(no token)'}; Ctrl-C stops")
    for symbol, reason in bundle.withheld.items():
        console.print(f"  withheld by the quality gate, answered 404: {symbol} ({reason})")
    console.print(f"  curl -s -X POST http://{host}:{port}/signals -H 'Content-Type: application/json' "
                  f"-d '{{\"symbol\": \"{(served or bundle.symbols)[0]}\"}}'")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
        _stop_jobs(worker, console)  # before the experts and the store its job uses are closed
        experts.close()
        storage.close()
    return 0


def news_expert(folder: Path, bundle: ServingBundle) -> tuple[str, NewsExpert] | None:
    """The bundle's text expert, loaded to run in-process (None when the bundle has none)."""
    from signal_engine.adapters.inprocess_experts import bundle_news_expert

    return bundle_news_expert(folder, bundle)


def local_batch_jobs(objects: str, service: SignalService, timeout_s: float = LOCAL_JOB_TIMEOUT_S,
                     ) -> LocalJobWorker:
    """Batch jobs kept under ``<object store>/signal-batches``, run one at a time on a thread of this process until
    the worker is stopped (``stop(wait_s)``: the server's stop path)."""
    from signal_engine.adapters.object_stores import object_store
    from signal_engine.serving.batch_jobs import JOBS_PREFIX
    from signal_engine.serving.local_jobs import LocalJobWorker

    return LocalJobWorker(object_store(f"{objects.rstrip('/')}/{JOBS_PREFIX}"), service, timeout_s=timeout_s)


def _stop_jobs(worker: LocalJobWorker, console: Console) -> None:
    if worker.running is not None:
        console.print(f"waiting up to {JOB_STOP_WAIT_S:g} s for batch job {worker.running} to finish")
    for job_id in worker.stop(JOB_STOP_WAIT_S):
        console.print(f"batch job {job_id}: stored as failed (the server stopped); submit it again")


def _bundle_folder(registry: Path, version: str | None) -> Path:
    """The bundle to serve: ``--version`` of the registry, else its CURRENT (or ``registry`` itself if a bundle)."""
    from signal_engine.serving.bundle import BUNDLE_FILE, BundleError
    from signal_engine.serving.bundle_source import local_bundle

    if version is not None:
        folder = registry / version
        if not (folder / BUNDLE_FILE).is_file():
            raise BundleError(f"{folder}: no {BUNDLE_FILE}; the registry {registry} holds {_versions(registry)}")
        return folder
    try:
        return local_bundle(registry)
    except BundleError as exc:
        versions = _versions(registry)
        if versions == "no version":
            raise
        raise BundleError(f"{exc}. Versions here (none passed the quality gate, or CURRENT was removed): {versions}; "
                          "serve one anyway with --version VERSION") from None


def _versions(registry: Path) -> str:
    found = sorted(p.name for p in registry.glob("*/bundle.json") for p in [p.parent]) if registry.is_dir() else []
    return ", ".join(found) if found else "no version"
