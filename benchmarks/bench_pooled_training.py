"""Training throughput of the pooled trend expert as the training workflow fits it (``moe.experts.trend:
trend_pooled``), on whatever device TensorFlow sees.

    .venv/bin/python benchmarks/bench_pooled_training.py [--symbols MSFT ...] [--repeats 2]

Fits ``signal_engine.workflow.training.fit_pooled_trend`` (one network over every series, the ``pooled_trend``
settings of the ``quick`` profile, every label known at each series' last bar) on the daily development series and
prints, per fit, the training samples per second of its gradient steps (each epoch's rows through the ``tf.data``
pipeline; validation passes and calibration are not counted) and the whole fit's seconds, with the Keras precision
policy in force (float32 on CPU, mixed float16 on a Tensor Core GPU). The first fit includes TensorFlow's start-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

if importlib.util.find_spec("signal_engine") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signal_engine.config import POOLED_TREND, apply_overrides, load_config
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.sizing_vol_study import daily_development_symbols
from signal_engine.experts.tf_runtime import gpu_compute_capabilities, precision_policy, tensorflow
from signal_engine.workflow.training import fit_pooled_trend, trend_panel


def load(symbols: list[str]) -> list[PriceSeries]:
    series = []
    for symbol in symbols:
        with tempfile.TemporaryDirectory() as folder:
            series.append(load_prices(export_dataset(symbol, Path(folder)), symbol))
    return series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", nargs="*", default=daily_development_symbols())
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    config = apply_overrides(load_config("quick"), {"moe": {"experts": {"trend": POOLED_TREND}}})
    panel = trend_panel(load(args.symbols), config)
    tf = tensorflow()
    capabilities = gpu_compute_capabilities(tf)
    device = f"GPU {capabilities}" if capabilities else "CPU"
    print(f"device {device}, precision {precision_policy(capabilities)}, {len(panel)} series")
    for repeat in range(1, args.repeats + 1):
        model = fit_pooled_trend(panel, config)
        print(f"fit {repeat}: {model.epochs_run_} epochs, {model.samples_seen_} samples in "
              f"{model.train_seconds_:.2f} s of gradient steps -> {model.samples_seen_ / model.train_seconds_:,.0f} "
              f"samples/s; whole fit {model.fit_seconds_:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
