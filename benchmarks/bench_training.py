"""Training and inference speed of each TensorFlow expert on CPU and of the gradient-boosted experts.

    .venv/bin/python benchmarks/bench_training.py [--symbol SPX --rows 2000 --epochs 3]

Fits every TensorFlow expert of the catalogue (LSTM, Transformer, the price-based kernel-bank
archetypes) and every gradient-boosted one (LightGBM trend, boosted log-variance, level regression) on
the first ``--rows`` bars of a real series shipped with the project, and prints samples per second:
training (rows x epochs / fit seconds for the networks; rows / fit seconds for the trees; the fit
includes building the network and the calibration fold) and inference (rows / predict seconds). The
networks run single-threaded with deterministic ops, as in the walk-forward.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if importlib.util.find_spec("signal_engine") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import load_prices
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.experts.volatility_combination import variance_forecast
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels
from signal_engine.registry import build, load_catalogue

TENSORFLOW = ("trend_lstm", "trend_transformer", "archetype_crypto_hft", "archetype_equity_intraday",
              "archetype_equity_daily", "archetype_futures_trend", "archetype_low_vol_etf")
BOOSTED = ("trend_lightgbm", "vol_boosted", "levels_regression")


def targets(frame: Any, horizon: int = 5) -> dict[str, np.ndarray]:
    """Labels known at the last row, by kind."""
    labels = make_labels(frame, frame["vol30"].to_numpy(), horizon=horizon, threshold=0.5)
    n = len(frame)
    known = np.arange(n) + horizon <= n - 1
    future = np.column_stack((labels.future_low, labels.future_high))
    future[~known] = np.nan
    return {
        "trend": np.where(known & (labels.trend >= 0), labels.trend, -1),
        "volatility": np.where(np.arange(n) + 1 <= n - 1, labels.next_variance, np.nan),
        "levels": future,
    }


def predict(model: Any, kind: str, frame: Any) -> np.ndarray:
    if kind == "trend":
        return np.asarray(model.predict_proba(frame))
    if kind == "volatility":
        return variance_forecast(model, frame)
    return np.asarray(model.predict(frame))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbol", default="SPX", help="shipped real series (default SPX)")
    parser.add_argument("--rows", type=int, default=2000, help="bars to train on (default 2000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the networks (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        bars = load_prices(export_dataset(args.symbol, Path(folder))).bars.iloc[: args.rows]
    frame = bars.join(feature_frame(bars))
    target = targets(frame)
    catalogue = load_catalogue()
    names = list(BOOSTED) + (list(TENSORFLOW) if tensorflow_available() else [])
    print(f"{args.symbol}, first {len(frame)} bars, {os.cpu_count()} CPUs; networks: {args.epochs} epochs, "
          "single-threaded, deterministic ops")
    print(f"{'expert':<28}{'kind':<12}{'fit s':>8}{'train samples/s':>18}{'predict s':>11}{'infer samples/s':>17}")
    for name in names:
        spec = catalogue[name]
        overrides = {"epochs": args.epochs, "max_train_rows": None} if name in TENSORFLOW else {}
        model = build(name, catalogue, **overrides)
        started = time.perf_counter()
        model.fit(frame, target[spec.kind])
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predict(model, spec.kind, frame)
        predict_seconds = time.perf_counter() - started
        rows = getattr(model, "n_train_rows_", len(frame))
        trained = rows * (args.epochs if name in TENSORFLOW else 1)
        print(f"{name:<28}{spec.kind:<12}{fit_seconds:>8.2f}{trained / fit_seconds:>18,.0f}"
              f"{predict_seconds:>11.2f}{len(frame) / predict_seconds:>17,.0f}")
    if not tensorflow_available():
        print("TensorFlow is not installed (pip install -e .[tf]); the networks were skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
