"""``signal-engine paper``: the backtest, then the same books replayed bar by bar through the live path.

1. The backtest runs as ``signal-engine backtest`` would (into ``DIR/backtest``; without the expert suite,
   which the books do not use): every symbol's timeframe
   models are walked forward (refit on the schedule with the data known at each refit, so each bar's call is
   what the model, as trained then, answered) and each bar frequency is orchestrated as one book.
2. Each book is replayed through the stores (``signal_engine.paper.replay``): bar by bar, stored, read back,
   stepped, committed, and its positions read back from the book store.
3. The positions are traded in a ledger (``signal_engine.paper.ledger``: orders, fills at the next close
   with the cost model, P&L), from ``start`` on.
4. The ledger's returns are compared with the band of what the backtest expected
   (``signal_engine.paper.band``), learned from the backtest's returns before ``start`` (or over the whole
   span when fewer than ``MIN_EXPECTATION_BARS`` precede it).

``DIR/signals.csv`` is the backtest's layout with ``position`` read back from the book store, so it must equal
``DIR/backtest/signals.csv``; ``paper.json`` records the largest difference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import SignalEngineError
from signal_engine.evaluation.backtest import signal_columns
from signal_engine.evaluation.metrics import strategy_metrics
from signal_engine.evaluation.portfolio import Book
from signal_engine.json_values import json_safe
from signal_engine.orchestration.adapter import PrecomputedTimeframeModel, TimeframeModel
from signal_engine.orchestration.state import BookStateError
from signal_engine.orchestration.timeframes import timeframe_specs
from signal_engine.paper.band import MIN_EXPECTATION_BARS, Band, expectation_band
from signal_engine.paper.ledger import FillRule, Ledger, paper_ledger
from signal_engine.paper.replay import BarReader, BookPlan, ReplayedBook, replay_book
from signal_engine.pipeline import BacktestOutput, backtest_series
from signal_engine.ports import BookStore, PriceStore
from signal_engine.storage.ingest import infer_timeframe

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PaperBook:
    """One book's replay, ledger and band."""

    replay: ReplayedBook
    ledger: Ledger
    band: Band
    summary: dict[str, Any]


@dataclass(frozen=True)
class PaperOutput:
    signals_path: Path
    summary_path: Path
    summary: dict[str, Any]
    books: list[PaperBook]
    backtest: BacktestOutput


def run_paper(
    series: Sequence[PriceSeries],
    out_dir: Path,
    config: RunConfig,
    *,
    prices: PriceStore,
    bars: BarReader,
    books: BookStore,
    start: pd.Timestamp | None = None,
    fill: FillRule = "next_close",
    level: float = 0.95,
    orchestration: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    console: Console | None = None,
) -> PaperOutput:
    """Backtest ``series``, replay every book through the stores, trade it on paper and compare (module doc)."""
    console = console or Console(stderr=True)
    config = replace(config, suite=replace(config.suite, enabled=False))  # the books do not use the expert suite
    backtest = backtest_series(series, out_dir / "backtest", config, console=console, orchestration=orchestration,
                               jobs=jobs)
    if backtest.portfolio is None:
        raise SignalEngineError("paper: the backtest produced no book to replay")
    by_symbol = {s.symbol: s for s in series}
    done: list[PaperBook] = []
    for book in backtest.portfolio.books:
        plan = book_plan(book, [by_symbol[s] for s in book.symbols])
        started = time.perf_counter()
        try:
            replayed = replay_book(plan, prices, bars, books, on_bar=_progress(console, book.name, started))
        except BookStateError as exc:
            raise BookStateError(f"{exc} (the store holds book {book.name!r} from a run with other prices or "
                                 "settings: use a new --out or --database)") from None
        console.print(f"Replayed book {book.name}: {replayed.stepped} bars stepped, {replayed.replayed} replayed "
                      f"from the store, in {time.perf_counter() - started:.0f} s")
        done.append(_trade(book, replayed, start, fill, level, config.seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    signals = _signals(backtest, done, config)
    signals_path = out_dir / "signals.csv"
    signals.to_csv(signals_path, index=False, float_format="%.10g", lineterminator="\n")
    for name, frames in (("orders", [b.ledger.orders for b in done]), ("fills", [b.ledger.fills for b in done]),
                         ("ledger", [b.ledger.account for b in done]),
                         ("band", [b.band.frame.reset_index().assign(book=b.replay.name) for b in done])):
        pd.concat(frames, ignore_index=True).to_csv(out_dir / f"{name}.csv", index=False, float_format="%.10g",
                                                    lineterminator="\n")
    summary = {"schema_version": SCHEMA_VERSION, "fill": fill, "band_level": level,
               "start": None if start is None else pd.Timestamp(start).isoformat(),
               "books": {b.replay.name: b.summary for b in done}}
    summary_path = out_dir / "paper.json"
    summary_path.write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    return PaperOutput(signals_path, summary_path, summary, done, backtest)


def book_plan(book: Book, members: Sequence[PriceSeries]) -> BookPlan:
    """The live book a backtest's book describes: its series, its models' signal streams, its settings."""
    if not book.signals:
        raise SignalEngineError(f"paper: book {book.name!r} carries no signal streams to replay")
    specs = timeframe_specs(book.config)
    unknown = sorted({m for streams in book.signals.values() for m in streams} - set(specs))
    if unknown:
        raise SignalEngineError(f"paper: book {book.name!r} has models {unknown} without a timeframe")
    models: dict[str, dict[str, TimeframeModel]] = {
        symbol: {name: PrecomputedTimeframeModel(frame, spec=specs[name], symbol=symbol)
                 for name, frame in streams.items()}
        for symbol, streams in book.signals.items()
    }
    return BookPlan(name=book.name, series=tuple(members), timeframes={s.symbol: infer_timeframe(s) for s in members},
                    models=models, specs=tuple(specs[m] for m in book.result.models), config=book.config,
                    periods_per_year=book.periods_per_year, cost_bps=dict(book.cost_bps),
                    timeline=pd.DatetimeIndex(book.result.positions.index))


def _trade(book: Book, replayed: ReplayedBook, start: pd.Timestamp | None, fill: FillRule, level: float,
           seed: int) -> PaperBook:
    symbols = list(replayed.symbols)
    expected_positions = book.result.positions.loc[:, symbols].to_numpy(dtype=float)
    difference = float(np.max(np.abs(replayed.positions - expected_positions)))
    ledger = paper_ledger(book.name, symbols, replayed.timeline, replayed.has_bar, replayed.closes,
                          replayed.asset_returns, replayed.positions, [book.cost_bps[s] for s in symbols],
                          fill=fill, start=start)
    if ledger.account.empty:
        raise SignalEngineError(f"paper: --from {start} is after book {book.name!r}'s last bar "
                                f"{replayed.timeline[-1]}")
    first = pd.Timestamp(ledger.account["timestamp"].iloc[0])
    backtest_net = book.returns["orchestrated"]
    before = backtest_net.loc[backtest_net.index < first].iloc[1:]
    in_sample = len(before) < MIN_EXPECTATION_BARS
    expected = backtest_net.iloc[1:] if in_sample else before
    live = pd.Series(ledger.account["net_return"].to_numpy(), index=pd.DatetimeIndex(ledger.account["timestamp"]))
    band = expectation_band(expected.to_numpy(dtype=float), live, level=level, seed=seed)
    ppy = book.periods_per_year
    same_span = backtest_net.loc[backtest_net.index >= first]
    paper_metrics = strategy_metrics(np.ones(len(live)), live.to_numpy(dtype=float), ppy)
    backtest_metrics = strategy_metrics(np.ones(len(same_span)), same_span.to_numpy(dtype=float), ppy)
    summary = {
        "symbols": symbols, "bars": len(replayed.timeline), "stepped": replayed.stepped,
        "replayed": replayed.replayed, "max_abs_position_difference": difference,
        "paper_from": first.isoformat(), "paper_bars": len(live), "orders": len(ledger.orders),
        "fills": len(ledger.fills), "final_equity": float(ledger.account["equity"].iloc[-1]),
        "paper": {k: paper_metrics[k] for k in ("sharpe", "cagr", "max_drawdown", "total_return")
                  if k in paper_metrics},
        "backtest_same_span": {k: backtest_metrics[k] for k in ("sharpe", "cagr", "max_drawdown", "total_return")
                               if k in backtest_metrics},
        "band": {"level": band.level, "block": band.block, "paths": band.paths,
                 "expectation": "in_sample" if in_sample else "before_paper_start",
                 "expectation_bars": band.expectation_bars, "outside_share": band.outside_share,
                 "alarms": [pd.Timestamp(t).isoformat() for t in band.alarms().index]},
    }
    return PaperBook(replay=replayed, ledger=ledger, band=band, summary=summary)


def _signals(backtest: BacktestOutput, books: list[PaperBook], config: RunConfig) -> pd.DataFrame:
    """The backtest's signal rows with ``position`` read back from the book store."""
    stored: dict[tuple[str, int], float] = {}
    for book in books:
        replay = book.replay
        for j, symbol in enumerate(replay.symbols):
            stored.update({(symbol, int(t)): float(p) for t, p in zip(replay.timeline.asi8, replay.positions[:, j],
                                                                        strict=True)})
    frames = []
    for result in backtest.results:  # one symbol each: daily and intraday timestamps are parsed apart
        rows = result.signals.loc[:, list(signal_columns(config))]
        stamps = pd.DatetimeIndex(pd.to_datetime(rows["timestamp"])).as_unit("ns").asi8
        keys = [(result.symbol, int(t)) for t in stamps]
        missing = [k for k in keys if k not in stored]
        if missing:
            raise SignalEngineError(f"paper: no stored book position for {missing[0][0]} at "
                                    f"{pd.Timestamp(missing[0][1])}")
        frames.append(rows.assign(position=[stored[k] for k in keys]))
    return pd.concat(frames, ignore_index=True)


def _progress(console: Console, name: str, started: float) -> Any:
    every = 250

    def report(done: int, total: int) -> None:
        if done % every and done != total:
            return
        elapsed = time.perf_counter() - started
        left = elapsed / done * (total - done)
        console.print(f"  book {name}: {done}/{total} bars stepped through the store, about {left:.0f} s left")

    return report
