"""Between retrains: the live book stepped with models frozen at training, against the backtest's book that refits.

The user's question: a deployed book steps with the models of the version it was trained as, until the next
training run; the backtest's book refits its models every ``refit_every`` bars. How much does a book lose
while its models stay frozen? The study answers it on the real daily series shipped with the dependencies:

1. ``signal-engine train`` (``LocalRunner`` with the whole book) on the bars up to ``--end``;
2. every bar stored in a SQLite price store; ``step_books`` (what ``signal-engine step`` and the book-step
   Lambda run) starts the book from the version's seed at ``--end`` and steps it bar by bar over the rest,
   each timeframe model answering through the Signal API's MoE path with its frozen experts;
3. the backtest of the whole span (the same config), whose book refits, over the same bars.

Both books start from the same state at ``--end`` (the seed is the backtest's state there, bit for bit), pay
the same costs and apply the same orchestration; they differ only in the models' refits. Reported: each
book's annualised Sharpe ratio net of costs, buy and hold, and the paired stationary-bootstrap interval of the
Sharpe difference (live minus backtest) with its p-value.

Run: ``python -m signal_engine.evaluation.live_step_study --out DIR [--end 2014-12-31] [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import load_prices

SYMBOLS = ("SPX", "IXIC")
DEFAULT_END = "2014-12-31"


def run_study(out: Path, end: str, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, Any]:
    from signal_engine.adapters.model_registry import LocalModelRegistry
    from signal_engine.adapters.sql.database import SqlDatabase
    from signal_engine.adapters.sql.recent_bars import SqlRecentBars
    from signal_engine.cli import load_configs, with_dataset_costs, with_dataset_limits
    from signal_engine.evaluation.metrics import annualised_sharpe
    from signal_engine.evaluation.portfolio import book_returns
    from signal_engine.evaluation.significance import sharpe_difference
    from signal_engine.live.books import LiveStores, step_books
    from signal_engine.pipeline import backtest_series
    from signal_engine.storage.ingest import ingest_prices
    from signal_engine.workflow.local import BookTraining, LocalRunner
    from signal_engine.workflow.steps import TrainingInputs

    out.mkdir(parents=True, exist_ok=True)
    run_config, orchestration = load_configs("quick", None)
    config = with_dataset_costs(run_config)
    orchestration = with_dataset_limits(orchestration)
    paths = [export_dataset(symbol, out / "data") for symbol in symbols]
    series = [load_prices(path, symbol) for path, symbol in zip(paths, symbols, strict=True)]
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    runner = LocalRunner(LocalModelRegistry(out / "models"), config, book=BookTraining(orchestration))
    trained = runner.run(TrainingInputs(symbols=symbols, profile=config.profile, end=end), series)
    assert trained.publication is not None
    version = Path(trained.publication.path)
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    database = SqlDatabase.connect(f"sqlite:///{out / 'store.db'}")
    try:
        for path, symbol in zip(paths, symbols, strict=True):
            ingest_prices(path, database.prices, symbol=symbol)
        stores = LiveStores(database.prices, SqlRecentBars(database.engine), database.books)
        (report,) = step_books(stores, version)
        seconds["step"] = time.perf_counter() - started
        bar_times = database.books.bar_times(report.book)
        held = {t: {p.symbol: p.position for p in database.books.positions(report.book, t)} for t in bar_times}
    finally:
        database.close()
    live_positions = pd.DataFrame.from_dict(held, orient="index").sort_index().loc[:, list(symbols)]
    live_positions.index = pd.DatetimeIndex(live_positions.index).as_unit("ns")

    started = time.perf_counter()
    backtest = backtest_series(series, out / "backtest", config, orchestration=orchestration, jobs=None)
    seconds["backtest"] = time.perf_counter() - started
    assert backtest.portfolio is not None
    (book,) = backtest.portfolio.books
    timeline = live_positions.index  # the seed bar, then every stepped bar
    closes = pd.DataFrame({s.symbol: s.bars["close"] for s in series}).reindex(timeline)
    asset_returns = closes / closes.shift(1) - 1.0
    costs = np.array([book.cost_bps[s] for s in symbols])
    live = book_returns(live_positions, asset_returns, costs)[1:]
    refit = book.returns["orchestrated"].reindex(timeline).to_numpy(dtype=float)[1:]
    hold = np.nanmean(asset_returns.to_numpy(dtype=float), axis=1)[1:]
    ppy = book.periods_per_year
    difference = sharpe_difference(live, refit, ppy, seed=config.seed)
    return {
        "symbols": list(symbols), "trained_through": end, "version": version.name,
        "span": [str(timeline[1].date()), str(timeline[-1].date())], "bars": len(live),
        "seeded": report.seeded, "stepped": report.stepped,
        "sharpe": {"live_frozen_models": annualised_sharpe(live, ppy),
                   "backtest_refitting": annualised_sharpe(refit, ppy), "buy_and_hold": annualised_sharpe(hold, ppy)},
        "total_return": {"live_frozen_models": float(np.prod(1 + live) - 1), "backtest_refitting":
                         float(np.prod(1 + refit) - 1), "buy_and_hold": float(np.prod(1 + hold) - 1)},
        "live_minus_backtest": difference.to_dict(),
        "max_abs_position_difference": float(np.nanmax(np.abs(
            live_positions.to_numpy() - book.positions["orchestrated"].reindex(timeline).to_numpy()))),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "seconds_per_stepped_bar": round(seconds["step"] / max(report.stepped, 1), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The live book with frozen models against the refitting backtest.")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--end", default=DEFAULT_END, metavar="YYYY-MM-DD", help="last training bar")
    parser.add_argument("--json", type=Path, metavar="OUT.json")
    args = parser.parse_args(argv)
    result = run_study(args.out, args.end)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
