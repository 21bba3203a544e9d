"""`signal-engine backtest-batch` and `backtest-merge`: a backtest fanned out over batches of symbols."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console


def register(subparsers: Any) -> None:
    """Add the backtest-batch and backtest-merge sub-commands."""
    batch = subparsers.add_parser(
        "backtest-batch", help="walk forward one batch of a backtest's symbols; write their results for the merge")
    batch.add_argument("--prices", type=Path, action="append", required=True, metavar="FILE.csv",
                       help="every price file of the run (as for backtest); the batch walks forward its share")
    batch.add_argument("--symbol", action="append", metavar="SYMBOL",
                       help="symbol for each --prices file, in order (default: the file name)")
    batch.add_argument("--batch", required=True, metavar="I/N",
                       help="this batch's number from 1 and the number of batches, e.g. 2/5 (symbols sorted by "
                            "name, dealt round robin)")
    batch.add_argument("--out", type=Path, required=True, metavar="BATCH_DIR")
    _add_config_options(batch)
    batch.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="processes for the batch's walk-forward (default: every core); any N gives the same "
                            "results")
    batch.set_defaults(handler=_batch)

    merge = subparsers.add_parser(
        "backtest-merge", help="merge the batches of one backtest into its signals, metrics, events and report")
    merge.add_argument("batches", type=Path, nargs="+", metavar="BATCH_DIR", help="every batch folder of the run")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR")
    _add_config_options(merge)
    merge.set_defaults(handler=_merge)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML or JSON overrides of the profile (the same for every batch and the merge)")


def _batch(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.cli import load_configs
    from signal_engine.fanout import BatchSpec, run_backtest_batch

    spec = BatchSpec.parse(args.batch)
    config, orchestration = load_configs(args.profile, args.config)
    run_backtest_batch(args.prices, args.out, config, spec, symbols=args.symbol, console=console,
                       orchestration=orchestration, jobs=args.jobs)
    return 0


def _merge(args: argparse.Namespace, console: Console) -> int:
    from signal_engine.cli import load_configs, print_summary
    from signal_engine.fanout import merge_batches

    config, orchestration = load_configs(args.profile, args.config)
    started = time.perf_counter()
    output = merge_batches(args.batches, args.out, config, console=console, orchestration=orchestration)
    print_summary(output, console, time.perf_counter() - started)
    return 0
