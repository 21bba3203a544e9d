"""Speed of the vectorised feature layer against the per-symbol pandas reference, in one run.

    .venv/bin/python benchmarks/bench_features.py [--symbols 500 --bars 5000 --baseline-symbols 20]

Builds synthetic geometric-random-walk OHLCV bars (fixed seed), times ``compute_features`` on
the whole (bars, symbols) panel (best of ``--repeats``) and the straightforward pandas
implementation (``signal_engine.features.reference``) symbol by symbol on the first
``--baseline-symbols`` symbols (its ``rolling(...).apply`` regressions are slow), checks that
both agree on those symbols, and prints rows per second, the speed ratio and whether the
aims hold: the whole panel in under 10 s, and at least 10x the rows/s of the pandas loop.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
ComputeFeatures = Callable[..., dict[str, FloatArray]]
ReferenceFrame = Callable[[pd.DataFrame], pd.DataFrame]

PANEL_SECONDS_AIM = 10.0
SPEED_RATIO_AIM = 10.0


@dataclass(frozen=True)
class Timing:
    """Best wall-clock time of a computation over ``rows`` bar-symbol rows."""

    label: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def feature_api() -> tuple[ComputeFeatures, ReferenceFrame]:
    """``compute_features`` and the pandas reference, also from a checkout that is not pip-installed."""
    if importlib.util.find_spec("signal_engine") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from signal_engine.features import compute_features
    from signal_engine.features.reference import reference_feature_frame

    return compute_features, reference_feature_frame


def synthetic_ohlcv(bars: int, symbols: int, seed: int) -> dict[str, FloatArray]:
    """Geometric random walks (1% per bar, prices from $5 to $500) with consistent OHLC and volume."""
    rng = np.random.default_rng(seed)
    start = np.exp(rng.uniform(np.log(5.0), np.log(500.0), symbols))
    close = start * np.exp(np.cumsum(0.01 * rng.standard_normal((bars, symbols)), axis=0))
    open_ = close * np.exp(0.003 * rng.standard_normal((bars, symbols)))
    high = np.maximum(open_, close) * np.exp(0.004 * np.abs(rng.standard_normal((bars, symbols))))
    low = np.minimum(open_, close) * np.exp(-0.004 * np.abs(rng.standard_normal((bars, symbols))))
    volume = rng.lognormal(12.0, 0.6, (bars, symbols))
    return {"open_": open_, "high": high, "low": low, "close": close, "volume": volume}


def symbol_frame(panel: dict[str, FloatArray], symbol: int) -> pd.DataFrame:
    """One symbol's bars as the DataFrame the per-symbol API takes."""
    index = pd.date_range("2000-01-03", periods=panel["close"].shape[0], freq="h")
    columns = {"open": "open_", "high": "high", "low": "low", "close": "close", "volume": "volume"}
    return pd.DataFrame({name: panel[key][:, symbol] for name, key in columns.items()}, index=index)


def best_time(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Fastest of ``repeats`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def max_relative_difference(features: dict[str, FloatArray], reference: list[pd.DataFrame], names: list[str]) -> float:
    """Largest ``|ours - reference|`` over the reference symbols, relative to each feature's mean size."""
    worst = 0.0
    for name in names:
        expected = np.column_stack([frame[name].to_numpy() for frame in reference])
        ours = features[name][:, : expected.shape[1]]
        size = float(np.nanmean(np.abs(expected))) or 1.0
        worst = max(worst, float(np.nanmax(np.abs(ours - expected))) / size)
    return worst


def report(vectorised: Timing, baseline: Timing, agreement: float) -> None:
    ratio = vectorised.rows_per_second / baseline.rows_per_second
    aims = [
        (
            f"whole panel < {PANEL_SECONDS_AIM:.0f} s",
            f"{vectorised.seconds:.2f} s",
            vectorised.seconds < PANEL_SECONDS_AIM,
        ),
        (f"speed ratio >= {SPEED_RATIO_AIM:.0f}x", f"{ratio:,.0f}x", ratio >= SPEED_RATIO_AIM),
    ]
    rows = [(t.label, f"{t.rows:,}", f"{t.seconds:.3f}", f"{t.rows_per_second:,.0f}") for t in (vectorised, baseline)]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for label, row_count, seconds, per_second in rows:
            print(f"{label:<40} rows={row_count:>12} seconds={seconds:>9} rows/s={per_second:>14}")
        print(f"speed ratio (vectorised / per-symbol pandas loop): {ratio:,.1f}x")
        print(f"max difference vs reference (relative to feature size): {agreement:.1e}")
        for aim, value, holds in aims:
            print(f"aim {aim}: {value} -> {'holds' if holds else 'MISSED'}")
        return
    table = Table(title=f"Feature layer speed ({os.cpu_count()} CPUs)")
    for header in ("implementation", "rows", "seconds", "rows/s"):
        table.add_column(header, justify="left" if header == "implementation" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"speed ratio (vectorised / per-symbol pandas loop): [bold]{ratio:,.1f}x[/bold]")
    console.print(f"max difference vs reference (relative to feature size): {agreement:.1e}")
    for aim, value, holds in aims:
        verdict = "[green]holds[/green]" if holds else "[red]MISSED[/red]"
        console.print(f"aim {aim}: {value} -> {verdict}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=500, help="symbols in the panel (default 500)")
    parser.add_argument("--bars", type=int, default=5000, help="bars per symbol (default 5000)")
    parser.add_argument(
        "--baseline-symbols", type=int, default=20, help="symbols run through the pandas loop (default 20)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the panel, best kept (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic prices (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compute_features, reference_feature_frame = feature_api()
    panel = synthetic_ohlcv(args.bars, args.symbols, args.seed)
    baseline_symbols = min(args.baseline_symbols, args.symbols)

    panel_seconds, features = best_time(lambda: compute_features(**panel), args.repeats)
    frames = [symbol_frame(panel, symbol) for symbol in range(baseline_symbols)]
    loop_seconds, reference = best_time(lambda: [reference_feature_frame(frame) for frame in frames], 1)

    vectorised = Timing(f"compute_features, {args.symbols} symbols at once", args.bars * args.symbols, panel_seconds)
    baseline = Timing(
        f"pandas reference, {baseline_symbols} symbols one by one", args.bars * baseline_symbols, loop_seconds
    )
    report(vectorised, baseline, max_relative_difference(features, reference, list(reference[0].columns)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
