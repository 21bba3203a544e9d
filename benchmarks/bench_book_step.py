"""The book step's per-bar cost (``orchestrate``, the fold of ``step``) on the shipped real series.

    .venv/bin/python benchmarks/bench_book_step.py [--bars 1500] [--repeat 3] [--digest] [--profile]

Two books of the shipped series, as ``make demo`` builds them: the daily book (SPX, IXIC, GOOG, the shipped costs
and short limits) and the hourly book (EURUSD, the intraday defaults: a no-trade band), each with four timeframe
models whose calls are made from the real closes (trailing momentum over each timeframe's horizon, sized by the
trailing volatility: the step's cost does not depend on how good the calls are). A third variant of the daily
book turns on the holding discipline and the no-trade band with cuts, so those paths are timed too.

``--digest`` prints one SHA-256 per book over every frame of the result, the events, the final state's JSON and
the feedback each model was told:
the same digests before and after a change mean the change left every output bit as it was. Baseline: the
daily book with the default orchestration, measured in the same run; the others are given as ratios to it.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from signal_engine.data.datasets import dataset_costs, dataset_short_limits, export_dataset  # noqa: E402
from signal_engine.data.loader import load_prices  # noqa: E402
from signal_engine.evaluation.planning import periods_per_year  # noqa: E402
from signal_engine.orchestration import OrchestrationConfig, orchestrate  # noqa: E402
from signal_engine.orchestration.adapter import PrecomputedTimeframeModel  # noqa: E402
from signal_engine.orchestration.result import OrchestrationResult  # noqa: E402
from signal_engine.orchestration.timeframes import timeframe_specs  # noqa: E402

DAILY, HOURLY = ("SPX", "IXIC", "GOOG"), ("EURUSD",)
MODELS = {"scalping": 2, "short": 5, "medium": 21, "long": 63}


def model_frame(close: pd.Series, horizon: int) -> pd.DataFrame:
    """A point-in-time call per bar from the closes up to it: momentum over ``horizon`` bars, volatility-sized."""
    returns = close.pct_change()
    momentum = close.pct_change(horizon)
    vol = returns.rolling(max(horizon, 10)).std()
    score = (momentum / (vol * np.sqrt(horizon))).clip(-3.0, 3.0)
    frame = pd.DataFrame({
        "direction": np.sign(score).fillna(0.0),
        "size": (score.abs() / 3.0).clip(0.0, 1.0).fillna(0.0),
        "confidence": (0.5 + score.abs() / 6.0).clip(0.0, 1.0).fillna(0.5),
        "vol_forecast": vol * np.sqrt(252.0),
        "score": score,
    }, index=close.index)
    return frame.iloc[max(MODELS.values()) + 10:]


def book_inputs(symbols: tuple[str, ...], bars: int, folder: Path) -> tuple[dict, dict, dict, float]:
    closes, volumes, signals = {}, {}, {}
    for symbol in symbols:
        prices = load_prices(export_dataset(symbol, folder)).bars.iloc[-bars:]
        closes[symbol] = prices["close"]
        if "volume" in prices:
            volumes[symbol] = prices["volume"]
        signals[symbol] = {name: model_frame(prices["close"], h) for name, h in MODELS.items()}
    return signals, closes, volumes, periods_per_year(closes[symbols[0]].index.to_numpy())


def run_book(signals: dict, closes: dict, config: OrchestrationConfig, ppy: float, volumes: dict,
             costs: dict) -> tuple[OrchestrationResult, list[PrecomputedTimeframeModel]]:
    """The book over fresh models (as ``prepare`` builds them from frames), which record the feedback told."""
    specs = timeframe_specs(config)
    models = {symbol: {name: PrecomputedTimeframeModel(frame, spec=specs[name], symbol=symbol)
                       for name, frame in streams.items()} for symbol, streams in signals.items()}
    result = orchestrate(models, closes, config, ppy, volumes=volumes, cost_bps=costs)
    return result, [model for streams in models.values() for model in streams.values()]


def digest(result: OrchestrationResult, models: list[PrecomputedTimeframeModel]) -> str:
    h = hashlib.sha256()
    for model in models:
        h.update(repr(model.feedback_).encode())
    frames = [result.positions, result.allocations, result.target_allocations, result.risk_scales, result.harmony,
              result.regimes.astype(str), result.returns, result.events.astype(str)]
    frames += [result.contributions[s] for s in result.symbols] + [result.unmanaged[s] for s in result.symbols]
    for frame in frames:
        h.update(frame.to_csv(float_format="%r").encode())
        if all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):  # the bits, beyond the text
            h.update(np.ascontiguousarray(frame.to_numpy(dtype=float)).tobytes())
    h.update(result.performance.to_csv(float_format="%r").encode())
    h.update(str(sorted(result.event_counts.items())).encode())
    h.update(result.final_state.to_json().encode())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digest", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    costs, shorts = dataset_costs(), dataset_short_limits()
    folder = Path(tempfile.mkdtemp())
    daily = book_inputs(DAILY, args.bars, folder)
    hourly = book_inputs(HOURLY, args.bars, folder)
    daily_config = OrchestrationConfig(max_asset_short_exposure=tuple(shorts.items()))
    books = {
        "daily (baseline)": (daily, daily_config),
        "daily, holding + band cuts": (daily, replace(daily_config, holding_discipline=True, no_trade_band=0.05,
                                                      no_trade_band_cuts=True)),
        "hourly": (hourly, OrchestrationConfig.for_periods_per_year(hourly[3], max_asset_short_exposure=tuple(
            shorts.items()))),
    }
    timings: dict[str, float] = {}
    for name, ((signals, closes, volumes, ppy), config) in books.items():
        run = partial(run_book, signals, closes, config, ppy, volumes, costs)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run)
            print(f"== {name}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        best = np.inf
        for _ in range(args.repeat):
            start = time.process_time()
            result, models = run()
            best = min(best, time.process_time() - start)
        timings[name] = best
        bars = len(result.positions)
        line = f"{name:30s} {bars:5d} bars  {best:7.3f} s CPU  {1e6 * best / bars:8.1f} us/bar"
        if args.digest:
            line += f"  {digest(result, models)[:16]}"
        print(line, flush=True)
    base = timings["daily (baseline)"]
    for name, seconds in timings.items():
        print(f"{name:30s} x{seconds / base:.2f} of the baseline")


if __name__ == "__main__":
    main()
