"""`signal-engine step`: step the live books over the bars stored since their last step (run it after collecting).

The books, their timeframe models and settings come from the whole-book bundle of the registry's CURRENT version
(``book.json``, written by ``signal-engine train`` and ``signal-engine demo``); the bars, the books' states,
positions and events are in the store (``--database``). Running it again steps nothing. Exit status 0 when
every book is at the latest bar its symbols share, 2 for bad input (as every command).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

DEFAULT_DATABASE = "sqlite:///out/demo/store.db"


def register(subparsers: Any) -> None:
    """Add the step sub-command."""
    from signal_engine.commands.serve import DEFAULT_REGISTRY, REGISTRY_VARIABLE

    step = subparsers.add_parser(
        "step", help="step the live books over the bars stored since their last step (after collecting bars)",
        description="Reads each book of the model version's book.json, steps it over the stored bars after its "
                    "latest stepped bar (waiting for symbols whose bars lag) and commits every bar's state, "
                    "positions and events; `signal-engine serve` then answers from the book.")
    step.add_argument("--database", metavar="URL",
                      help=f"bars and live books: sqlite:///PATH or mysql+pymysql://... (default: "
                           f"$SIGNAL_ENGINE_DATABASE_URL or {DEFAULT_DATABASE}, the demo's store)")
    step.add_argument("--registry", type=Path, metavar="DIR",
                      help=f"model registry or version folder (default: ${REGISTRY_VARIABLE} or {DEFAULT_REGISTRY})")
    step.add_argument("--version", dest="model_version", metavar="VERSION",
                      help="step with this version of the registry instead of CURRENT")
    step.add_argument("--book", action="append", metavar="NAME", help="step only this book (repeat; default: all)")
    step.add_argument("--until", type=_utc, metavar="TIME",
                      help="step no bar after this time (YYYY-MM-DD[THH:MM], UTC; default: the latest stored)")
    step.add_argument("--json", action="store_true", help="print one JSON line per book instead of the summary")
    step.set_defaults(handler=_step)


def _utc(text: str) -> datetime:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _step(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.commands.serve import DEFAULT_REGISTRY, REGISTRY_VARIABLE, _bundle_folder
    from signal_engine.live.books import step_books

    registry = args.registry or Path(os.environ.get(REGISTRY_VARIABLE) or DEFAULT_REGISTRY)
    folder = _bundle_folder(registry, args.model_version)
    database = args.database or os.environ.get("SIGNAL_ENGINE_DATABASE_URL") or DEFAULT_DATABASE
    storage = bootstrap(Settings.from_env(database_url=database))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True, disable=args.json) as progress:
            tasks: dict[str, Any] = {}

            def on_bar(book: str, done: int, total: int) -> None:
                if book not in tasks:
                    tasks[book] = progress.add_task(f"book {book}", total=total)
                progress.update(tasks[book], completed=done)

            reports = step_books(storage, folder, books=args.book, until=args.until, on_bar=on_bar)
    finally:
        storage.close()
    for report in reports:
        if args.json:
            print(json.dumps(report.to_json(), sort_keys=True))
            continue
        held = ", ".join(f"{s} {p:+.3f}" for s, p in report.positions.items()) or "no position yet"
        at = report.latest_bar.isoformat() if report.latest_bar else "no bar yet"
        line = f"book {report.book}: stepped {report.stepped} new bar(s), at {at}: {held}"
        if report.waiting:
            line += f"; waiting for the bars of {', '.join(report.waiting)}"
        if report.ended:
            line += f"; no recent bars (stepped as ended): {', '.join(report.ended)}"
        console.print(line)
    return 0
