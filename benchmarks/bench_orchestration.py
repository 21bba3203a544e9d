"""Studies of the orchestration defaults for the current MoE: choices made on the first half of a book only.

The timeframe models' walk-forward signals are computed once per symbol (the pipeline's own code path,
``run_timeframe_models``, the ``quick`` profile with the shipped series' costs) from ``out/demo/data/*.csv``
and cached as pickles under ``--cache``; every variant then re-runs only the orchestrator (``build_books``,
one book per bar frequency, as ``make demo`` does). The cache is keyed by the bars, the run config and
the package's source, so any change to them walks forward again.

Protocol, declared before any result of a study was looked at:

- Variants: overrides of ``OrchestrationConfig`` on top of the study's ``base`` (the defaults the study
  started from, so a study reproduces after the defaults it chose were adopted), on the walk-forwards of the
  run config the study started from (its ``trend`` settings). ``(current defaults)`` - the current
  orchestration defaults on the same walk-forwards - is added as the reference of the ratios.
- Split: each book's timeline is cut at its middle bar (by bar index); the first half's and the second
  half's returns are scored separately (max drawdown is path dependent, so each half starts a new equity
  curve), beside the full span.
- Rule (studies that choose), on the daily book (SPX, IXIC, GOOG) only: among the variants whose first-half
  max drawdown is no worse than 60% of the equal-weight buy & hold's first-half max drawdown, take the
  highest first-half Sharpe. It becomes the new default only if it differs from the base and its second-half
  Sharpe is not below the base's. The hourly book (EURUSD) is reported, not used for the choice.
- Second stage (studies with ``combine``): the first stage's winner combined with each other variant whose
  first-half Sharpe beat the base's; the same rule picks among the winner and these combinations, adopted
  only if its second-half Sharpe is not below the winner's.

Studies (``--study``):

- ``drawdown`` (session 2, adopted ``drawdown_lookback`` 252): drawdown thresholds and lookback, volatility
  target, allocation temperature, conflict strategy, harmony.
- ``allocation`` (session 3): the allocator reads an exponentially weighted Sharpe with a half-life of a
  quarter, whose standard error is about 2 in annualised units, and chases it at temperature 1; the
  timeframe models share features and data, so their high return correlation is structural, not a sign of
  concentration the volatility target does not already bound. Variants: longer half-lives, more shrinkage
  of regime Sharpe, a softer temperature, the correlation scale and penalty off, harmony off, a no-trade
  band, a tighter volatility target (volatility-managed exposure), fixed equal allocation.
- ``ablation``: on the current defaults (run config and orchestration, with the shipped series' per-symbol short
  limits, as ``make demo`` runs), each component turned off in turn,
  alignment (off by default since the development study) turned on, then all off (which equals the sum of
  parts, a check of the accounting); no choice.

The ``drawdown`` and ``allocation`` studies start from the defaults before the development study
(``bench_development.py``: trend momentum features off, harmony amplification 0.5, no intraday no-trade
band), so they reproduce the tables they were decided on.

    .venv/bin/python benchmarks/bench_orchestration.py [--study allocation] [--cache out/bench/orchestration]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import signal_engine
from signal_engine.cli import with_dataset_costs, with_dataset_limits
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
CORRELATION_OFF = {"correlation_threshold": 1.0, "correlation_penalty": 0.0}
CURRENT = "(current defaults)"
BASE = "defaults"

Variant = Callable[[float], dict[str, Any]]  # the book's bars per year -> overrides (a year is a year on any bars)


# what the studies of sessions 2 and 3 started from, before the development study (bench_development.py)
# turned the trend expert's momentum features on and harmony amplification off
BEFORE_DEVELOPMENT_TREND: dict[str, Any] = {"momentum": False}
BEFORE_DEVELOPMENT: dict[str, Any] = {"harmony_amplification": 0.5}
# before the intraday no-trade band (bench_development.py --study band_hourly); daily bars never had one
BEFORE_INTRADAY_BAND: dict[str, Any] = {"no_trade_band": 0.0, "no_trade_band_cuts": False}
# what make demo orchestrates with: the defaults and the shipped series' per-symbol short limits (since study 7,
# bench_development.py --study shorts_daily, the equity series are long or flat); the studies of sessions 2 and 3
# started before those limits, so their overrides have none
CURRENT_DEFAULTS: dict[str, Any] = with_dataset_limits({})


@dataclass(frozen=True)
class Study:
    """Orchestration overrides (``base`` and ``variants``) on the walk-forwards of one run config (``trend``)."""

    base: dict[str, Any]
    variants: dict[str, Variant]
    trend: dict[str, Any] = field(default_factory=dict)
    choose: bool = True
    combine: bool = False
    notes: dict[str, str] = field(default_factory=dict)


DRAWDOWN = Study(
    # before it, the drawdown was measured from the all-time high
    base={**BEFORE_DEVELOPMENT, **BEFORE_INTRADAY_BAND, "drawdown_lookback": 0},
    trend=BEFORE_DEVELOPMENT_TREND,
    variants={
        BASE: lambda ppy: {},
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
    },
)

ALLOCATION = Study(
    base={**BEFORE_DEVELOPMENT, **BEFORE_INTRADAY_BAND},
    trend=BEFORE_DEVELOPMENT_TREND,
    combine=True,
    variants={
        BASE: lambda ppy: {},
        "half_life_1y": lambda ppy: {"performance_half_life": round(ppy)},
        "half_life_3y": lambda ppy: {"performance_half_life": round(3 * ppy)},
        "regime_prior_2y": lambda ppy: {"regime_prior_bars": round(2 * ppy)},
        "half_life_1y_temperature_2": lambda ppy: {"performance_half_life": round(ppy),
                                                   "allocation_temperature": 2.0},
        "correlation_off": lambda ppy: dict(CORRELATION_OFF),
        "harmony_off": lambda ppy: {"harmony_amplification": 0.0},
        "no_trade_band_0.1": lambda ppy: {"no_trade_band": 0.1},
        "vol_target_10": lambda ppy: {"target_vol_annual": 0.10},
        "vol_target_6": lambda ppy: {"target_vol_annual": 0.06},
        "allocation_fixed_equal": lambda ppy: {"max_allocation_change": 0.0},
    },
)

ABLATION_OFF: dict[str, Variant] = {
    "-drawdown defender": lambda ppy: dict(DD_OFF),
    "-allocation": lambda ppy: {"max_allocation_change": 0.0},
    "-regime": lambda ppy: {"regime_prior_bars": 10**9},
    "-conflicts": lambda ppy: {"conflict_strategy": "hedge"},
    "-scheduler": lambda ppy: {"max_trade_per_bar": 1e6},
    "-timeframe cap": lambda ppy: {"max_timeframe_exposure": 1e6},
    "-correlation": lambda ppy: dict(CORRELATION_OFF),
    "-vol target": lambda ppy: {"target_vol_annual": 10.0},
    "-no-trade band": lambda ppy: dict(BEFORE_INTRADAY_BAND),
    "-short limits": lambda ppy: {"max_asset_short_exposure": {}},
}
ABLATION = Study(
    base=CURRENT_DEFAULTS,
    choose=False,
    variants={
        BASE: lambda ppy: {},
        **ABLATION_OFF,
        # alignment is measured but does not scale positions by default since the development study
        "+alignment": lambda ppy: dict(BEFORE_DEVELOPMENT),
        "all off": lambda ppy: {k: v for off in ABLATION_OFF.values() for k, v in off(ppy).items()},
    },
)

STUDIES: dict[str, Study] = {"drawdown": DRAWDOWN, "allocation": ALLOCATION, "ablation": ABLATION}


def run_config(base: RunConfig, trend_overrides: Mapping[str, Any]) -> RunConfig:
    """``base`` with the trend expert's settings overridden (a study's ``trend``)."""
    return replace(base, trend=replace(base.trend, **trend_overrides))


NOT_IN_WALK_FORWARD = ("report/", "orchestration/analytics.py")  # read only after the walk-forwards


def cache_key(series: PriceSeries, config: RunConfig) -> str:
    """What the walk-forwards depend on: the bars, the run config and the package's source (any edit re-runs
    them, except to the report and the book analyses, ``NOT_IN_WALK_FORWARD``)."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(series.bars, index=True).to_numpy().tobytes())
    digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    package = Path(signal_engine.__file__).parent
    for source in sorted(package.rglob("*.py")):
        if source.relative_to(package).as_posix().startswith(NOT_IN_WALK_FORWARD):
            continue
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def walk_forward(series: PriceSeries, config: RunConfig, cache: Path) -> tuple[Any, dict[str, Any]]:
    """The symbol's MoE baseline and timeframe models, from the cache when its key matches (else re-run)."""
    path = cache / f"{series.symbol}-{cache_key(series, config)}.pkl"
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


def groups_of(series: list[PriceSeries]) -> dict[str, list[PriceSeries]]:
    groups: dict[str, list[PriceSeries]] = {}
    for s in series:
        groups.setdefault(bar_frequency(s), []).append(s)
    return groups


def measure(
    series: list[PriceSeries], runs: Mapping[str, Any], config: RunConfig, study: Study,
    variants: Mapping[str, Variant], *, current: bool = True,
) -> dict[str, Any]:
    """variant -> book -> strategy -> half -> metrics (buy & hold and the MoE only under ``defaults``)."""
    table: dict[str, Any] = {}
    names = [*variants, CURRENT] if current else list(variants)
    for variant in names:
        table[variant] = {}
        for book_name, members in groups_of(series).items():
            ppy = float(np.mean([series_periods_per_year(s, config) for s in members]))
            overrides = CURRENT_DEFAULTS if variant == CURRENT else {**study.base, **variants[variant](ppy)}
            # build_books writes the book's position into each baseline's signals, and the baseline is also
            # the timeframe model of its horizon: every variant starts from a fresh copy of the walk-forwards
            fresh = {s.symbol: copy.deepcopy(runs[s.symbol]) for s in members}
            run = build_books(members, [fresh[s.symbol][0] for s in members],
                              {s.symbol: fresh[s.symbol][1] for s in members}, config, overrides)
            book = run.books[0]
            strategies = ["orchestrated", "baseline_buy_and_hold", "moe"] if variant == BASE else [
                "orchestrated"]
            table[variant][book_name] = {
                k: halves(book.positions[k], book.returns[k], ppy) for k in strategies}
            table[variant][book_name]["span"] = [str(book.returns.index[0]), str(book.returns.index[n // 2]),
                                                 str(book.returns.index[-1])] if (n := len(book.returns)) else []
    return table


def drawdown_limit(table: Mapping[str, Any]) -> float:
    return DD_FRACTION_OF_BUY_AND_HOLD * table[BASE][CHOICE_BOOK]["baseline_buy_and_hold"]["first"]["max_drawdown"]


def choose(table: Mapping[str, Any], candidates: list[str] | None = None) -> str | None:
    """The pre-declared rule on the daily book's first half, among ``candidates`` (all variants if None)."""
    limit = drawdown_limit(table)
    names = [v for v in (candidates or table) if v != CURRENT]
    passing = {v: table[v][CHOICE_BOOK]["orchestrated"]["first"] for v in names
               if table[v][CHOICE_BOOK]["orchestrated"]["first"]["max_drawdown"] >= limit}
    return max(passing, key=lambda v: passing[v]["sharpe"]) if passing else None


def first_sharpe(table: Mapping[str, Any], variant: str) -> float:
    return float(table[variant][CHOICE_BOOK]["orchestrated"]["first"]["sharpe"])


def second_sharpe(table: Mapping[str, Any], variant: str) -> float:
    return float(table[variant][CHOICE_BOOK]["orchestrated"]["second"]["sharpe"])


def decide(table: Mapping[str, Any], chosen: str | None, reference: str) -> bool:
    """Print the decision of one stage; True when ``chosen`` is adopted over ``reference``."""
    if chosen is None:
        print(f"decision: no variant passes the rule - keep {reference}")
        return False
    if chosen == reference:
        print(f"decision: {reference} wins the first half - keep it")
        return False
    held_out, kept = second_sharpe(table, chosen), second_sharpe(table, reference)
    adopt = held_out >= kept
    print(f"decision: {chosen} wins the first half ({first_sharpe(table, chosen):.2f} vs "
          f"{first_sharpe(table, reference):.2f}); second-half Sharpe {held_out:.2f} vs {reference} {kept:.2f} - "
          f"{'adopt' if adopt else f'keep {reference}'}")
    return adopt


def combined(first: Variant, second: Variant) -> Variant:
    return lambda ppy: {**first(ppy), **second(ppy)}


def second_stage(
    series: list[PriceSeries], runs: Mapping[str, Any], config: RunConfig, study: Study, table: dict[str, Any],
    winner: str,
) -> None:
    """The winner combined with every other variant that beat the base on the first half; the rule again."""
    better = [v for v in study.variants if v not in (BASE, winner) and first_sharpe(table, v) > first_sharpe(
        table, BASE)]
    combos = {f"{winner} + {v}": combined(study.variants[winner], study.variants[v]) for v in better}
    if not combos:
        print("second stage: no other variant beat the base on the first half")
        return
    table.update(measure(series, runs, config, study, combos, current=False))
    print_table(table, rows=[winner, *combos])
    print(f"\nsecond stage: {winner} combined with {', '.join(better)}")
    decide(table, choose(table, [winner, *combos]), winner)


def print_table(table: Mapping[str, Any], rows: list[str] | None = None) -> None:
    for book in table[BASE]:
        span = table[BASE][book]["span"]
        print(f"\n## {book} book: first half {span[0][:10]} to {span[1][:10]}, second half to {span[2][:10]}")
        print("| variant | 1st Sharpe | 1st max DD | 2nd Sharpe | 2nd max DD | full Sharpe | full max DD "
              "| full turnover | full Sharpe / current | full Sharpe - current |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        base = table[CURRENT][book]["orchestrated"]["full"]["sharpe"]
        lines = [(v, table[v][book]["orchestrated"]) for v in (rows or table)]
        if rows is None:
            lines += [(f"({k})", table[BASE][book][k]) for k in ("moe", "baseline_buy_and_hold")]
        for name, m in lines:
            ratio = m["full"]["sharpe"] / base if base else float("nan")
            print(f"| {name} | {m['first']['sharpe']:.2f} | {m['first']['max_drawdown']:.1%} "
                  f"| {m['second']['sharpe']:.2f} | {m['second']['max_drawdown']:.1%} "
                  f"| {m['full']['sharpe']:.2f} | {m['full']['max_drawdown']:.1%} "
                  f"| {m['full']['turnover']:.1f} | {ratio:.2f} | {m['full']['sharpe'] - base:+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=list(STUDIES), default="allocation")
    parser.add_argument("--cache", type=Path, default=Path("out/bench/orchestration"))
    parser.add_argument("--data", type=Path, default=Path("out/demo/data"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--symbols", nargs="*", default=list(SYMBOLS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    study = STUDIES[args.study]
    config = run_config(with_dataset_costs(load_config(args.profile)), study.trend)
    series = [load_prices(args.data / f"{symbol}.csv", symbol) for symbol in args.symbols]
    runs = {s.symbol: walk_forward(s, config, args.cache) for s in series}
    table = measure(series, runs, config, study, study.variants)
    print(f"# study: {args.study}")
    print_table(table)
    if study.choose:
        print(f"\nrule: first-half max DD >= {drawdown_limit(table):.1%} (60% of buy & hold's), "
              "highest first-half Sharpe")
        winner = choose(table)
        if decide(table, winner, BASE) and study.combine and winner is not None:
            second_stage(series, runs, config, study, table, winner)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
