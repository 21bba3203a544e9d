"""Cost of one tuned fit of the pooled trend network (``train --tune`` with ``moe.experts.trend: trend_pooled``), on
whatever device TensorFlow sees.

    .venv/bin/python benchmarks/bench_pooled_tuning.py [--symbols NDX N225] [--trials 10]

Fits the network once as the trend job does (``fit_pooled_trend``, the ``pooled_trend`` settings of the ``quick``
profile, every label known at each series' last bar), then tunes it on the same rows (``fit_tuned_pooled_trend``:
an Optuna study of ``--trials`` trials, then the final fit with the chosen settings), and prints the seconds of
each, the trials pruned, the seconds per trial and the refits of the pooled walk-forward (each tuned the same way
when tuning is on, so the trend job's cost is about refits x the study's seconds). The first fit includes
TensorFlow's start-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

if importlib.util.find_spec("signal_engine") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_pooled_training import load

from signal_engine.config import POOLED_TREND, apply_overrides, load_config
from signal_engine.evaluation.pooled_walkforward import common_schedule
from signal_engine.experts.tf_runtime import gpu_compute_capabilities, tensorflow
from signal_engine.workflow.training import fit_pooled_trend, fit_tuned_pooled_trend, trend_panel
from signal_engine.workflow.tuning import TuningRun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", nargs="*", default=["NDX", "N225"])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    config = apply_overrides(load_config("quick"), {"moe": {"experts": {"trend": POOLED_TREND}}})
    panel = trend_panel(load(args.symbols), config)
    capabilities = gpu_compute_capabilities(tensorflow())
    print(f"device {'GPU ' + str(capabilities) if capabilities else 'CPU'}, {len(panel)} series "
          f"({', '.join(f'{k}: {len(s.frame)} bars' for k, s in panel.items())})", flush=True)
    started = time.perf_counter()
    plain = fit_pooled_trend(panel, config)
    print(f"untuned fit: {plain.epochs_run_} epochs, {time.perf_counter() - started:.1f} s "
          "(TensorFlow's start-up included)", flush=True)
    started = time.perf_counter()
    plain = fit_pooled_trend(panel, config)
    untuned = time.perf_counter() - started
    print(f"untuned fit again: {plain.epochs_run_} epochs, {untuned:.1f} s", flush=True)
    started = time.perf_counter()
    model, record = fit_tuned_pooled_trend(panel, config, TuningRun(enabled=True, trials=args.trials,
                                                                    timeout_s=None), None)
    tuned = time.perf_counter() - started
    print(f"tuned fit: {record['trials']} trials ({record['pruned']} pruned), best tail log loss "
          f"{record['best_value']}, chosen {record['params']}, final fit {model.epochs_run_} epochs; "
          f"{tuned:.1f} s in all, {(tuned - untuned) / record['trials']:.1f} s a trial", flush=True)
    refits = common_schedule({k: s.frame.index for k, s in panel.items()}, config.walk_forward,
                             from_initial_window=True)
    print(f"pooled walk-forward: {len(refits)} refits -> about {len(refits) * tuned / 60:.0f} min tuned "
          f"against {len(refits) * untuned / 60:.0f} min untuned on this device", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
