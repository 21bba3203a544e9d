"""Re-choosing a few orchestration defaults for the current MoE, on the first half of each book only.

The timeframe models' walk-forward signals are computed once per symbol (the pipeline's own code path,
``run_timeframe_models``, the ``quick`` profile with the shipped series' costs) from ``out/demo/data/*.csv``
and cached as pickles under ``--cache``; every variant then re-runs only the orchestrator (``build_books``,
one book per bar frequency, as ``make demo`` does).

Protocol, declared before any result was looked at:

- Variants (overrides of ``OrchestrationConfig``, the others at the defaults the study started from,
  ``STUDY_BASE``): ``VARIANTS`` below. ``(current defaults)`` is added as the reference of the ratios.
- Split: each book's timeline is cut at its middle bar (by bar index); the first half's and the second
  half's returns are scored separately (max drawdown is path dependent, so each half starts a new equity
  curve), beside the full span.
- Rule, on the daily book (SPX, IXIC, GOOG) only: among the variants whose first-half max drawdown is no
  worse than 60% of the equal-weight buy & hold's first-half max drawdown, take the highest first-half
  Sharpe. It becomes the new default only if it differs from the defaults and its second-half Sharpe is not
  below the defaults'. The hourly book (EURUSD) is reported, not used for the choice.

    .venv/bin/python benchmarks/bench_orchestration.py [--cache out/bench/orchestration] [--data out/demo/data]
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from signal_engine.cli import with_dataset_costs
from signal_engine.config import RunConfig, load_config
from signal_engine.data import load_prices
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.portfolio import (
    bar_frequency,
    book_metrics,
    build_books,
    run_timeframe_models,
    series_periods_per_year,
)

SYMBOLS = ("SPX", "IXIC", "GOOG", "EURUSD")
CHOICE_BOOK = "daily"
DD_FRACTION_OF_BUY_AND_HOLD = 0.6
DD_OFF = {"drawdown_start": 0.97, "drawdown_limit": 0.98, "emergency_drawdown": 0.99}
DD_LATER = {"drawdown_start": 0.10, "drawdown_limit": 0.20, "emergency_drawdown": 0.30}

# The defaults the study started from (before it, the drawdown was measured from the all-time high): every
# variant is these plus its own overrides, so the study reproduces after the defaults it chose were adopted.
STUDY_BASE: dict[str, Any] = {"drawdown_lookback": 0}
CURRENT = "(current defaults)"

# name -> overrides given the book's bars per year (so a "one year" window is a year on any bar frequency)
VARIANTS: dict[str, Callable[[float], dict[str, Any]]] = {
    "defaults": lambda ppy: {},
    "dd_later_10_20_30": lambda ppy: dict(DD_LATER),
    "dd_off": lambda ppy: dict(DD_OFF),
    "dd_lookback_1y": lambda ppy: {"drawdown_lookback": round(ppy)},
    "vol_target_off": lambda ppy: {"target_vol_annual": 10.0},
    "vol_target_25": lambda ppy: {"target_vol_annual": 0.25},
    "temperature_0.5": lambda ppy: {"allocation_temperature": 0.5},
    "temperature_2": lambda ppy: {"allocation_temperature": 2.0},
    "conflict_confidence": lambda ppy: {"conflict_strategy": "confidence"},
    "conflict_hedge": lambda ppy: {"conflict_strategy": "hedge"},
    "harmony_off": lambda ppy: {"harmony_amplification": 0.0},
    "dd_later_vol_off": lambda ppy: {**DD_LATER, "target_vol_annual": 10.0},
}


def walk_forward(series: PriceSeries, config: RunConfig, cache: Path) -> tuple[Any, dict[str, Any]]:
    """The symbol's MoE baseline and timeframe models, from the cache when there."""
    path = cache / f"{series.symbol}.pkl"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)  # our own cache, written below
    result = run_timeframe_models(series, config)
    with path.open("wb") as f:
        pickle.dump(result, f)
    return result


def halves(positions: Any, net: Any, ppy: float) -> dict[str, dict[str, float]]:
    """Metrics of the first half, the second half and the full span (cut at the middle bar)."""
    n = len(net)
    h = n // 2
    return {
        "first": book_metrics(positions.iloc[: h + 1], net.iloc[: h + 1], ppy),
        "second": book_metrics(positions.iloc[h:], net.iloc[h:], ppy),
        "full": book_metrics(positions, net, ppy),
    }


def measure(series: list[PriceSeries], runs: Mapping[str, Any], config: RunConfig) -> dict[str, Any]:
    """variant -> book -> strategy -> half -> metrics (buy & hold only under ``defaults``)."""
    groups: dict[str, list[PriceSeries]] = {}
    for s in series:
        groups.setdefault(bar_frequency(s), []).append(s)
    table: dict[str, Any] = {}
    for variant in [*VARIANTS, CURRENT]:
        table[variant] = {}
        for book_name, members in groups.items():
            ppy = float(np.mean([series_periods_per_year(s, config) for s in members]))
            overrides = {} if variant == CURRENT else {**STUDY_BASE, **VARIANTS[variant](ppy)}
            # build_books writes the book's position into each baseline's signals, and the baseline is also
            # the timeframe model of its horizon: every variant starts from a fresh copy of the walk-forwards
            fresh = {s.symbol: copy.deepcopy(runs[s.symbol]) for s in members}
            run = build_books(members, [fresh[s.symbol][0] for s in members],
                              {s.symbol: fresh[s.symbol][1] for s in members}, config, overrides)
            book = run.books[0]
            strategies = ["orchestrated", "baseline_buy_and_hold", "moe"] if variant == "defaults" else [
                "orchestrated"]
            table[variant][book_name] = {
                k: halves(book.positions[k], book.returns[k], ppy) for k in strategies}
            table[variant][book_name]["span"] = [str(book.returns.index[0]), str(book.returns.index[n // 2]),
                                                 str(book.returns.index[-1])] if (n := len(book.returns)) else []
    return table


def choose(table: Mapping[str, Any]) -> tuple[str | None, float]:
    """The pre-declared rule on the daily book's first half; returns (variant or None, the drawdown limit)."""
    bh = table["defaults"][CHOICE_BOOK]["baseline_buy_and_hold"]["first"]["max_drawdown"]
    limit = DD_FRACTION_OF_BUY_AND_HOLD * bh
    passing = {v: t[CHOICE_BOOK]["orchestrated"]["first"] for v, t in table.items()
               if v != CURRENT and t[CHOICE_BOOK]["orchestrated"]["first"]["max_drawdown"] >= limit}
    if not passing:
        return None, limit
    return max(passing, key=lambda v: passing[v]["sharpe"]), limit


def print_table(table: Mapping[str, Any]) -> None:
    books = list(table["defaults"])
    for book in books:
        span = table["defaults"][book]["span"]
        print(f"\n## {book} book: first half {span[0][:10]} to {span[1][:10]}, second half to {span[2][:10]}")
        print("| variant | 1st Sharpe | 1st max DD | 2nd Sharpe | 2nd max DD | full Sharpe | full max DD "
              "| full turnover | full Sharpe / current | full Sharpe - current |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        base = table[CURRENT][book]["orchestrated"]["full"]["sharpe"]
        rows = [(v, table[v][book]["orchestrated"]) for v in table]
        rows += [(f"({k})", table["defaults"][book][k]) for k in ("moe", "baseline_buy_and_hold")]
        for name, m in rows:
            ratio = m["full"]["sharpe"] / base if base else float("nan")
            print(f"| {name} | {m['first']['sharpe']:.2f} | {m['first']['max_drawdown']:.1%} "
                  f"| {m['second']['sharpe']:.2f} | {m['second']['max_drawdown']:.1%} "
                  f"| {m['full']['sharpe']:.2f} | {m['full']['max_drawdown']:.1%} "
                  f"| {m['full']['turnover']:.1f} | {ratio:.2f} | {m['full']['sharpe'] - base:+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("out/bench/orchestration"))
    parser.add_argument("--data", type=Path, default=Path("out/demo/data"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--symbols", nargs="*", default=list(SYMBOLS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    config = with_dataset_costs(load_config(args.profile))
    series = [load_prices(args.data / f"{symbol}.csv", symbol) for symbol in args.symbols]
    runs = {s.symbol: walk_forward(s, config, args.cache) for s in series}
    table = measure(series, runs, config)
    print_table(table)
    chosen, limit = choose(table)
    defaults = table["defaults"][CHOICE_BOOK]["orchestrated"]
    print(f"\nrule: first-half max DD >= {limit:.1%} (60% of buy & hold's), highest first-half Sharpe")
    if chosen is None:
        print("decision: no variant passes the rule - keep the defaults")
    elif chosen == "defaults":
        print("decision: the defaults win the first half - keep them")
    else:
        held_out = table[chosen][CHOICE_BOOK]["orchestrated"]["second"]["sharpe"]
        adopt = held_out >= defaults["second"]["sharpe"]
        print(f"decision: {chosen} wins the first half; second-half Sharpe {held_out:.2f} vs defaults "
              f"{defaults['second']['sharpe']:.2f} - {'adopt' if adopt else 'keep the defaults'}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
