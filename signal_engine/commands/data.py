"""`signal-engine collect | ingest | replay`: market data into the store (SQLite + folder unless configured)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.collectors.registry import KINDS
from signal_engine.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from signal_engine.bootstrap import Settings, Storage

SOURCES = tuple(KINDS)


def register(subparsers: Any) -> None:
    """Add the collect, ingest and replay sub-commands."""
    collect = subparsers.add_parser("collect", help="fetch market data from Yahoo Finance or Nasdaq into the store")
    collect.add_argument("--source", choices=SOURCES, required=True)
    collect.add_argument("--symbols", nargs="+", required=True, metavar="SYMBOL")
    collect.add_argument("--start", type=_date, required=True, metavar="YYYY-MM-DD")
    collect.add_argument("--end", type=_date, required=True, metavar="YYYY-MM-DD")
    collect.add_argument("--kind", default="bars", help="yahoo: " + ", ".join(KINDS["yahoo"]) + "; nasdaq: "
                         + ", ".join(KINDS["nasdaq"]) + " (default: bars)")
    collect.add_argument("--timeframe", default="1d", help="bar length for --kind bars: 1d, 1h, 5m, ... (default 1d)")
    _add_store_options(collect)
    collect.set_defaults(handler=_collect)

    ingest = subparsers.add_parser("ingest", help="store the bars of price files (Yahoo export layout)")
    ingest.add_argument("--prices", type=Path, action="append", required=True, metavar="FILE.csv")
    ingest.add_argument("--symbol", action="append", metavar="SYMBOL", help="symbol per file (default: file name)")
    ingest.add_argument("--timeframe", help="bar length (default: 1d, or the bar spacing of intraday files)")
    _add_store_options(ingest)
    ingest.set_defaults(handler=_ingest)

    replay = subparsers.add_parser("replay", help="parse stored raw payloads again and write what they hold")
    replay.add_argument("--source", choices=SOURCES)
    replay.add_argument("--kind")
    replay.add_argument("--symbol")
    replay.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="only payloads fetched on or after")
    _add_store_options(replay)
    replay.set_defaults(handler=_replay)


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", metavar="URL", help="sqlite:///PATH or mysql+pymysql://... "
                        "(default: $SIGNAL_ENGINE_DATABASE_URL or sqlite:///out/store/signal_engine.db)")
    parser.add_argument("--objects", metavar="DIR|s3://BUCKET/PREFIX",
                        help="raw payloads (default: $SIGNAL_ENGINE_OBJECT_STORE or out/store/objects)")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


def _settings(args: argparse.Namespace) -> Settings:
    from signal_engine.bootstrap import Settings

    return Settings.from_env(database_url=args.database, object_store=args.objects)


def _storage(args: argparse.Namespace) -> Storage:
    from signal_engine.bootstrap import bootstrap

    return bootstrap(_settings(args))


def _collect(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.bootstrap import build_source
    from signal_engine.collectors.service import CollectRequest, collect

    if args.kind not in KINDS[args.source]:
        raise InputError("--kind", f"{args.source} has no kind {args.kind!r}; expected one of "
                         + ", ".join(KINDS[args.source]))
    if args.end < args.start:
        raise InputError("--end", f"{args.end} is before --start {args.start}; expected end >= start")
    request = CollectRequest(args.source, args.kind, tuple(s.upper() for s in args.symbols), args.start, args.end,
                             args.timeframe)
    source = build_source(args.source, _settings(args))
    storage = _storage(args)
    try:
        report = collect(request, source, storage)
    finally:
        storage.close()
    console.print(f"Collected {args.source} {args.kind} for {', '.join(request.symbols)}: {report.summary()}")
    return 0


def _ingest(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.storage.ingest import ingest_prices

    symbols = args.symbol or []
    if symbols and len(symbols) != len(args.prices):
        raise InputError("--symbol", f"{len(symbols)} symbols for {len(args.prices)} --prices files; "
                         "expected one per file")
    storage = _storage(args)
    try:
        for index, path in enumerate(args.prices):
            done = ingest_prices(path, storage.prices, symbol=symbols[index] if symbols else None,
                                 timeframe=args.timeframe)
            r = done.result
            console.print(f"{path}: {done.symbol} {done.timeframe}, {done.bars} bars: {r.inserted} new, "
                          f"{r.updated} restated, {r.unchanged} unchanged")
    finally:
        storage.close()
    return 0


def _replay(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.collectors.service import replay

    storage = _storage(args)
    try:
        report = replay(storage, source=args.source, kind=args.kind, symbol=args.symbol, since=args.since)
    finally:
        storage.close()
    console.print(f"Replayed {report.summary()}")
    return 0
