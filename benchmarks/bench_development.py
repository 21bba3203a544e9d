"""Defaults chosen on the development series: Microsoft daily bars of 1986-1998, before every evaluation series,
and Coinbase Bitcoin hourly bars of 2018-2019, after the hourly evaluation series (Apple hourly bars of
2024-2026, also after it, check an intraday choice).

The orchestration studies of ``bench_orchestration.py`` chose on the first half of the evaluation series
themselves; after three of them the held-out halves had been looked at too often to choose on again. These
studies choose on a series the project had never run: ``pmdarima``'s Microsoft daily bars, cut at the end of
1998 (``signal_engine.data.datasets.DEVELOPMENT_DATASETS``), which end before SPX, IXIC, GOOG and EURUSD begin.

The intraday defaults are chosen on ``BTCUSD``: Coinbase hourly bars from 2018-02-08, after EURUSD (the hourly
evaluation series) ends, to 2019-10-17, charged 8 bp per unit traded (EURUSD's 1 bp per unit of hourly
volatility). A daily study runs on MSFT, an intraday one on BTCUSD.

Common to every study: the walk-forward (``quick`` profile, the series' cost per unit traded: 5 bp on MSFT)
over the whole development series, out of sample, net of costs, the orchestrated book against buy & hold over
the same bars. Rule: among
the cells whose orchestrated max drawdown is no worse than 60% of buy & hold's (the issue's drawdown half), the
highest orchestrated Sharpe; if no cell passes, the highest Sharpe of all. The winning cell's settings become
the defaults if they differ from the study's start (the ``defaults`` cell, spelled out so that a study
reproduces after its winner was adopted); the evaluation series are then run once with them (``make demo``)
and reported whatever they show. Each protocol was declared before any of its results was looked at.

Studies (``--study``):

- ``momentum`` (session 4; adopted ``momentum / harmony_off``): two run configs, each with three orchestration
  settings.
  - ``defaults`` and ``momentum`` (``trend.momentum: true``): the trend expert of the MoE and of every
    timeframe model also reads volatility-scaled 60/120/250-bar returns and the 200-bar average gap. The
    default features look back at most 100 bars, shorter than what the ``long`` model (60-bar labels) and
    the time-series momentum literature (12-month look-backs) call for.
  - orchestration ``defaults``, ``allocation_fixed_equal`` (``max_allocation_change: 0``: the allocator is
    off, each model keeps 25%) and ``harmony_off`` (``harmony_amplification: 0``): the two components the
    session-3 ablation found costly on the evaluation series, tried here where choosing is allowed.
- ``momentum_horizon`` (session 5; adopted ``horizon_20``, by 0.001 of Sharpe over ``horizon_5``): the
  ``momentum`` study gave the ``long`` model +0.39 of Sharpe and the ``scalping`` model (1-bar labels) -0.64:
  long look-backs are noise to a one-bar call. Three run configs at the orchestration defaults: ``defaults``
  (``trend.momentum_min_horizon: 1``, every model reads the momentum features), ``horizon_5`` (all but
  ``scalping``) and ``horizon_20`` (``medium`` and ``long`` only; the MoE of the 5-bar horizon back to the
  short look-backs).
- ``hourly_band`` (session 6, on BTCUSD): the cost attribution showed the hourly evaluation book earning a
  gross Sharpe of 0.41 and paying 3.5% a year in costs (net -0.51). The orchestrator's cost component, the
  no-trade band (``no_trade_band``: a same-side top-up smaller than this fraction of the sleeve is skipped),
  has been off everywhere. Cells at the run-config defaults: orchestration ``defaults`` (band 0), ``band_10``,
  ``band_25`` and ``band_50`` (0.10, 0.25, 0.50). The winner becomes the intraday default only (daily bars
  keep theirs, which MSFT would have to choose).
- ``holding_daily`` (session 6, on MSFT) and ``holding_hourly`` (on BTCUSD, from the ``hourly_band`` winner):
  the adapters of seed 004 section 4 state a minimum holding period per model (a quarter of its horizon)
  that nothing honoured; the new ``holding_discipline`` holds each model's call that long (risk cuts still
  apply). Cells: orchestration ``defaults`` and ``holding`` (``holding_discipline: true``), each series'
  winner becoming the default of its bar frequency.
- ``band_daily`` (on MSFT) and ``band_hourly`` (on BTCUSD), session 6 after studies 3 and 4: study 3's band
  skipped top-ups but passed every cut, so positions ratcheted down. The new ``no_trade_band_cuts`` makes it
  symmetric (a small same-side cut is skipped too while the drawdown defender is idle). Cells: orchestration
  ``defaults`` and the symmetric band at 0.05, 0.10 and 0.25 (``sym_5``, ``sym_10``, ``sym_25``), each series'
  winner becoming the default of its bar frequency (adopted: ``sym_5`` for intraday bars; daily bars keep
  the band off).
- ``diagnostics_daily`` (MSFT) and ``diagnostics_hourly`` (BTCUSD), session 7: one cell, the defaults, so no
  choice; every study prints its starting cell's book analyses (each model's contribution, the result by
  harmony bucket), which is what these show on their own.
- ``linear_trend_daily`` (MSFT) and ``linear_trend_hourly`` (BTCUSD), session 7, declared after
  ``diagnostics_hourly``: on BTCUSD every timeframe model loses before costs, while the sign of the past
  48-240 hourly bars' return alone, always in the market, earned a gross Sharpe of 1.1 over the same test
  span (1 and 3 bars: -1.5 and -1.1, reversal). The gradient-boosted trend expert does not turn its momentum
  features into that. Cells: the MoE's trend expert as it is (``trend_calibrated``) and ``trend_linear``
  (multinomial logistic regression on the same z-scored features, scikit-learn's default C = 1, untuned),
  at the orchestration defaults. A winner on both series becomes the default; a winner on one series only
  becomes the default of that bar frequency. The starting cell names ``trend_calibrated`` since intraday
  series default to the linear expert (the study's winner, ``moe.experts.intraday_trend``).
- ``linear_trend_check_aapl`` (session 7, declared after study 6 was adopted, before it ran): study 6's two
  cells on a second intraday development series, Apple hourly bars of 2024-2026 (``AAPL``, the regular
  session, 7 bp per unit traded by the same rule). A check of study 6's choice, not a choice: the default
  stays whatever this shows, and the README reports it.
- ``shorts_daily`` (MSFT) and ``shorts_check_aapl`` (AAPL), session 8, declared before either ran. The book
  analyses of session 7 found the short positions losing on every series they were run on: on both hourly
  development series, on MSFT, and on the hourly evaluation series (EURUSD; that last one is seen, so it is
  motivation, not evidence). An equity carries a risk premium, so a short that the models get right only about
  half the time pays it away; a currency pair has no such sign. Cells at the run-config defaults: the book's
  short exposure capped (``max_short_exposure``, the exposure monitor's direction limit) at 1 (``defaults``),
  0.25 (``short_cap_25``) and 0 (``long_only``: the models' bearish calls still cut longs, the book never
  goes short). The MSFT winner becomes the short limit of the shipped daily equity series (SPX, IXIC, GOOG and
  MSFT itself) through a per-symbol limit; currencies (EURUSD) and Bitcoin keep theirs. AAPL, the second equity
  series, checks the choice and decides nothing: its result is reported whatever it shows. Adopted:
  ``long_only`` (MSFT 1.64 against 1.62 for both others, +0.02 [-0.04, +0.08]; AAPL agreed, 1.15 against 0.99 and
  1.06), as ``EQUITY_MAX_SHORT`` in ``signal_engine.data.datasets``. These studies apply no per-symbol short limit
  unless a cell sets one, so every study here reproduces; a later daily study starts from
  ``max_asset_short_exposure: {MSFT: 0}``, the default ``make demo`` gives a daily equity series.
- Exposure floor of the band studies (``hourly_band``, ``band_*``), added after both had run: the rule's
  raw winners held a third of the starting book's exposure (a band wider than the positions freezes them at
  their first, small entry) and won by barely trading. A cell whose mean exposure is below half the starting
  cell's is out (``EXPOSURE_FLOOR``). With it ``hourly_band`` keeps the defaults and ``band_hourly`` picks
  ``sym_5``; without it they would pick ``band_25`` and ``sym_25``.

    .venv/bin/python benchmarks/bench_development.py [--study hourly_band] [--cache out/bench/development]
                                                     [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_orchestration import BEFORE_DEVELOPMENT, BEFORE_DEVELOPMENT_TREND, run_config, walk_forward

from signal_engine.cli import with_dataset_costs
from signal_engine.config import RunConfig, apply_overrides, load_config
from signal_engine.data import load_prices
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.portfolio import book_metrics, book_returns, build_books
from signal_engine.evaluation.significance import sharpe_difference
from signal_engine.orchestration.analytics import analytics_section

SEED = 7
DD_FRACTION_OF_BUY_AND_HOLD = 0.6
EXPOSURE_FLOOR = 0.5  # band studies: a cell must hold at least half the starting cell's mean exposure
BASE = "defaults"
EXPERT = "expert"  # a run config's key for the MoE's trend expert on every bar (moe.experts.trend and
# intraday_trend); the run config's other keys are the trend expert's settings


@dataclass(frozen=True)
class DevelopmentStudy:
    """Cells: every run config (trend overrides) with every orchestration setting; ``BASE`` x ``BASE`` is the start."""

    run_configs: dict[str, dict[str, Any]]
    orchestration: dict[str, dict[str, Any]]
    symbol: str = "MSFT"
    exposure_floor: float = 0.0


STUDIES: dict[str, DevelopmentStudy] = {
    "momentum": DevelopmentStudy(
        run_configs={BASE: BEFORE_DEVELOPMENT_TREND, "momentum": {"momentum": True, "momentum_min_horizon": 1}},
        orchestration={
            BASE: BEFORE_DEVELOPMENT,
            "allocation_fixed_equal": {**BEFORE_DEVELOPMENT, "max_allocation_change": 0.0},
            "harmony_off": {"harmony_amplification": 0.0},
        },
    ),
    "momentum_horizon": DevelopmentStudy(
        run_configs={
            BASE: {"momentum": True, "momentum_min_horizon": 1},
            "horizon_5": {"momentum": True, "momentum_min_horizon": 5},
            "horizon_20": {"momentum": True, "momentum_min_horizon": 20},
        },
        orchestration={BASE: {"harmony_amplification": 0.0}},
    ),
    "hourly_band": DevelopmentStudy(
        run_configs={BASE: {}},
        orchestration={BASE: {"no_trade_band": 0.0, "no_trade_band_cuts": False},
                       **{f"band_{round(100 * band)}": {"no_trade_band": band, "no_trade_band_cuts": False}
                          for band in (0.10, 0.25, 0.50)}},
        symbol="BTCUSD",
        exposure_floor=EXPOSURE_FLOOR,
    ),
    "holding_hourly": DevelopmentStudy(
        run_configs={BASE: {}},
        orchestration={BASE: {"holding_discipline": False, "no_trade_band": 0.0, "no_trade_band_cuts": False},
                       "holding": {"holding_discipline": True, "no_trade_band": 0.0, "no_trade_band_cuts": False}},
        symbol="BTCUSD",
    ),
    **{f"band_{frequency}": DevelopmentStudy(
        run_configs={BASE: {}},
        orchestration={BASE: {"no_trade_band": 0.0, "no_trade_band_cuts": False},
                       **{f"sym_{round(100 * band)}": {"no_trade_band": band, "no_trade_band_cuts": True}
                          for band in (0.05, 0.10, 0.25)}},
        symbol=symbol,
        exposure_floor=EXPOSURE_FLOOR,
    ) for frequency, symbol in (("daily", "MSFT"), ("hourly", "BTCUSD"))},
    **{f"diagnostics_{frequency}": DevelopmentStudy(
        run_configs={BASE: {}}, orchestration={BASE: {}}, symbol=symbol,
    ) for frequency, symbol in (("daily", "MSFT"), ("hourly", "BTCUSD"))},
    **{f"linear_trend_{name}": DevelopmentStudy(
        run_configs={BASE: {EXPERT: "trend_calibrated"}, "linear": {EXPERT: "trend_linear"}},
        orchestration={BASE: {}}, symbol=symbol,
    ) for name, symbol in (("daily", "MSFT"), ("hourly", "BTCUSD"), ("check_aapl", "AAPL"))},
    **{f"shorts_{name}": DevelopmentStudy(
        run_configs={BASE: {}},
        orchestration={BASE: {"max_short_exposure": 1.0}, "short_cap_25": {"max_short_exposure": 0.25},
                       "long_only": {"max_short_exposure": 0.0}},
        symbol=symbol,
    ) for name, symbol in (("daily", "MSFT"), ("check_aapl", "AAPL"))},
    "holding_daily": DevelopmentStudy(
        run_configs={BASE: {}},
        orchestration={BASE: {"holding_discipline": False}, "holding": {"holding_discipline": True}},
    ),
}


def development_config(base: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """``base`` with a study's run-config overrides: ``EXPERT`` picks the MoE's trend expert, the rest go to
    ``trend``."""
    trend = {k: v for k, v in overrides.items() if k != EXPERT}
    config = run_config(base, trend)
    if EXPERT in overrides:
        expert = overrides[EXPERT]
        config = apply_overrides(config, {"moe": {"experts": {"trend": expert, "intraday_trend": expert}}},
                                 source="study")
    return config


def cell_name(run: str, orchestration: str) -> str:
    return f"{run} / {orchestration}"


def measure_cell(series: PriceSeries, runs: tuple[Any, dict[str, Any]], config: RunConfig,
                 overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The book of one cell: orchestrated, unmanaged MoE, buy & hold and each timeframe model alone."""
    baseline, models = copy.deepcopy(runs)
    book = build_books([series], [baseline], {series.symbol: models}, config, overrides).books[0]
    row: dict[str, Any] = {k: book.metrics[k] for k in ("orchestrated", "moe", "baseline_buy_and_hold")}
    unmanaged = book.result.unmanaged[series.symbol]
    costs = np.array([config.trading.cost_for(series.symbol)])
    for model in unmanaged.columns:
        positions = unmanaged[[model]].rename(columns={model: series.symbol})
        net = pd.Series(book_returns(positions, book.result.asset_returns, costs), index=positions.index)
        row[f"model {model}"] = book_metrics(positions, net, book.periods_per_year, costs)
    row["span"] = [str(book.returns.index[0])[:10], str(book.returns.index[-1])[:10]]
    row["returns"] = book.returns[["orchestrated", "baseline_buy_and_hold"]].iloc[1:]
    row["periods_per_year"] = book.periods_per_year
    row["analytics"] = analytics_section(book.result, book.cost_bps, book.periods_per_year)
    return row


def difference(table: Mapping[str, Mapping[str, Any]], a: str, b: str, strategy_b: str = "orchestrated") -> str:
    """``Sharpe(a) - Sharpe(b)`` of two cells' orchestrated books with its 90% paired-bootstrap interval."""
    x, y = table[a]["returns"]["orchestrated"], table[b]["returns"][strategy_b]
    d = sharpe_difference(x.to_numpy(), y.to_numpy(), table[a]["periods_per_year"], seed=SEED)
    return f"{d.difference:+.2f} [{d.low:+.2f}, {d.high:+.2f}], p {d.p_value:.2f}"


def choose(table: Mapping[str, Mapping[str, Any]], exposure_floor: float = 0.0) -> str:
    """The declared rule: best orchestrated Sharpe among the cells within the drawdown limit (else of all).

    With ``exposure_floor`` (the band studies), a cell whose mean exposure is below that fraction of the
    starting cell's is out before the rule applies: a book that stops trading is not a setting to choose.
    """
    start = table[cell_name(BASE, BASE)]
    limit = DD_FRACTION_OF_BUY_AND_HOLD * start["baseline_buy_and_hold"]["max_drawdown"]
    floor = exposure_floor * start["orchestrated"].get("exposure", 0.0)
    trading = [c for c in table if table[c]["orchestrated"].get("exposure", 0.0) >= floor]
    passing = [c for c in trading if table[c]["orchestrated"]["max_drawdown"] >= limit]
    return max(passing or trading, key=lambda c: table[c]["orchestrated"]["sharpe"])


def print_table(table: Mapping[str, Mapping[str, Any]], study: DevelopmentStudy) -> None:
    first = next(iter(table.values()))
    print(f"\n## {study.symbol} development series, test span {first['span'][0]} to {first['span'][1]}")
    print("| cell | Sharpe | gross Sharpe | max DD | turnover | costs / yr | Sharpe - defaults |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reference = table[cell_name(BASE, BASE)]["orchestrated"]["sharpe"]
    for cell, row in table.items():
        m = row["orchestrated"]
        print(f"| {cell} | {m['sharpe']:.2f} | {m['gross_sharpe']:.2f} | {m['max_drawdown']:.1%} "
              f"| {m['turnover']:.1f} | {m['cost_drag']:.2%} | {m['sharpe'] - reference:+.2f} |")
    print_analytics(table[cell_name(BASE, BASE)]["analytics"])
    for run in study.run_configs:
        row = table[cell_name(run, BASE)]
        print(f"\n### {run}: the parts")
        print("| strategy | Sharpe | max DD | turnover |")
        print("| --- | --- | --- | --- |")
        for name, m in row.items():
            if name.startswith("model ") or name in ("moe", "baseline_buy_and_hold"):
                print(f"| {name} | {m['sharpe']:.2f} | {m['max_drawdown']:.1%} | {m['turnover']:.1f} |")


MOMENTUM_LOOKBACKS = (1, 3, 6, 12, 24, 48, 120, 240)


def momentum_probe(series: PriceSeries, start: str, periods_per_year: float) -> dict[int, float]:
    """Gross Sharpe over the test span (from ``start``) of holding the sign of the past k bars' log return,
    always in the market, per look-back k: a rule with no fitting, to set the models' gross result against."""
    log_close = pd.Series(np.log(series.bars["close"].to_numpy(dtype=float)), index=series.bars.index)
    realised = log_close.diff()
    test = realised.index >= pd.Timestamp(start)
    probe = {}
    for k in MOMENTUM_LOOKBACKS:
        pnl = (np.sign(log_close.diff(k)).shift(1) * realised)[test].dropna().to_numpy()
        probe[k] = float(pnl.mean() / pnl.std(ddof=1) * np.sqrt(periods_per_year)) if pnl.std(ddof=1) > 0 else 0.0
    return probe


def print_analytics(analytics: Mapping[str, Any]) -> None:
    """The starting cell's book analyses: each model's contribution and the impact of alignment."""
    print("\n### defaults: each model's contribution (a year, fractions of capital)")
    print("| model | gross | costs | net | share of net |")
    print("| --- | --- | --- | --- | --- |")
    for model, c in analytics["contribution"].items():
        print(f"| {model} | {c['gross_return']:+.2%} | {c['costs']:.2%} | {c['net_return']:+.2%} "
              f"| {c['share_of_net']:+.2f} |")
    print("\n### defaults: gross result by the harmony of the calls")
    print("| harmony | positions | share | mean sleeve position | hit rate | return / exposure | share of gross |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for b in analytics["alignment"]["harmony_buckets"]:
        print(f"| {b['harmony']} | {b['positions']} | {b['share_of_positions']:.1%} | {b['mean_sleeve_position']:.3f} "
              f"| {b['hit_rate']:.1%} | {b['return_per_exposure']:+.1%} | {b['share_of_gross_pnl']:+.2f} |")
    sides = "; ".join(f"{b['side']}: {b['share_of_positions']:.0%} of positions, {b['return_per_exposure']:+.1%} "
                      f"per unit a year, {b['share_of_gross_pnl']:+.2f} of gross" for b in analytics["sides"])
    print(f"\nsides: {sides}")
    with_book = ", ".join(f"{m} {v:.0%}" for m, v in analytics["alignment"]["with_book"].items())
    print(f"\nbook on each model's side: {with_book}; trading: {json.dumps(analytics['trading'], default=float)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=list(STUDIES), default="hourly_band")
    parser.add_argument("--cache", type=Path, default=Path("out/bench/development"))
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    base = with_dataset_costs(load_config(args.profile))
    table: dict[str, dict[str, Any]] = {}
    study = STUDIES[args.study]
    with tempfile.TemporaryDirectory() as folder:
        series = load_prices(export_dataset(study.symbol, Path(folder)), study.symbol)
    for run, trend_overrides in study.run_configs.items():
        config = development_config(base, trend_overrides)
        runs = walk_forward(series, config, args.cache)
        for orchestration, overrides in study.orchestration.items():
            table[cell_name(run, orchestration)] = measure_cell(series, runs, config, overrides)
    print(f"# study: {args.study}")
    print_table(table, study)
    start_cell = table[cell_name(BASE, BASE)]
    probe = momentum_probe(series, start_cell["span"][0], start_cell["periods_per_year"])
    print("\nsign of the past k bars' return, always in the market, gross Sharpe over the test span: "
          + ", ".join(f"k={k} {v:+.2f}" for k, v in probe.items()))
    limit = DD_FRACTION_OF_BUY_AND_HOLD * table[cell_name(BASE, BASE)]["baseline_buy_and_hold"]["max_drawdown"]
    winner = choose(table, study.exposure_floor)
    print(f"\nrule: orchestrated max DD >= {limit:.1%} (60% of buy & hold's), highest Sharpe")
    start = cell_name(BASE, BASE)
    print(f"decision: {winner}" + (" - keep the defaults" if winner == start else " - adopt"))
    print(f"could it be noise? {winner} - {start}: {difference(table, winner, start)}; "
          f"{winner} - buy & hold: {difference(table, winner, winner, 'baseline_buy_and_hold')}")
    if args.json:
        saved = {c: {k: v for k, v in row.items() if k != "returns"} for c, row in table.items()}
        args.json.write_text(json.dumps(saved, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
