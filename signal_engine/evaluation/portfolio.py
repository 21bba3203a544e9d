"""The multi-asset backtest: timeframe models per symbol, orchestrated into books, compared with costs.

For each symbol the MoE is walked forward once per timeframe model (seed 004: scalping, short, medium,
long; trend labels over that model's horizon); the run with the user's own label horizon is the
unmanaged MoE baseline and is reused as the timeframe model of the same horizon. The symbols are then
grouped by bar frequency (daily bars in one book, hourly bars in another, ...) and each group is
orchestrated as one book (``orchestrate``): series on different calendars are never netted against each
other in one equity curve, since a daily and an hourly return cannot be compounded bar by bar.

Every book is compared, net of each symbol's costs and on the same timeline, with

- ``orchestrated``: the managed book (allocation, coordination, unified risk manager);
- ``moe``: the unmanaged MoE, each symbol's sleeve holding the single-horizon MoE's own position;
- ``timeframes_equal_weight``: every timeframe model on its own, equal fixed shares (the "sum of parts");
- ``baseline_buy_and_hold``: every symbol's sleeve long from its first signal on.

Each symbol has an equal sleeve of ``1 / n_symbols`` of its book's capital in all four.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SymbolResult, blocks_for, run_symbol
from signal_engine.evaluation.metrics import strategy_metrics, strategy_returns, trading_costs
from signal_engine.evaluation.planning import orchestration_config, series_periods_per_year, timeframe_plan
from signal_engine.evaluation.significance import sharpe_difference
from signal_engine.orchestration import (
    OrchestrationConfig,
    OrchestrationResult,
    orchestrate,
    signal_frame,
    timeframe_run_config,
    timeframe_specs,
)
from signal_engine.orchestration.analytics import analytics_section

BOOK_STRATEGIES: tuple[str, ...] = ("orchestrated", "moe", "timeframes_equal_weight", "baseline_buy_and_hold")
# (a, b): is a's Sharpe above b's beyond estimation noise? The managed book against buy & hold, the unmanaged MoE
# and the sum of its parts, and the MoE against buy & hold.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("orchestrated", "baseline_buy_and_hold"), ("orchestrated", "moe"), ("orchestrated", "timeframes_equal_weight"),
    ("moe", "baseline_buy_and_hold"),
)
SYMBOL_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("orchestrated", "baseline_buy_and_hold"), ("orchestrated", "moe"), ("moe", "baseline_buy_and_hold"),
)
TIMEFRAME_PREFIX = "timeframe_"


@dataclass
class Book:
    """One orchestrated book: the symbols of one bar frequency and what each strategy did with them.

    Parameters
    ----------
    name : str
        The bar frequency (``daily``, ``1h``, ``15min``, ...).
    symbols : tuple of str
        In the order of the orchestrator's columns.
    periods_per_year : float
        Bars per year (mean over the symbols), for annualising.
    config : OrchestrationConfig
        The settings the book was orchestrated with.
    result : OrchestrationResult
        Everything the orchestrator recorded (allocations, risk scales, events, ...).
    positions : dict of str to pandas.DataFrame
        strategy -> timeline x symbol positions as fractions of the book's capital.
    returns : pandas.DataFrame
        timeline x strategy: net returns realised at each bar (0 at the first).
    metrics : dict
        strategy -> Sharpe, CAGR, max drawdown, turnover, trades, total return, exposure.
    comparisons : dict
        ``<a>_vs_<b>`` -> the Sharpe difference of two strategies with its paired stationary-bootstrap interval
        (``COMPARISONS``; ``signal_engine.evaluation.significance``).
    cost_bps : dict of str to float
        symbol -> the cost charged per unit of exposure traded, in basis points.
    signals : dict
        symbol -> timeframe model -> the point-in-time signal stream the book was orchestrated with
        (``signal_frame`` of each model's walk-forward), which a replay of the book asks bar by bar.
    """

    name: str
    symbols: tuple[str, ...]
    periods_per_year: float
    config: OrchestrationConfig
    result: OrchestrationResult
    positions: dict[str, pd.DataFrame]
    returns: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    comparisons: dict[str, dict[str, float]] = field(default_factory=dict)
    cost_bps: dict[str, float] = field(default_factory=dict)
    signals: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)


@dataclass
class PortfolioRun:
    """The per-symbol MoE results (``position`` orchestrated), the timeframe models' runs and the books."""

    results: list[SymbolResult]
    timeframes: dict[str, dict[str, SymbolResult]]
    books: list[Book] = field(default_factory=list)

    @property
    def events(self) -> pd.DataFrame:
        """Every book's event table, with a ``book`` column first."""
        frames = [b.result.events.assign(book=b.name) for b in self.books]
        table = pd.concat(frames, ignore_index=True)
        return table.loc[:, ["book", *(c for c in table.columns if c != "book")]]


def bar_frequency(series: PriceSeries) -> str:
    """``daily`` for bars a day or more apart (the median spacing), else ``1h``, ``15min``, ... ."""
    index = pd.DatetimeIndex(series.bars.index)
    if len(index) < 2 or not series.intraday:
        return "daily"
    spacing = pd.Series(index[1:] - index[:-1]).median()
    if spacing >= pd.Timedelta(hours=20):
        return "daily"
    minutes = max(1, round(spacing / pd.Timedelta(minutes=1)))
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


def refits_for(series: PriceSeries, config: RunConfig, overrides: Mapping[str, Any] | None) -> int:
    """Refits of the MoE baseline and of every timeframe model not shared with it (for progress bars)."""
    plan = timeframe_plan(series, config, overrides)
    extra = sum(1 for spec in plan if spec.horizon != config.labels.horizon)
    return blocks_for(series, config) * (1 + extra)


def run_timeframe_models(
    series: PriceSeries,
    config: RunConfig,
    overrides: Mapping[str, Any] | None = None,
    on_block: Callable[[], None] | None = None,
) -> tuple[SymbolResult, dict[str, SymbolResult]]:
    """The MoE baseline of ``series`` and its timeframe models (the run of the same horizon shared)."""
    baseline = run_symbol(series, config, on_block=on_block)
    models: dict[str, SymbolResult] = {}
    for spec in timeframe_plan(series, config, overrides):
        if spec.horizon == config.labels.horizon:
            models[spec.name] = baseline
        else:
            models[spec.name] = run_symbol(series, timeframe_run_config(config, spec), on_block=on_block)
    return baseline, models


def build_books(
    series: Sequence[PriceSeries],
    baselines: Sequence[SymbolResult],
    timeframes: Mapping[str, Mapping[str, SymbolResult]],
    config: RunConfig,
    overrides: Mapping[str, Any] | None = None,
) -> PortfolioRun:
    """Orchestrate each bar frequency's symbols as one book; set each symbol's ``position`` to the book's."""
    by_symbol = {s.symbol: s for s in series}
    groups: dict[str, list[str]] = {}
    for s in series:
        groups.setdefault(bar_frequency(s), []).append(s.symbol)
    run = PortfolioRun(results=list(baselines), timeframes={k: dict(v) for k, v in timeframes.items()})
    results = {r.symbol: r for r in baselines}
    for name, symbols in groups.items():
        members = [by_symbol[s] for s in symbols]
        ppy = float(np.mean([series_periods_per_year(s, config) for s in members]))
        book = _book(name, members, [results[s] for s in symbols], timeframes, config,
                     orchestration_config(ppy, config, overrides), ppy)
        run.books.append(book)
        for symbol in symbols:
            _attach(results[symbol], book, timeframes[symbol], config, by_symbol[symbol])
    return run


def _book(
    name: str,
    members: list[PriceSeries],
    baselines: list[SymbolResult],
    timeframes: Mapping[str, Mapping[str, SymbolResult]],
    config: RunConfig,
    settings: OrchestrationConfig,
    ppy: float,
) -> Book:
    signals = {s.symbol: {m: signal_frame(r.signals) for m, r in timeframes[s.symbol].items()} for s in members}
    closes = {s.symbol: s.bars["close"] for s in members}
    volumes = {s.symbol: s.bars["volume"] for s in members if s.has_volume}
    costs = {s.symbol: config.trading.cost_for(s.symbol) for s in members}
    result = orchestrate(signals, closes, settings, ppy, volumes=volumes, cost_bps=costs)
    timeline, symbols = pd.DatetimeIndex(result.positions.index), list(result.symbols)
    sleeve = 1.0 / len(symbols)
    firsts = {r.symbol: pd.Timestamp(signal_frame(r.signals).index[0]) for r in baselines}
    positions = {
        "orchestrated": result.positions,
        "moe": pd.DataFrame({r.symbol: sleeve * _on_timeline(r, timeline) for r in baselines}).loc[:, symbols],
        "timeframes_equal_weight": pd.DataFrame(
            {s: sleeve * result.unmanaged[s].mean(axis=1) for s in symbols}).loc[:, symbols],
        "baseline_buy_and_hold": pd.DataFrame(
            {s: np.where(timeline >= firsts[s], sleeve, 0.0) for s in symbols}, index=timeline).loc[:, symbols],
    }
    cost_vector = np.array([costs[s] for s in symbols])
    returns = pd.DataFrame(
        {k: book_returns(v, result.asset_returns, cost_vector) for k, v in positions.items()}, index=timeline)
    metrics = {k: book_metrics(positions[k], returns[k], ppy, cost_vector) for k in positions}
    return Book(name=name, symbols=tuple(symbols), periods_per_year=ppy, config=settings, result=result,
                positions=positions, returns=returns, metrics=metrics,
                comparisons=book_comparisons(returns, ppy, seed=config.seed), cost_bps=costs, signals=signals)


def book_comparisons(returns: pd.DataFrame, ppy: float, *, seed: int) -> dict[str, dict[str, float]]:
    """``COMPARISONS`` on the book's net returns (from the second bar: the first realises nothing)."""
    realised = returns.iloc[1:]
    if len(realised) < 20:
        return {}
    return {f"{a}_vs_{b}": sharpe_difference(realised[a].to_numpy(), realised[b].to_numpy(), ppy, seed=seed).to_dict()
            for a, b in COMPARISONS}


def _on_timeline(result: SymbolResult, timeline: pd.DatetimeIndex) -> pd.Series:
    """The symbol's MoE position on the book's timeline: carried where it has no bar, flat before its first."""
    position = signal_frame(result.signals)
    held = position["direction"] * position["size"]
    return held.reindex(timeline).ffill().fillna(0.0)


def book_returns(positions: pd.DataFrame, asset_returns: pd.DataFrame, cost_bps: np.ndarray) -> np.ndarray:
    """Net return realised at each bar by the positions decided at the previous one, less the costs of the
    trades that set them (the orchestrator's own accounting: 0 at the first bar)."""
    held = positions.to_numpy(dtype=float)
    realised = np.nan_to_num(asset_returns.to_numpy(dtype=float), nan=0.0)
    net = np.zeros(len(held))
    net[1:] = (held[:-1] * realised[1:]).sum(axis=1) - trading_costs(held, cost_bps)[:-1]
    return net


def book_metrics(
    positions: pd.DataFrame, net: pd.Series, ppy: float, cost_bps: np.ndarray | None = None
) -> dict[str, float]:
    """``strategy_metrics`` of a book; turnover and exposure count every symbol (gross), trades every flip.

    With ``cost_bps`` (one per symbol, as given to ``book_returns``) the metrics gain the cost attribution.
    """
    held = positions.to_numpy(dtype=float)[:-1]
    realised = net.to_numpy(dtype=float)[1:]
    costs = None if cost_bps is None else trading_costs(held, cost_bps)
    metrics = strategy_metrics(held.sum(axis=1), realised, ppy, costs=costs)
    years = len(realised) / ppy
    traded = np.abs(np.diff(held, axis=0, prepend=0.0)).sum()
    flips = int(np.count_nonzero(np.diff(np.sign(held), axis=0, prepend=0.0)))
    return {**metrics, "turnover": float(traded / years) if years > 0 else 0.0,
            "exposure": float(np.abs(held).sum(axis=1).mean()) if len(held) else 0.0, "trades": flips}


def _attach(
    result: SymbolResult, book: Book, timeframes: Mapping[str, SymbolResult], config: RunConfig, series: PriceSeries
) -> None:
    """The symbol's rows take the book's position; its metrics gain the orchestrated and timeframe strategies."""
    symbol = result.symbol
    index = pd.DatetimeIndex(pd.to_datetime(result.signals["timestamp"])).as_unit("ns")
    book_position = book.result.positions[symbol].reindex(index).to_numpy(dtype=float)
    if not np.all(np.isfinite(book_position)):
        raise AssertionError(f"{symbol}: a signal bar is missing from its book's timeline")
    result.signals = result.signals.assign(position=book_position)
    per_sleeve = book_position * len(book.symbols)
    returns = result.returns
    tradable = index.isin(returns.index)
    close = series.bars["close"].reindex(index).to_numpy(dtype=float)
    next_return = np.append(close[1:] / close[:-1] - 1.0, np.nan)
    tradable &= np.isfinite(next_return)
    net = strategy_returns(per_sleeve[tradable], next_return[tradable], config.trading.cost_for(symbol))
    result.returns = returns.assign(orchestrated=pd.Series(net, index=index[tradable]).reindex(returns.index))
    strategies = result.metrics["strategies"]
    strategies["orchestrated"] = strategy_metrics(
        per_sleeve[tradable], net, result.data["periods_per_year"],
        costs=trading_costs(per_sleeve[tradable], config.trading.cost_for(symbol)))
    for name, run in timeframes.items():
        strategies[f"{TIMEFRAME_PREFIX}{name}"] = dict(run.metrics["strategies"]["moe"])
    result.metrics["comparisons"] = symbol_comparisons(result.returns, result.data["periods_per_year"],
                                                       seed=config.seed)
    result.data = {**result.data, "book": book.name, "book_symbols": list(book.symbols)}


def symbol_comparisons(returns: pd.DataFrame, ppy: float, *, seed: int) -> dict[str, dict[str, float]]:
    """``SYMBOL_COMPARISONS`` on one symbol's net returns (its sleeve), over the bars where all three are known."""
    names = sorted({name for pair in SYMBOL_COMPARISONS for name in pair})
    known = returns[names].dropna()
    if len(known) < 20:
        return {}
    return {f"{a}_vs_{b}": sharpe_difference(known[a].to_numpy(), known[b].to_numpy(), ppy, seed=seed).to_dict()
            for a, b in SYMBOL_COMPARISONS}


def portfolio_section(run: PortfolioRun) -> dict[str, Any]:
    """``metrics.json`` ``portfolio``: per book, every strategy's metrics, settings, events and allocations."""
    books = {}
    for book in run.books:
        r = book.result
        books[book.name] = {
            "symbols": list(book.symbols),
            "periods_per_year": book.periods_per_year,
            "start": str(book.returns.index[0]),
            "end": str(book.returns.index[-1]),
            "bars": len(book.returns),
            "models": list(r.models),
            "horizons": {spec.name: spec.horizon for spec in timeframe_specs(book.config).values()
                         if spec.name in r.models},
            "strategies": book.metrics,
            "synergy": synergy(book),
            "comparisons": book.comparisons,
            "mean_allocation": {m: float(r.allocations[m].mean()) for m in r.models},
            "final_allocation": {m: float(r.allocations[m].iloc[-1]) for m in r.models},
            "mean_risk_scale": {c: float(r.risk_scales[c].mean()) for c in r.risk_scales.columns},
            "event_counts": dict(r.event_counts),
            **analytics_section(r, book.cost_bps, book.periods_per_year),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(book.config).items()},
        }
    return books


def synergy(book: Book) -> dict[str, float]:
    """Combined system against the sum of its parts (seed 004 section 6): Sharpe, CAGR and max DD differences."""
    combined, parts = book.metrics["orchestrated"], book.metrics["timeframes_equal_weight"]
    return {
        "sharpe_difference": combined["sharpe"] - parts["sharpe"],
        "cagr_difference": combined["cagr"] - parts["cagr"],
        "max_drawdown_difference": combined["max_drawdown"] - parts["max_drawdown"],
        "return_correlation": _correlation(book.returns["orchestrated"], book.returns["timeframes_equal_weight"]),
    }


def _correlation(a: pd.Series, b: pd.Series) -> float:
    x, y = a.to_numpy(dtype=float)[1:], b.to_numpy(dtype=float)[1:]
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


__all__ = [
    "BOOK_STRATEGIES",
    "COMPARISONS",
    "SYMBOL_COMPARISONS",
    "Book",
    "PortfolioRun",
    "bar_frequency",
    "book_comparisons",
    "book_metrics",
    "book_returns",
    "build_books",
    "orchestration_config",
    "portfolio_section",
    "refits_for",
    "run_timeframe_models",
]
