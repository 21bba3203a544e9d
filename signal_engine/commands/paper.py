"""`signal-engine paper`: replay price files bar by bar through the live path and trade the book on paper."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from signal_engine.paper.ledger import FILL_RULES


def register(subparsers: Any) -> None:
    """Add the paper sub-command."""
    paper = subparsers.add_parser(
        "paper", help="replay price files bar by bar through the live path (store, book step, stored state) and "
                      "trade the book on paper against the backtest's expectation")
    paper.add_argument("--prices", type=Path, action="append", required=True, metavar="FILE.csv",
                       help="Yahoo-layout CSV: Date,Open,High,Low,Close[,Adj Close][,Volume]; repeat for more")
    paper.add_argument("--symbol", action="append", metavar="SYMBOL",
                       help="symbol for each --prices file, in order (default: the file name)")
    paper.add_argument("--out", type=Path, required=True, metavar="DIR")
    paper.add_argument("--from", dest="start", type=_timestamp, metavar="DATE",
                       help="start the paper account here (YYYY-MM-DD[THH:MM]; default: the book's first bar); the "
                            "band is learned from the backtest's returns before it")
    paper.add_argument("--fill", choices=FILL_RULES, default="next_close",
                       help="fill each order at the symbol's next close (default) or at the close it was decided "
                            "at (the backtest's assumption)")
    paper.add_argument("--band-level", type=float, default=0.95, metavar="P",
                       help="share of the backtest's bootstrap paths inside the band (default 0.95)")
    paper.add_argument("--database", metavar="URL",
                       help="where bars and the book's state go: sqlite:///PATH or mysql+pymysql://... "
                            "(default: sqlite:///DIR/store.db; `signal-engine serve --database` serves its book)")
    paper.add_argument("--profile", default="quick", choices=("quick", "full"))
    paper.add_argument("--config", type=Path, metavar="FILE", help="YAML or JSON overrides of the profile")
    paper.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="processes for the walk-forward (default: every core); any N gives the same results")
    paper.set_defaults(handler=_paper)


def _timestamp(text: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def _paper(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.bootstrap import Settings, bootstrap
    from signal_engine.cli import load_configs
    from signal_engine.errors import ConfigError
    from signal_engine.paper.run import run_paper
    from signal_engine.pipeline import load_all

    if not 0.0 < args.band_level < 1.0:
        raise ConfigError(f"--band-level {args.band_level}: expected a share between 0 and 1, e.g. 0.95")
    config, orchestration = load_configs(args.profile, args.config)
    series = load_all(args.prices, args.symbol)
    args.out.mkdir(parents=True, exist_ok=True)
    database = args.database or f"sqlite:///{args.out / 'store.db'}"
    storage = bootstrap(Settings.from_env(database_url=database, object_store=str(args.out / "objects")))
    started = time.perf_counter()
    try:
        output = run_paper(series, args.out, config, prices=storage.prices, bars=storage.recent_bars,
                           books=storage.books, start=args.start, fill=args.fill, level=args.band_level,
                           orchestration=orchestration, jobs=args.jobs, console=console)
    finally:
        storage.close()
    for name, book in output.summary["books"].items():
        band = book["band"]
        console.print(
            f"book {name} ({', '.join(book['symbols'])}): {book['paper_bars']} bars on paper from "
            f"{book['paper_from'][:10]}, {book['fills']} fills; Sharpe {book['paper']['sharpe']:.2f} on paper against "
            f"{book['backtest_same_span']['sharpe']:.2f} in the backtest; positions equal to the backtest's within "
            f"{book['max_abs_position_difference']:.1e}; outside the {band['level']:.0%} band on "
            f"{band['outside_share']:.1%} of bars ({len(band['alarms'])} alarms)")
    console.print(f"Wrote {args.out}/signals.csv, orders.csv, fills.csv, ledger.csv, band.csv and paper.json "
                  f"(the backtest in {args.out}/backtest; the book's state in {database}) in "
                  f"{time.perf_counter() - started:.0f} s")
    return 0
