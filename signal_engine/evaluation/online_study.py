"""Online learning between refits against frozen models, on development series (``moe.online``).

The question: between two refits, should the gate and the meta-model combiner learn from each label as it
becomes known (:mod:`signal_engine.moe.online`), or stay as fitted? Declared before any result was seen:

- Series: the project's development series (MSFT daily, BTCUSD and AAPL hourly: ``signal-engine datasets
  --development``) and any daily files given with ``--prices`` (the study in docs/research/online-learning.md
  used the OHLC files of the development price panel: NDX, N225, JFC and Bitcoin on Bitstamp; its close-only
  FX files carry no ranges for the range features, and JKSE and LTCUSD are too short for a quick walk-forward's
  test span). Costs: the development series' own, 5 bp per unit traded for the others.
- Measure: the walk-forward (``quick`` profile, multi-stage engine off: it does not read the gate), the MoE's
  own strategy net of costs (the stream that online learning changes), cells ``off``, ``on`` (the config's
  rates, gate 0.05 and meta 0.01) and ``slow`` (a fifth of each). Per series, the paired stationary-bootstrap
  interval (90%) of the Sharpe difference against ``off``; pooled over the daily series, the same interval on
  the series' returns put end to end, each scaled to the ``off`` strategy's volatility so that no series
  weighs more for being more volatile.
- Rule: a cell becomes the default only if its pooled interval lies above 0 and it wins on most series;
  otherwise online learning stays off.

Run: ``python -m signal_engine.evaluation.online_study --out DIR [--prices NDX.csv ...] [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CELLS: dict[str, dict[str, Any]] = {
    "off": {"enabled": False},
    "on": {"enabled": True, "gate_rate": 0.05, "meta_rate": 0.01},
    "slow": {"enabled": True, "gate_rate": 0.01, "meta_rate": 0.002},
}
DEVELOPMENT = ("MSFT", "BTCUSD", "AAPL")


def _measure(path: str, symbol: str, cell: str) -> tuple[str, str, pd.Series, float]:
    from threadpoolctl import threadpool_limits

    from signal_engine.cli import with_dataset_costs
    from signal_engine.config import apply_overrides, load_config
    from signal_engine.data.loader import load_prices
    from signal_engine.evaluation.backtest import run_symbol

    config = with_dataset_costs(apply_overrides(load_config("quick"), {
        "suite": {"enabled": False}, "moe": {"multistage": False, "online": CELLS[cell]}}, source="online study"))
    series = load_prices(path, symbol)
    started = time.perf_counter()
    with threadpool_limits(1):
        result = run_symbol(series, config)
    return symbol, cell, result.returns["moe"], time.perf_counter() - started


def run_study(out: Path, prices: Sequence[Path], jobs: int = 2) -> dict[str, Any]:
    from joblib import Parallel, delayed

    from signal_engine.data.datasets import export_dataset
    from signal_engine.data.loader import load_prices
    from signal_engine.evaluation.metrics import annualised_sharpe
    from signal_engine.evaluation.planning import periods_per_year
    from signal_engine.evaluation.significance import sharpe_difference

    out.mkdir(parents=True, exist_ok=True)
    files = {symbol: export_dataset(symbol, out / "data") for symbol in DEVELOPMENT}
    files.update({path.stem.split("_")[0]: path for path in prices})
    started = time.perf_counter()
    measured = Parallel(n_jobs=jobs)(delayed(_measure)(str(path), symbol, cell)
                                     for symbol, path in files.items() for cell in CELLS)
    returns = {(symbol, cell): series for symbol, cell, series, _ in measured}
    seconds = {f"{symbol}/{cell}": round(s, 1) for symbol, cell, _, s in measured}
    report: dict[str, Any] = {"cells": CELLS, "series": {}, "pooled_daily": {}, "seconds": seconds}
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {cell: [] for cell in CELLS if cell != "off"}
    for symbol, path in files.items():
        bars = load_prices(path, symbol).bars
        ppy = periods_per_year(bars.index.to_numpy())
        off = returns[(symbol, "off")].to_numpy()
        row: dict[str, Any] = {"bars": len(off), "periods_per_year": round(ppy, 1),
                               "sharpe": {cell: annualised_sharpe(returns[(symbol, cell)].to_numpy(), ppy)
                                          for cell in CELLS}}
        for cell in pooled:
            other = returns[(symbol, cell)].to_numpy()
            row[f"{cell}_minus_off"] = sharpe_difference(other, off, ppy).to_dict()
            if ppy < 400:  # daily bars
                scale = float(np.std(off)) or 1.0
                pooled[cell].append((other / scale, off / scale))
        report["series"][symbol] = row
    for cell, pairs in pooled.items():
        a = np.concatenate([p[0] for p in pairs])
        b = np.concatenate([p[1] for p in pairs])
        wins = sum(report["series"][s]["sharpe"][cell] > report["series"][s]["sharpe"]["off"] for s in files)
        report["pooled_daily"][cell] = {**sharpe_difference(a, b, 252.0).to_dict(), "wins": wins,
                                        "of": len(files)}
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    passing = [cell for cell, p in report["pooled_daily"].items() if p["low"] > 0 and p["wins"] > p["of"] / 2]
    report["default"] = max(passing, key=lambda c: report["pooled_daily"][c]["difference"]) if passing else "off"
    return report


def print_report(report: dict[str, Any]) -> None:
    print("| series | bars | Sharpe off | on | slow | on - off [90%] | slow - off [90%] |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for symbol, row in report["series"].items():
        s = row["sharpe"]
        cells = [f"{row[f'{c}_minus_off']['difference']:+.2f} [{row[f'{c}_minus_off']['low']:+.2f}, "
                 f"{row[f'{c}_minus_off']['high']:+.2f}]" for c in ("on", "slow")]
        print(f"| {symbol} | {row['bars']} | {s['off']:.2f} | {s['on']:.2f} | {s['slow']:.2f} | {cells[0]} | "
              f"{cells[1]} |")
    for cell, p in report["pooled_daily"].items():
        print(f"pooled daily, {cell} - off: {p['difference']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], "
              f"p = {p['p_value']:.2f}, wins {p['wins']} of {p['of']}")
    print(f"default by the declared rule: {report['default']}; wall time {report['wall_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prices", type=Path, nargs="*", default=[])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run_study(args.out, args.prices, args.jobs)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
