"""Does the MoE trade better with the pooled LSTM in its trend slot than with per-symbol LightGBM?

The protocol, declared before the run, is the section "The MoE with the pooled LSTM in its trend slot" of
docs/research/pooled-experts.md: the eight daily development series, each walked forward by
:func:`~signal_engine.evaluation.backtest.run_symbol` with the ``quick`` profile (expert suite off, one thread, the
backtest's default costs) twice, differing only in ``moe.experts.trend``: the default (``trend_calibrated``,
LightGBM fitted per symbol) and ``trend_pooled_lstm``, whose probabilities are each series' own from the pooled
walk-forward (:func:`~signal_engine.evaluation.pooled_walkforward.pooled_out_of_sample`, as the training workflow's
trend step computes them for its gate step). Net Sharpe and maximum drawdown per series and pooled (equal weights),
the paired interval of the Sharpe difference per series
(:func:`~signal_engine.evaluation.significance.sharpe_difference`) and pooled
(:func:`~signal_engine.evaluation.significance.panel_sharpe_difference`), and the rule :func:`decide`.

Run: ``nice -n 19 python -m signal_engine.evaluation.lstm_moe_study [--json OUT.json] [--cache DIR]``; each pooled
refit's probabilities and each MoE walk-forward's net returns are kept under ``out/bench/lstm_moe/`` so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine import components
from signal_engine.cli import with_dataset_costs
from signal_engine.config import POOLED_LSTM_TREND, RunConfig, apply_overrides, load_config
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.backtest import SymbolResult, run_symbol
from signal_engine.evaluation.metrics import periods_per_year
from signal_engine.evaluation.pooled_study import _params
from signal_engine.evaluation.pooled_walkforward import PooledBlock, pooled_out_of_sample
from signal_engine.evaluation.significance import DEFAULT_LEVEL, panel_sharpe_difference, sharpe_difference
from signal_engine.evaluation.sizing_vol_study import daily_development_symbols
from signal_engine.workflow.training import trend_panel

ARMS: dict[str, str] = {"lightgbm": "LightGBM (trend_calibrated, per symbol)",
                        "lstm": "pooled LSTM (trend_pooled_lstm, pooled walk-forward)"}
DEFAULT_CACHE = Path("out/bench/lstm_moe")
CACHE_VERSION = 1
RunMoE = Callable[[PriceSeries, RunConfig, "np.ndarray | None"], SymbolResult]


def arm_config(base: RunConfig, arm: str) -> RunConfig:
    """The MoE of one arm: ``base`` with the expert suite off and, for ``lstm``, the pooled LSTM as trend expert."""
    overrides: dict[str, Any] = {"suite": {"enabled": False}}
    if arm == "lstm":
        overrides["moe"] = {"experts": {"trend": POOLED_LSTM_TREND}}
    return apply_overrides(base, overrides)


def load_series(symbols: Sequence[str]) -> list[PriceSeries]:
    """The shipped series of ``symbols``."""
    out = []
    for symbol in symbols:
        with tempfile.TemporaryDirectory() as folder:
            out.append(load_prices(export_dataset(symbol, Path(folder)), symbol))
    return out


def _digest(parts: Sequence[Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts], default=str).encode()).hexdigest()[:12]


def pooled_cache(cache: Path, series: Sequence[PriceSeries], config: RunConfig) -> Path:
    """The cache of one pooled walk-forward: a folder named by a hash of the series' bars, the walk-forward, label
    and seed settings and the pooled LSTM's parameters."""
    wf = config.walk_forward
    return cache / ("pooled-" + _digest([{s.symbol: [len(s), str(s.bars.index[-1])] for s in series},
                                         wf.initial_window, wf.refit_every, wf.embargo, config.labels.horizon,
                                         config.labels.threshold, config.seed,
                                         _params(components.pooled_trend_expert(arm_config(config, "lstm")))]))


def moe_cache(cache: Path, series: Sequence[PriceSeries], config: RunConfig) -> Path:
    """The cache of the MoE walk-forwards: a folder named by a hash of the pooled walk-forward's folder and the
    whole config (costs included)."""
    return cache / _digest([pooled_cache(cache, series, config).name, arm_config(config, "lightgbm").to_dict()])


def pooled_lstm_proba(series: Sequence[PriceSeries], config: RunConfig, cache: Path | None) -> dict[str, np.ndarray]:
    """Each series' pooled-LSTM trend probabilities from the pooled walk-forward (one row per bar, NaN before bar
    ``initial_window``), with the training workflow's panel and expert; each refit kept in ``cache``."""
    lstm = arm_config(config, "lstm")
    panel = trend_panel(series, lstm)
    started = time.perf_counter()

    def progress(block: PooledBlock, model: Any) -> None:
        print(f"pooled LSTM refit {block.fit_date.date()}: {len(model.series_)} series, {model.epochs_run_} epochs, "
              f"{model.fit_seconds_:.1f} s (elapsed {time.perf_counter() - started:.0f} s)", flush=True)

    proba, blocks = pooled_out_of_sample(panel, components.pooled_trend_expert(lstm), lstm.walk_forward,
                                         on_fit=progress, cache=cache)
    print(f"pooled LSTM walk-forward: {len(blocks)} refits", flush=True)
    return proba


def default_run(series: PriceSeries, config: RunConfig, trend_proba: np.ndarray | None) -> SymbolResult:
    """One MoE walk-forward as the training workflow's gate step runs it (one thread)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return run_symbol(series, config, trend_proba=trend_proba)


def moe_returns(series: PriceSeries, config: RunConfig, arm: str, trend_proba: Mapping[str, np.ndarray] | None,
                cache: Path | None, run: RunMoE = default_run) -> dict[str, Any]:
    """One arm's MoE walk-forward of ``series``: its net returns on the test span (date-indexed), net Sharpe, max
    drawdown and turnover; ``trend_proba`` (the series' own row of it) only for the ``lstm`` arm; kept in
    ``cache``."""
    path = None if cache is None else cache / f"moe-{arm}-{series.symbol}.json"
    if path is not None and path.exists():
        stored = json.loads(path.read_text())
        stored["returns"] = pd.Series(stored["returns"], index=pd.DatetimeIndex(stored["dates"]), dtype=float)
        return stored
    started = time.perf_counter()
    given = None if trend_proba is None else trend_proba[series.symbol]
    result = run(series, arm_config(config, arm), given if arm == "lstm" else None)
    moe = result.metrics["strategies"]["moe"]
    net = result.returns["moe"]
    record = {"sharpe": float(moe["sharpe"]), "max_drawdown": float(moe["max_drawdown"]),
              "turnover": float(moe["turnover"]), "cost_bps": config.trading.cost_for(series.symbol),
              "periods_per_year": periods_per_year(series.bars.index.to_numpy()[: config.walk_forward.initial_window
                                                                               + 1]),
              "seconds": time.perf_counter() - started, "dates": [str(d) for d in net.index],
              "returns": net.to_numpy(dtype=float).tolist()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    print(f"MoE {arm} {series.symbol}: net Sharpe {record['sharpe']:.2f}, max drawdown {record['max_drawdown']:.1%} "
          f"({record['seconds']:.0f} s)", flush=True)
    record["returns"] = net.astype(float)
    return record


def compare(runs: Mapping[str, Mapping[str, Mapping[str, Any]]], *, reps: int = 2000, seed: int = 0,
            level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Per series and pooled (equal weights): each arm's net Sharpe, max drawdown and turnover, the paired interval
    of Sharpe(lstm) - Sharpe(lightgbm), and the decision. ``runs[arm][symbol]`` as :func:`moe_returns` gives."""
    per_series: dict[str, Any] = {}
    pairs, ppy = {}, {}
    for symbol, lstm in runs["lstm"].items():
        lightgbm = runs["lightgbm"][symbol]
        pair = pd.DataFrame({"a": lstm["returns"], "b": lightgbm["returns"]})
        if pair.isna().any().any():
            raise ValueError(f"{symbol}: the two MoEs' net returns are not on the same bars")
        pairs[symbol], ppy[symbol] = pair, lstm["periods_per_year"]
        per_series[symbol] = {
            "bars": len(pair), "first": str(pair.index[0].date()), "last": str(pair.index[-1].date()),
            "cost_bps": lstm["cost_bps"],
            **{arm: {k: runs[arm][symbol][k] for k in ("sharpe", "max_drawdown", "turnover")} for arm in ARMS},
            "difference": sharpe_difference(pair["a"].to_numpy(), pair["b"].to_numpy(), ppy[symbol], reps=reps,
                                            seed=seed, level=level).to_dict(),
        }
    pooled = {
        "series": len(per_series), "bars": sum(v["bars"] for v in per_series.values()),
        **{arm: {k: float(np.mean([v[arm][k] for v in per_series.values()]))
                 for k in ("sharpe", "max_drawdown", "turnover")} for arm in ARMS},
        "difference": panel_sharpe_difference(pairs, ppy, reps=reps, seed=seed, level=level).to_dict(),
        "lstm_wins": sum(v["difference"]["difference"] > 0 for v in per_series.values()),
    }
    return {"level": level, "reps": reps, "series": per_series, "pooled": pooled, "decision": decide(pooled)}


def decide(pooled: Mapping[str, Any]) -> str:
    """The declared rule: the pooled LSTM makes the case for the default trend expert only when the pooled net
    Sharpe difference LSTM - LightGBM is above zero with its whole interval above zero."""
    return "pooled LSTM qualifies" if pooled["difference"]["low"] > 0.0 else "LightGBM stays"


def markdown(document: Mapping[str, Any]) -> str:
    """The study's table: per series and pooled, both MoEs' net Sharpe and max drawdown and the difference."""
    level = f"{document['level']:.0%}"
    lines = [f"| series | test bars | cost (bp) | net Sharpe: LightGBM | LSTM | LSTM - LightGBM [{level} interval] | "
             "p | max drawdown: LightGBM | LSTM | turnover / yr: LightGBM | LSTM |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = {**document["series"], "pooled (equal weights)": {**document["pooled"], "cost_bps": None}}
    for symbol, v in rows.items():
        d = v["difference"]
        cost = "" if v["cost_bps"] is None else f"{v['cost_bps']:g}"
        lines.append(f"| {symbol} | {v['bars']} | {cost} | {v['lightgbm']['sharpe']:.2f} | {v['lstm']['sharpe']:.2f} | "
                     f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] | {d['p_value']:.2f} | "
                     f"{v['lightgbm']['max_drawdown']:.1%} | {v['lstm']['max_drawdown']:.1%} | "
                     f"{v['lightgbm']['turnover']:.1f} | {v['lstm']['turnover']:.1f} |")
    pooled = document["pooled"]
    lines += ["", f"series where the LSTM's MoE has the higher net Sharpe: {pooled['lstm_wins']}/{pooled['series']}",
              f"decision by the declared rule: {document['decision']}"]
    return "\n".join(lines)


def study_of(series: Sequence[PriceSeries], config: RunConfig, cache: Path | None, *, reps: int = 2000,
             run: RunMoE = default_run, proba: Callable[..., dict[str, np.ndarray]] = pooled_lstm_proba,
             ) -> dict[str, Any]:
    """Both arms on ``series``: the pooled LSTM's walk-forward first, then each series' two MoE walk-forwards."""
    trend_proba = proba(series, config, None if cache is None else pooled_cache(cache, series, config))
    folder = None if cache is None else moe_cache(cache, series, config)
    tested = backtested(series, config)
    left_out = [s.symbol for s in series if s not in tested]
    if left_out:
        print(f"too short for the backtest ({config.walk_forward.min_rows} bars): {', '.join(left_out)}; in the "
              "pooled fits only", flush=True)
    runs = {arm: {s.symbol: moe_returns(s, config, arm, trend_proba if arm == "lstm" else None, folder, run)
                  for s in tested} for arm in ("lstm", "lightgbm")}
    return {**compare(runs, reps=reps), "left_out": left_out}


def backtested(series: Sequence[PriceSeries], config: RunConfig) -> list[PriceSeries]:
    """The series long enough for the backtest's walk-forward (``walk_forward.min_rows`` bars)."""
    return [s for s in series if len(s) >= config.walk_forward.min_rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The MoE with the pooled LSTM in its trend slot against the default "
                                                 "(per-symbol LightGBM) on the daily development series "
                                                 "(docs/research/pooled-experts.md).")
    parser.add_argument("--symbols", nargs="*", default=daily_development_symbols())
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where refits and walk-forwards are kept")
    parser.add_argument("--no-cache", action="store_true", help="compute everything again, keep nothing")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    document = study_of(load_series(args.symbols), with_dataset_costs(load_config("quick")),
                        None if args.no_cache else args.cache, reps=args.reps)
    document["wall_seconds"] = time.perf_counter() - started
    print(markdown(document))
    print(f"wall {document['wall_seconds']:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
