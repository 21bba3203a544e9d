"""Time of ``render_report`` (the HTML report and its 29 figures) on a small real backtest, against the
two-draw rendering it replaced, measured in the same run.

    .venv/bin/python benchmarks/bench_report.py [--bars 1000 --repeats 3 --cache out/bench/report.pkl]

The backtest: the shipped GOOG, SPX and EURUSD series cut to their first ``--bars`` bars, the ``quick`` profile
with the real-data tests' one-model book (``tests/fixtures/configs.py`` ``ONE_MODEL_BOOK``): two books (daily,
hourly), three symbol sections. Its walk-forward and books are built once (and pickled under ``--cache``, keyed
by the package's source outside ``signal_engine/report``, the bars and the config); only the report is timed.

Renderings, each timed ``--repeats`` times in turn (CPU seconds of the process, the best kept):

- ``savefig_tight`` (the baseline, the report as it was drawn before): every figure saved with
  ``savefig(bbox_inches="tight")``, which draws it twice (a layout pass, then the picture), the multi-panel
  figures laid out by matplotlib's constrained layout, titles placed by matplotlib, log axes labelled in
  mathtext, the garbage collector's full passes walking every object of the process;
- ``single_draw`` (the report's own): one draw per figure at a fixed layout, cropped to the drawn pixels, titles
  at a fixed height, plain log labels, objects older than the report frozen out of the collector's passes.

Prints each rendering's best time, the ratio against the baseline, and whether two renders of the report gave
the same bytes (tests compare reports byte for byte between runs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from rich.console import Console

import signal_engine
from signal_engine.cli import load_configs
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import load_prices
from signal_engine.evaluation.portfolio import build_books, portfolio_section
from signal_engine.pipeline import build_metrics, check_series, walk_forward
from signal_engine.report import figures, html, monitoring, render_report

SYMBOLS = ("GOOG", "SPX", "EURUSD")
# tests/fixtures/configs.py ONE_MODEL_BOOK (a copy: benchmarks do not import the tests)
ONE_MODEL_BOOK = """walk_forward:
  initial_window: 300
  validation_bars: 150
  refit_every: 500
  min_test_bars: 100
trend:
  n_estimators: 40
suite:
  enabled: false
orchestration:
  timeframes: [short]
  max_allocation: 1.0
"""
BASELINE = "savefig_tight"
RENDERING = "single_draw"

Inputs = tuple[list[Any], dict[str, Any], list[Any]]


def source_key(bars: int) -> str:
    """The package's source outside the report, the bars and the config: what the pickled backtest depends on."""
    digest = hashlib.sha256(f"{bars} {SYMBOLS} {ONE_MODEL_BOOK}".encode())
    package = Path(signal_engine.__file__).parent
    for path in sorted(package.rglob("*.py")):
        if "report" not in path.relative_to(package).parts:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def backtest_inputs(bars: int, jobs: int) -> Inputs:
    """``render_report``'s arguments for the backtest of the module's docstring (as ``write_backtest`` passes)."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        paths = []
        for symbol in SYMBOLS:
            path = export_dataset(symbol, data)
            pd.read_csv(path).head(bars).to_csv(path, index=False)
            paths.append(path)
        config_path = data / "config.yaml"
        config_path.write_text(ONE_MODEL_BOOK)
        config, orchestration = load_configs("quick", config_path)
        series = [load_prices(p) for p in paths]
    console = Console(stderr=True, quiet=True)
    check_series(series, config, orchestration)
    results, timeframes = walk_forward(series, config, console, orchestration, jobs)
    run = build_books(series, results, timeframes, config, orchestration)
    metrics = build_metrics(results, config)
    metrics["portfolio"] = portfolio_section(run)
    return results, metrics, list(run.books)


def cached_inputs(bars: int, jobs: int, cache: Path | None) -> Inputs:
    if cache is None:
        return backtest_inputs(bars, jobs)
    key = source_key(bars)
    if cache.exists():
        stored_key, inputs = pickle.loads(cache.read_bytes())
        if stored_key == key:
            return inputs
    inputs = backtest_inputs(bars, jobs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps((key, inputs)))
    return inputs


def savefig_tight_png(figure: Figure) -> bytes:
    """The baseline: ``savefig`` with a tight bounding box (two draws of the figure)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figures.DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def constrained_layout(figure: Figure, *args: float, **kwargs: float) -> None:
    """The baseline's layout of the multi-panel figures in place of ``fixed_margins``."""
    figure.set_layout_engine("constrained")


def default_log_labels(axis: Axis) -> None:
    """The baseline's log axes: matplotlib's mathtext labels in place of ``plain_log_labels``."""


@contextlib.contextmanager
def every_object_collected() -> Iterator[None]:
    """The baseline's garbage collection: no objects frozen out of its passes."""
    yield


@contextlib.contextmanager
def rendering(name: str) -> Iterator[None]:
    """The report rendered as ``name`` says (the module's docstring) while inside."""
    if name == RENDERING:
        yield
        return
    saved = (figures._png, monitoring._png, monitoring.fixed_margins, figures.TITLE_Y, figures.plain_log_labels,
             monitoring.plain_log_labels, html._old_objects_left_out_of_collections)
    figures._png = monitoring._png = savefig_tight_png
    monitoring.fixed_margins = constrained_layout
    figures.TITLE_Y = None
    figures.plain_log_labels = monitoring.plain_log_labels = default_log_labels
    html._old_objects_left_out_of_collections = every_object_collected
    try:
        yield
    finally:
        (figures._png, monitoring._png, monitoring.fixed_margins, figures.TITLE_Y, figures.plain_log_labels,
         monitoring.plain_log_labels, html._old_objects_left_out_of_collections) = saved


def timed_render(render: Callable[[], str], name: str, times: dict[str, list[float]], walls: dict[str, list[float]],
                 reports: dict[str, list[str]]) -> None:
    """One render as ``name``: its CPU seconds into ``times`` (steadier than wall time on a shared machine; the
    report is drawn in one thread), its wall seconds into ``walls``, its HTML into ``reports``."""
    with rendering(name):
        started, wall = time.process_time(), time.perf_counter()
        reports.setdefault(name, []).append(render())
        times.setdefault(name, []).append(time.process_time() - started)
        walls.setdefault(name, []).append(time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the backtest (rebuilt when stale)")
    args = parser.parse_args()
    started = time.perf_counter()
    results, metrics, books = cached_inputs(args.bars, args.jobs, args.cache)
    print(f"backtest of {', '.join(SYMBOLS)} ({args.bars} bars each): {len(books)} books, "
          f"{time.perf_counter() - started:.1f} s")

    def render() -> str:
        return render_report(results, metrics, books=books)

    render()  # fonts, caches: paid once by any process
    times: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    reports: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name in (BASELINE, RENDERING):
            timed_render(render, name, times, walls, reports)
    baseline = min(times[BASELINE])
    for name in (BASELINE, RENDERING):
        best = min(times[name])
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:14s} best {best:5.2f} CPU s ({runs}; wall best {min(walls[name]):5.2f} s)  "
              f"{baseline / best:4.2f}x the baseline's speed  report {len(reports[name][0]) / 1e6:.2f} MB")
    same = all(r == reports[RENDERING][0] for r in reports[RENDERING])
    print(f"{RENDERING}: {len(reports[RENDERING])} renders, identical bytes: {same}")


if __name__ == "__main__":
    main()
