"""What many symbols cost on one machine: wall time, CPU time and peak memory of the backtest and of training.

    .venv/bin/python benchmarks/bench_scale.py [--symbols 1 10 50 200] [--bars 1500] [--cores 1 0]
        [--tasks backtest train]

The universe is built from real series: for symbol k, a stationary block bootstrap (mean block 20 bars, seed k)
of the daily bars of SPX, IXIC and GOOG (shipped with the dependencies) and MSFT (development series), taken in
turn: whole bars are resampled as their close-to-close log return and their open, high and low relative to the
close, so each symbol keeps real returns, ranges, volatility clustering within blocks and volume, and no two
symbols are the same path. Each cell runs in a fresh process (``signal-engine backtest`` or ``train``, the
``quick`` profile with its four timeframe models, the demo's settings) with ``--jobs`` cores (0: every core):
wall time, CPU time of the process and every worker it waited for (``RUSAGE_CHILDREN``), and the peak of the
summed resident memory of the process tree (sampled every 0.2 s with psutil).

Baseline: one symbol on one core, measured in the same run; every row prints its ratio to it and the cost per
symbol-bar, and the last lines project 500 symbols on this machine from the largest cell (its CPU time per
symbol-bar, and its wall time per symbol with the cores that ran it fastest).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

if importlib.util.find_spec("signal_engine") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import load_prices

SOURCES = ("SPX", "IXIC", "GOOG", "MSFT")
MEAN_BLOCK = 20


def resampled_bars(source: pd.DataFrame, bars: int, seed: int) -> pd.DataFrame:
    """``bars`` daily bars from ``source`` by a stationary block bootstrap of whole bars (module docstring)."""
    close = source["close"].to_numpy(dtype=float)
    step = np.log(close[1:] / close[:-1])
    relative = {name: np.log(source[name].to_numpy(dtype=float)[1:] / close[1:]) for name in ("open", "high", "low")}
    volume = source["volume"].to_numpy(dtype=float)[1:] if "volume" in source else np.ones(len(step))
    rng = np.random.default_rng(seed)
    picks = np.empty(bars, dtype=np.int64)
    picks[0] = rng.integers(len(step))
    for i in range(1, bars):
        picks[i] = rng.integers(len(step)) if rng.random() < 1.0 / MEAN_BLOCK else (picks[i - 1] + 1) % len(step)
    new_close = 100.0 * np.exp(np.cumsum(step[picks]))
    frame = pd.DataFrame({name: new_close * np.exp(values[picks]) for name, values in relative.items()})
    frame["close"] = new_close
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    frame["volume"] = np.round(volume[picks])
    frame.index = pd.bdate_range("2000-01-03", periods=bars, name="Date")
    return frame[["open", "high", "low", "close", "volume"]]


def write_universe(folder: Path, symbols: int, bars: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = {name: load_prices(export_dataset(name, folder / "sources"), name).bars for name in SOURCES}
    paths = []
    for k in range(symbols):
        frame = resampled_bars(sources[SOURCES[k % len(SOURCES)]], bars, seed=k)
        path = folder / f"S{k:04d}.csv"
        frame.rename(columns=str.capitalize).to_csv(path, float_format="%.6f")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Cell:
    task: str
    symbols: int
    cores: int
    wall_s: float
    cpu_s: float
    peak_mb: float


def _tree_rss(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def measure(task: str, paths: list[Path], cores: int, work: Path) -> Cell:
    out = work / f"{task}-{len(paths)}-{cores}"
    if task == "backtest":
        command = [sys.executable, "-m", "signal_engine", "backtest", "--out", str(out), "--jobs", str(cores)]
    else:
        command = [sys.executable, "-m", "signal_engine", "train", "--registry", str(out / "models"), "--jobs",
                   str(cores)]
    for path in paths:
        command += ["--prices", str(path)]
    environment = {**os.environ, "SIGNAL_ENGINE_JOBS": str(cores)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({process.returncode}):\n{stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Cell(task, len(paths), cores, wall, cpu, peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--bars", type=int, default=1500, help="bars per symbol (default 1500, about six years)")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 0], help="--jobs values (0: every core)")
    parser.add_argument("--tasks", nargs="+", choices=("backtest", "train"), default=["backtest", "train"])
    parser.add_argument("--skip-train", action="store_true", help="measure the backtest only (--tasks backtest)")
    parser.add_argument("--work", type=Path, help="keep the universe and outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    tasks = tuple(t for t in ("backtest", "train") if t in args.tasks and not (args.skip_train and t == "train"))
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        work = args.work or Path(scratch)
        universe = write_universe(work / "universe", max(args.symbols), args.bars)
        print(f"{max(args.symbols)} symbols of {args.bars} daily bars (block bootstrap of {', '.join(SOURCES)}), "
              f"{cpus} CPUs; quick profile, four timeframe models")
        cells: list[Cell] = []
        for task in tasks:
            for cores in args.cores:
                for n in sorted(args.symbols):
                    cell = measure(task, universe[:n], cores, work)
                    cells.append(cell)
                    base = next(c for c in cells if c.task == task)
                    per = cell.cpu_s / (cell.symbols * args.bars) * 1e3
                    print(f"{task:<9} symbols {n:>4}  cores {cores or cpus:>2}  wall {cell.wall_s:8.1f} s  "
                          f"cpu {cell.cpu_s:8.1f} s  peak {cell.peak_mb:7.0f} MB  cpu ms/symbol-bar {per:6.3f}  "
                          f"wall x{cell.wall_s / base.wall_s:6.1f} of {base.symbols} symbol(s), "
                          f"{base.cores or cpus} core(s)", flush=True)
        for task in tasks:
            largest = max((c for c in cells if c.task == task), key=lambda c: (c.symbols, -c.wall_s))
            per_symbol_bar = largest.cpu_s / (largest.symbols * args.bars)
            cpu_hours = per_symbol_bar * 500 * args.bars / 3600
            wall_hours = largest.wall_s / largest.symbols * 500 / 3600
            print(f"projected {task}, 500 symbols x {args.bars} bars: {cpu_hours:.1f} CPU hours, {wall_hours:.1f} h of "
                  f"wall time with {largest.cores or cpus} core(s) (the {largest.symbols}-symbol cell's fastest wall "
                  "time per symbol; linear in symbols)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
