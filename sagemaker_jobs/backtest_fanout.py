"""SageMaker Processing entry: a batch or the merge of a fanned-out backtest, for runs too long for Lambda.

The ``BacktestFanOut`` state machine (step_functions/backtest_fanout.py) starts it in the CPU training image
(``python3 /opt/ml/code/backtest_fanout.py ...``); SageMaker copies the inputs in before and the output out after::

    batch --inputs /opt/ml/processing/input/run --batch I/N --out /opt/ml/processing/output/batch
    merge --inputs /opt/ml/processing/input/run --batches /opt/ml/processing/input/batches
          --out /opt/ml/processing/output/result

``--inputs`` holds the run's ``inputs/`` (``run.json``, ``config.json``, ``prices/``); ``--batches`` holds one
folder per batch, named by its number. A bad input exits 2, anything else 1, each with one line on stderr, which
the job's CloudWatch log shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from signal_engine.errors import SignalEngineError
from signal_engine.fanout import BatchSpec
from signal_engine.fanout_run import RunInputs, merge_folder, run_batch_folder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backtest_fanout.py", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    batch = steps.add_parser("batch", help="walk forward one batch of the run")
    batch.add_argument("--inputs", type=Path, required=True)
    batch.add_argument("--batch", required=True, metavar="I/N")
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--jobs", type=int, default=None, help="processes (default: every core of the instance)")
    merge = steps.add_parser("merge", help="merge every batch of the run")
    merge.add_argument("--inputs", type=Path, required=True)
    merge.add_argument("--batches", type=Path, required=True)
    merge.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.step == "batch":
            manifest = run_batch_folder(args.inputs, BatchSpec.parse(args.batch), args.out, jobs=args.jobs)
            print(json.dumps({"batch": args.batch, "symbols": [e["symbol"] for e in manifest["symbols"]]}))
        else:
            count = int(RunInputs.read(args.inputs).document["batches"])
            folders = [args.batches / str(i) for i in range(1, count + 1)]
            print(json.dumps(merge_folder(args.inputs, folders, args.out), default=str))
    except SignalEngineError as exc:
        print(f"backtest_fanout.py {args.step}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        print(f"backtest_fanout.py {args.step}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
