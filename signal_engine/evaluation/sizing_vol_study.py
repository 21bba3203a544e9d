"""Which volatility forecast should users see and size by? Six candidates walked forward on the daily development
series.

The protocol, declared before the run, is docs/research/sizing-volatility.md: the candidates (the MoE's GARCH/EWMA
blend, its two parts, HAR, the boosted log-variance model and the QLIKE combination), the MoE's ``quick``
walk-forward schedule (models fitted at bar r's close on the next-bar variances known by then decide bars r ..
r + refit_every - 1), QLIKE on the test bars per series and pooled with equal weights, paired stationary-bootstrap
intervals against the blend (:func:`~signal_engine.evaluation.significance.mean_difference` per series,
:func:`~signal_engine.evaluation.significance.panel_mean_difference` pooled) and the rule :func:`choose`.

Run: ``nice -n 19 python -m signal_engine.evaluation.sizing_vol_study [--json OUT.json] [--cache DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine import components
from signal_engine.config import RunConfig, load_config
from signal_engine.data.datasets import DEVELOPMENT_DATASETS, export_dataset
from signal_engine.data.loader import load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.significance import DEFAULT_LEVEL, mean_difference, panel_mean_difference
from signal_engine.evaluation.walkforward import known_by, schedule
from signal_engine.experts.volatility_combination import variance_forecast
from signal_engine.labels import Labels, make_labels
from signal_engine.registry import build

REFERENCE = "volatility_blend"
BLEND_PARTS = ("baseline_garch11", "baseline_ewma")
CATALOGUED = ("vol_har", "vol_boosted", "vol_combination")
CANDIDATES: dict[str, str] = {
    REFERENCE: "GARCH/EWMA blend (today)",
    "baseline_garch11": "GARCH(1,1)",
    "baseline_ewma": "EWMA",
    "vol_har": "HAR",
    "vol_boosted": "boosted",
    "vol_combination": "combination",
}
DEFAULT_CACHE = Path("out/bench/sizing-volatility")
CACHE_VERSION = 1


def daily_development_symbols() -> list[str]:
    """The daily development series: MSFT and the daily panel, in catalogue order."""
    return [symbol for symbol, dataset in DEVELOPMENT_DATASETS.items() if dataset.timeframe == "1d"]


def walk_forecasts(frame: pd.DataFrame, labels: Labels, config: RunConfig,
                   candidates: Sequence[str] = tuple(CANDIDATES)) -> dict[str, np.ndarray]:
    """Each candidate's out-of-sample variance forecast per bar (NaN before the first refit).

    The backtest's walk-forward (``config.walk_forward``): at each refit bar r every model is fitted on the bars
    up to r and the next-bar variances known at r's close, and forecasts bars r .. r + refit_every - 1 from the
    bars up to the block's end. GARCH(1,1) and EWMA are the blend's own fitted parts, as in the backtest.
    """
    wf = config.walk_forward
    n = len(frame)
    out = {name: np.full(n, np.nan) for name in candidates}
    for block in schedule(n, wf):
        r, rows = block.fit_at, slice(block.start, block.stop)
        target = np.where(known_by(labels.known_at_next(), r, wf.embargo), labels.next_variance, np.nan)[: r + 1]
        train, history = frame.iloc[: r + 1], frame.iloc[: block.stop]
        if set(candidates) & {REFERENCE, *BLEND_PARTS}:
            blend = clone(components.volatility_blend(config)).fit(train, target)
            parts = {REFERENCE: blend.predict_variance, "baseline_garch11": blend.garch_.predict,
                     "baseline_ewma": blend.ewma_.predict}
            for name in set(candidates) & set(parts):
                out[name][rows] = np.asarray(parts[name](history), dtype=float)[rows]
        for name in (c for c in candidates if c in CATALOGUED):
            model = clone(build(name)).fit(train, target)
            out[name][rows] = variance_forecast(model, history)[rows]
    return out


def qlike_losses(forecasts: Mapping[str, np.ndarray], realised: np.ndarray, index: pd.Index,
                 test_start: int) -> pd.DataFrame:
    """Per-bar QLIKE ``log f + y / f`` of each forecast on the test bars where every forecast is positive and y is
    known."""
    rows = np.zeros(len(realised), dtype=bool)
    rows[test_start:] = True
    rows &= np.isfinite(realised)
    for values in forecasts.values():
        rows &= np.isfinite(values) & (values > 0)
    y = realised[rows]
    return pd.DataFrame({name: np.log(f[rows]) + y / f[rows] for name, f in forecasts.items()},
                        index=pd.DatetimeIndex(index[rows]))


def series_forecasts(symbol: str, config: RunConfig, cache: Path | None) -> tuple[pd.DataFrame, dict[str, int], float]:
    """The per-bar test losses of every candidate on one development series (from ``cache`` when it holds them),
    how many test bars with a known next-bar variance each candidate left without a positive forecast, and the
    seconds the walk-forward took (0 from the cache)."""
    with tempfile.TemporaryDirectory() as folder:
        series = load_prices(export_dataset(symbol, Path(folder)), symbol)
    frame = series_frame(series)
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    key = _cache_key(symbol, len(frame), config)
    path = None if cache is None else cache / f"{symbol}-{key}.npz"
    started = time.perf_counter()
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as stored:
            forecasts = dict(zip(CANDIDATES, stored["forecasts"].T, strict=True))
        seconds = 0.0
    else:
        forecasts = walk_forecasts(frame, labels, config)
        seconds = time.perf_counter() - started
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, forecasts=np.column_stack([forecasts[name] for name in CANDIDATES]))
    test = slice(config.walk_forward.test_start, len(frame))
    known = np.isfinite(labels.next_variance[test])
    unusable = {name: int((known & ~(np.isfinite(f[test]) & (f[test] > 0))).sum()) for name, f in forecasts.items()}
    losses = qlike_losses(forecasts, labels.next_variance, frame.index, config.walk_forward.test_start)
    return losses, unusable, seconds


def _cache_key(symbol: str, rows: int, config: RunConfig) -> str:
    wf = config.walk_forward
    text = json.dumps([CACHE_VERSION, symbol, rows, wf.initial_window, wf.refit_every, wf.embargo,
                       config.volatility.ewma_lambda, config.volatility.blend_grid, list(CANDIDATES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def summarise(losses: Mapping[str, pd.DataFrame], unusable: Mapping[str, Mapping[str, int]] | None = None, *,
              reps: int = 2000, seed: int = 0, level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """QLIKE per series and pooled, the paired intervals of each candidate against the blend, and the choice
    (``unusable``: per series, the test bars each candidate left without a forecast, reported as given)."""
    others = [name for name in CANDIDATES if name != REFERENCE]
    per_series: dict[str, Any] = {}
    for symbol, table in losses.items():
        per_series[symbol] = {
            "rows": len(table), "first": str(table.index[0].date()), "last": str(table.index[-1].date()),
            "unusable": dict((unusable or {}).get(symbol, {})),
            "qlike": {name: float(table[name].mean()) for name in CANDIDATES},
            "minus_blend": {name: mean_difference(table[name].to_numpy(), table[REFERENCE].to_numpy(), reps=reps,
                                                  seed=seed, level=level).to_dict() for name in others},
        }
    pooled = {
        "series": len(losses),
        "qlike": {name: float(np.mean([v["qlike"][name] for v in per_series.values()])) for name in CANDIDATES},
        "minus_blend": {name: panel_mean_difference({s: t[name] - t[REFERENCE] for s, t in losses.items()},
                                                    reps=reps, seed=seed, level=level).to_dict() for name in others},
        "wins": {name: sum(v["qlike"][name] < v["qlike"][REFERENCE] for v in per_series.values()) for name in others},
    }
    return {"level": level, "reps": reps, "series": per_series, "pooled": pooled, "choice": choose(pooled)}


def choose(pooled: Mapping[str, Any]) -> str:
    """The declared rule: among the candidates whose pooled interval against the blend lies wholly below zero, the
    lowest pooled QLIKE; the blend when none does."""
    qualified = [name for name, d in pooled["minus_blend"].items() if d["high"] < 0.0]
    return min(qualified, key=lambda name: pooled["qlike"][name]) if qualified else REFERENCE


def markdown(document: Mapping[str, Any]) -> str:
    """The QLIKE table (per series and pooled) and the table of differences against the blend with intervals."""
    names = list(CANDIDATES)
    rows = {**document["series"], "pooled": document["pooled"]}
    lines = ["| series | test bars | " + " | ".join(CANDIDATES[n] for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for symbol, v in rows.items():
        bars = v.get("rows", sum(s["rows"] for s in document["series"].values()))
        lines.append(f"| {symbol} | {bars} | " + " | ".join(f"{v['qlike'][n]:.4f}" for n in names) + " |")
    level = f"{document['level']:.0%}"
    others = names[1:]
    lines += ["", f"QLIKE(candidate) - QLIKE(blend), mean per bar [{level} paired bootstrap interval]; negative: the "
              "candidate is better", "", "| series | " + " | ".join(CANDIDATES[n] for n in others) + " |",
              "|---|" + "---|" * len(others)]
    for symbol, v in rows.items():
        cells = [f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
                 for d in (v["minus_blend"][n] for n in others)]
        lines.append(f"| {symbol} | " + " | ".join(cells) + " |")
    wins = document["pooled"]["wins"]
    lines += ["", "series where the candidate beats the blend: " + ", ".join(
        f"{CANDIDATES[n]} {wins[n]}/{document['pooled']['series']}" for n in others),
        f"choice by the declared rule: {document['choice']} ({CANDIDATES[document['choice']]})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The reported and sizing volatility forecast, chosen on the daily "
                                                 "development series (docs/research/sizing-volatility.md).")
    parser.add_argument("--symbols", nargs="*", default=daily_development_symbols())
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the walk-forwards are kept")
    parser.add_argument("--no-cache", action="store_true", help="walk every series forward again, keep nothing")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    config = load_config("quick")
    losses, unusable = {}, {}
    for symbol in args.symbols:
        losses[symbol], unusable[symbol], seconds = series_forecasts(symbol, config,
                                                                     None if args.no_cache else args.cache)
        dropped = {name: count for name, count in unusable[symbol].items() if count}
        print(f"{symbol}: {len(losses[symbol])} test bars, walk-forward {seconds:.1f} s"
              + (f", test bars without a usable forecast: {dropped}" if dropped else ""), flush=True)
    document = summarise(losses, unusable, reps=args.reps)
    print(markdown(document))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
