"""The live path, one bar at a time: store the bar, read it back, ask the models, step the book, persist.

``replay_book`` plays a book's timeline as a live deployment sees it. At each bar t:

1. the bars at t are written to the price store, in one write (as a collector would);
2. the recent bars up to t are read back from the store through the Signal API's own bar source (the
   ``BarSource`` the combiner Lambda reads), and the symbol's return at t and its regime features are
   computed from them alone, so nothing after t is within reach;
3. each timeframe model is asked for its call at t (``TimeframeModel.signal``);
4. ``advance_book`` steps the stored book state with these inputs and commits the new state, positions
   and events in one transaction; the positions reported are the ones read back from the book store.

Bars before the timeline (the history the models were first trained on) are stored in one write before the
first step. A bar already stepped is replayed from the store (nothing changes), so running a replay again
over the same store is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

from signal_engine.data.loader import PriceSeries
from signal_engine.errors import SignalEngineError
from signal_engine.live.books import last_return, lookback_bars, regime_row, window_frame
from signal_engine.orchestration.adapter import TimeframeModel
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.live import advance_book, bar_time_of
from signal_engine.orchestration.regime import REGIME_FEATURES
from signal_engine.orchestration.step import BarInputs
from signal_engine.orchestration.timeframes import TimeframeSpec
from signal_engine.ports import BookStore, PriceStore
from signal_engine.storage.ingest import bars_from_series
from signal_engine.storage.records import Bar

PAPER_SOURCE = "paper"


class BarReader(Protocol):
    """The Signal API's bar source (``signal_engine.serving.service.BarSource``)."""

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None, count: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class BookPlan:
    """What a live book is made of: its symbols' series and timeframe models, its settings and its timeline.

    ``models[s]`` maps model names to symbol s's timeframe models (a symbol may lack some); ``specs`` are
    every model's timeframe, in the book's order; ``timeline`` the bars the book steps (the union of its
    symbols' bars from the first call on).
    """

    name: str
    series: tuple[PriceSeries, ...]
    timeframes: Mapping[str, str]
    models: Mapping[str, Mapping[str, TimeframeModel]]
    specs: tuple[TimeframeSpec, ...]
    config: OrchestrationConfig
    periods_per_year: float
    cost_bps: Mapping[str, float]
    timeline: pd.DatetimeIndex

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s.symbol for s in self.series)


@dataclass(frozen=True)
class ReplayedBook:
    """A replayed book: per bar, the inputs it was stepped with and the positions read back from the store."""

    name: str
    symbols: tuple[str, ...]
    timeline: pd.DatetimeIndex
    has_bar: np.ndarray
    closes: np.ndarray
    asset_returns: np.ndarray
    positions: np.ndarray
    stepped: int
    replayed: int


def replay_book(
    plan: BookPlan,
    prices: PriceStore,
    bars: BarReader,
    books: BookStore,
    *,
    on_bar: Callable[[int, int], None] | None = None,
) -> ReplayedBook:
    """Step ``plan``'s book through its timeline, one bar at a time, through the stores (module docstring)."""
    symbols, timeline = plan.symbols, plan.timeline
    if len(timeline) == 0:
        raise SignalEngineError(f"paper book {plan.name!r}: nothing to replay (the timeline is empty)")
    frames = {s.symbol: s.bars for s in plan.series}
    with_volume = {s.symbol for s in plan.series if s.has_volume}
    _store_history(plan, prices, timeline[0])
    count = lookback_bars(plan.config)
    n, k = len(timeline), len(symbols)
    has_bar = np.column_stack([timeline.isin(frames[s].index) for s in symbols])
    closes = np.full((n, k), np.nan)
    returns = np.full((n, k), np.nan)
    positions = np.full((n, k), np.nan)
    stepped = replayed = 0
    for i, when in enumerate(timeline):
        features = np.full((k, len(REGIME_FEATURES)), np.nan)
        arriving = [j for j in range(k) if has_bar[i, j]]
        prices.write_bars([bar for j in arriving for bar in _bars(plan.series[j], frames[symbols[j]].loc[[when]],
                                                                    plan.timeframes[symbols[j]])])
        for j in arriving:
            symbol = symbols[j]
            window = _read_window(bars, symbol, plan.timeframes[symbol], when, count)
            closes[i, j] = window["close"].iloc[-1]
            returns[i, j] = last_return(window["close"])
            features[j] = regime_row(window, plan.config, with_volume=symbol in with_volume)
        calls = tuple(
            tuple(plan.models[symbol][m.name].signal(when) if has_bar[i, j] and m.name in plan.models[symbol]
                  else None for m in plan.specs)
            for j, symbol in enumerate(symbols)
        )
        inputs = BarInputs(timestamp=when, symbols=symbols, models=tuple(m.name for m in plan.specs),
                           has_bar=has_bar[i].copy(), asset_returns=returns[i].copy(), features=features, calls=calls)
        result = advance_book(books, plan.name, [inputs], plan.config, plan.periods_per_year, plan.specs,
                              plan.cost_bps)[0]
        stepped, replayed = stepped + (not result.replayed), replayed + result.replayed
        held = {p.symbol: p.position for p in books.positions(plan.name, bar_time_of(when))}
        positions[i] = [held[s] for s in symbols]
        if on_bar is not None:
            on_bar(i + 1, n)
    return ReplayedBook(name=plan.name, symbols=symbols, timeline=timeline, has_bar=has_bar, closes=closes,
                        asset_returns=returns, positions=positions, stepped=stepped, replayed=replayed)


def _store_history(plan: BookPlan, prices: PriceStore, start: pd.Timestamp) -> None:
    for series in plan.series:
        history = series.bars.loc[series.bars.index < start]
        if len(history):
            prices.write_bars(_bars(series, history, plan.timeframes[series.symbol]))


def _bars(series: PriceSeries, rows: pd.DataFrame, timeframe: str) -> list[Bar]:
    """Loaded (already adjusted) bars as the store keeps them: no separate adjusted close, so they read back as
    they were loaded."""
    return bars_from_series(PriceSeries(series.symbol, series.source, rows), timeframe, PAPER_SOURCE)


def _read_window(bars: BarReader, symbol: str, timeframe: str, when: pd.Timestamp, count: int) -> pd.DataFrame:
    rows = bars.recent_bars(symbol, timeframe, bar_time_of(when), count)
    if not rows or pd.Timestamp(rows[-1]["timestamp"]) != pd.Timestamp(bar_time_of(when)):
        raise SignalEngineError(f"paper: the store did not give back {symbol} {timeframe} bar {when} after storing it")
    return window_frame(rows)
