"""Does a network trained on every daily development series at once (a kernel-bank network, an LSTM, or one
kernel-bank network per archetype) beat the per-symbol LightGBM trend expert? All walked forward on one common
calendar of refit dates (issue 23, items 2 and 5).

The protocol, declared before the run, is docs/research/pooled-experts.md: the daily development series (MSFT and
the daily panel), the common schedule of :mod:`~signal_engine.evaluation.pooled_walkforward` with the ``quick``
profile's settings (first refit where a series has 504 bars, every 126 dates of the union calendar, embargo 0),
five forecasts of the 5-bar trend class per bar (the class prior, per-symbol LightGBM ``trend_calibrated``, the
pooled :class:`~signal_engine.archetypes.pooled_expert.PooledKernelTrendExpert`, the pooled
:class:`~signal_engine.archetypes.pooled_sequence.PooledLSTMTrendExpert` and
:class:`~signal_engine.archetypes.pooled_archetypes.PooledArchetypeTrendExpert`), log loss and balanced
accuracy on each series' test bars (bar 756 on), per series and pooled with paired stationary-bootstrap intervals
(:func:`~signal_engine.evaluation.significance.mean_difference`,
:func:`~signal_engine.evaluation.significance.panel_mean_difference`) and the rule :func:`decide`.

Run: ``nice -n 19 python -m signal_engine.evaluation.pooled_study [--json OUT.json] [--cache DIR]``; each refit's
predictions are kept under ``out/bench/pooled/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine import components
from signal_engine.archetypes.pooled_archetypes import PooledArchetypeTrendExpert
from signal_engine.archetypes.pooled_expert import PooledKernelTrendExpert
from signal_engine.archetypes.pooled_sequence import PooledLSTMTrendExpert
from signal_engine.config import RunConfig, load_config
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.pooled_walkforward import (
    PanelSeries,
    PooledBlock,
    common_schedule,
    panel_series,
    per_series_block,
    pooled_block,
    prior_block,
)
from signal_engine.evaluation.significance import DEFAULT_LEVEL, mean_difference, panel_mean_difference
from signal_engine.evaluation.sizing_vol_study import daily_development_symbols
from signal_engine.labels import make_labels

EXPERTS: dict[str, str] = {
    "prior": "class prior",
    "lightgbm": "per-symbol LightGBM (trend_calibrated)",
    "pooled": "pooled kernel bank (Keras)",
    "lstm": "pooled LSTM (Keras)",
    "archetypes": "one pooled kernel bank per archetype (Keras)",
}
POOLED = ("pooled", "lstm", "archetypes")
COMPARISONS = (("pooled", "lightgbm"), ("lightgbm", "prior"), ("pooled", "prior"), ("lstm", "lightgbm"),
               ("lstm", "prior"), ("archetypes", "lightgbm"), ("archetypes", "prior"))
METRICS = ("log_loss", "balanced_accuracy")
PROBABILITY_FLOOR = 1e-12
DEFAULT_CACHE = Path("out/bench/pooled")
CACHE_VERSION = 2
FIT_STATS = ("samples_seen", "train_seconds", "fit_seconds", "epochs_run", "best_epoch", "series_trained")
STATS = (*(f"{expert}_{stat}" for expert in POOLED for stat in FIT_STATS), "lightgbm_seconds")


def pooled_expert(config: RunConfig) -> PooledKernelTrendExpert:
    """The pooled expert as the study runs it: catalogue defaults, the label horizon as purge, the run's seed."""
    return PooledKernelTrendExpert(purge=config.labels.horizon, random_state=config.seed)


def pooled_lstm(config: RunConfig) -> PooledLSTMTrendExpert:
    """The pooled LSTM as the study runs it: its defaults (the pooled expert's inputs and training), the label
    horizon as purge, the run's seed."""
    return PooledLSTMTrendExpert(purge=config.labels.horizon, random_state=config.seed)


def archetype_networks(config: RunConfig) -> PooledArchetypeTrendExpert:
    """One network per archetype as the study runs it: each the pooled expert of :func:`pooled_expert` with its
    series' archetype's kernel bank, series routed by the fingerprint of their bars known at the fit."""
    return PooledArchetypeTrendExpert(network=pooled_expert(config))


def pooled_experts(config: RunConfig) -> dict[str, Any]:
    """The networks fitted on every series at once, by their key in :data:`EXPERTS`."""
    return {"pooled": pooled_expert(config), "lstm": pooled_lstm(config), "archetypes": archetype_networks(config)}


def fit_stats(model: Any) -> dict[str, float]:
    """A pooled fit's training statistics (:data:`FIT_STATS`)."""
    return {"samples_seen": model.samples_seen_, "train_seconds": model.train_seconds_,
            "fit_seconds": model.fit_seconds_, "epochs_run": model.epochs_run_, "best_epoch": model.best_epoch_,
            "series_trained": len(model.series_)}


def load_panel(symbols: list[str], config: RunConfig) -> dict[str, PanelSeries]:
    """Each shipped series' bars and features (the walk-forward's design frame) with its trend labels."""
    panel = {}
    for symbol in symbols:
        with tempfile.TemporaryDirectory() as folder:
            series = load_prices(export_dataset(symbol, Path(folder)), symbol)
        frame = series_frame(series)
        labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                             threshold=config.labels.threshold)
        panel[symbol] = panel_series(symbol, frame, labels.trend, labels.known_at_horizon())
    return panel


def block_predictions(panel: Mapping[str, PanelSeries], block: PooledBlock,
                      config: RunConfig) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Every expert's forecasts of one refit for each decided series, and the refit's training statistics."""
    embargo = config.walk_forward.embargo
    started = time.perf_counter()
    lightgbm = per_series_block(panel, block, components.trend_expert(config), embargo)
    lightgbm_seconds = time.perf_counter() - started
    predictions = {"prior": prior_block(panel, block, embargo), "lightgbm": lightgbm}
    stats = {"lightgbm_seconds": lightgbm_seconds}
    for name, expert in pooled_experts(config).items():
        model, predictions[name] = pooled_block(panel, block, expert, embargo)
        stats.update({f"{name}_{stat}": value for stat, value in fit_stats(model).items()})
    return predictions, stats


def walk_forward(panel: Mapping[str, PanelSeries], config: RunConfig, cache: Path | None,
                 ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Every expert's out-of-sample probabilities per series (NaN where not decided) and each refit's statistics
    (from ``cache`` where it holds the refit)."""
    blocks = common_schedule({name: pd.DatetimeIndex(s.frame.index) for name, s in panel.items()},
                             config.walk_forward)
    out = {expert: {name: np.full((len(s.frame), 3), np.nan) for name, s in panel.items()} for expert in EXPERTS}
    folder = None if cache is None else cache / _cache_key(panel, config)
    records = []
    for j, block in enumerate(blocks):
        path = None if folder is None else folder / f"block-{j:03d}-{block.fit_date.date()}.npz"
        if path is not None and path.exists():
            predictions, stats = _read_block(path, block)
            cached = True
        else:
            predictions, stats = block_predictions(panel, block, config)
            cached = False
            if path is not None:
                _write_block(path, predictions, stats)
        for expert, by_series in predictions.items():
            for name, (start, stop) in block.decide.items():
                out[expert][name][start:stop] = by_series[name]
        records.append({"fit_date": str(block.fit_date.date()), "decided": sorted(block.decide), "cached": cached,
                        **stats})
        fits = ", ".join(f"{e} {stats[f'{e}_series_trained']:.0f} series {stats[f'{e}_epochs_run']:.0f} epochs "
                         f"{stats[f'{e}_fit_seconds']:.1f} s" for e in POOLED)
        print(f"refit {j + 1}/{len(blocks)} {block.fit_date.date()}: {len(block.decide)} series decided; {fits}; "
              f"LightGBM {stats['lightgbm_seconds']:.1f} s" + (" (cached)" if cached else ""), flush=True)
    return out, records


def _cache_key(panel: Mapping[str, PanelSeries], config: RunConfig) -> str:
    wf = config.walk_forward
    text = json.dumps([CACHE_VERSION, {name: len(s.frame) for name, s in panel.items()}, wf.initial_window,
                       wf.refit_every, wf.embargo, config.labels.horizon, config.labels.threshold, config.seed,
                       _params(components.trend_expert(config)),
                       *(_params(expert) for expert in pooled_experts(config).values())])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _params(estimator: Any) -> str:
    return str(sorted(estimator.get_params().items()))


def _write_block(path: Path, predictions: Mapping[str, Mapping[str, np.ndarray]], stats: Mapping[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {f"{expert}|{name}": proba for expert, by_series in predictions.items()
              for name, proba in by_series.items()}
    np.savez(path, stats=np.array([stats[k] for k in STATS], dtype=float), **arrays)


def _read_block(path: Path, block: PooledBlock) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    with np.load(path, allow_pickle=False) as stored:
        predictions = {expert: {name: stored[f"{expert}|{name}"] for name in block.decide} for expert in EXPERTS}
        stats = dict(zip(STATS, stored["stats"].tolist(), strict=True))
    return predictions, stats


def balanced_accuracy_terms(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per row: 1 / (classes x rows of its class) x rows when the most likely class is right, else 0; their mean
    is the balanced accuracy (the mean over the classes present of each class's recall)."""
    present, counts = np.unique(labels, return_counts=True)
    share = dict(zip(present.tolist(), (counts / len(labels)).tolist(), strict=True))
    weight = np.array([1.0 / (len(present) * share[int(label)]) for label in labels])
    return np.where(np.argmax(proba, axis=1) == labels, weight, 0.0)


def log_losses(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per row: minus the log probability of the realised class (probabilities floored at 1e-12 and renormalised,
    as :func:`~signal_engine.evaluation.metrics.trend_metrics` does)."""
    clipped = np.clip(proba, PROBABILITY_FLOOR, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return -np.log(clipped[np.arange(len(labels)), labels])


def scored_bars(series: PanelSeries, forecasts: Mapping[str, np.ndarray], test_start: int) -> pd.DataFrame:
    """Per test bar (bar ``test_start`` on, label known, every forecast present), each expert's log loss and
    balanced-accuracy term, columns ``(metric, expert)``, indexed by date."""
    rows = np.zeros(len(series.trend), dtype=bool)
    rows[test_start:] = True
    rows &= series.trend >= 0
    for proba in forecasts.values():
        rows &= np.isfinite(proba).all(axis=1)
    labels = series.trend[rows]
    columns = {}
    for expert, proba in forecasts.items():
        columns[("log_loss", expert)] = log_losses(labels, proba[rows])
        columns[("balanced_accuracy", expert)] = balanced_accuracy_terms(labels, proba[rows])
    return pd.DataFrame(columns, index=pd.DatetimeIndex(series.frame.index[rows]))


def panel_summary(terms: Mapping[str, pd.DataFrame], experts: Collection[str], comparisons: Sequence[tuple[str, str]],
                  *, reps: int, seed: int, level: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each metric per series and pooled (equal weights) for ``experts``, with the paired intervals of
    ``comparisons``: the per-series and pooled parts of a panel study's document (this study's and the tuning's)."""
    per_series: dict[str, Any] = {}
    for symbol, table in terms.items():
        per_series[symbol] = {
            "rows": len(table), "first": str(table.index[0].date()), "last": str(table.index[-1].date()),
            **{metric: {e: float(table[(metric, e)].mean()) for e in experts} for metric in METRICS},
            "differences": {metric: {f"{a}-{b}": mean_difference(
                table[(metric, a)].to_numpy(), table[(metric, b)].to_numpy(), reps=reps, seed=seed,
                level=level).to_dict() for a, b in comparisons} for metric in METRICS},
        }
    pooled: dict[str, Any] = {
        "series": len(terms), "rows": sum(v["rows"] for v in per_series.values()),
        **{metric: {e: float(np.mean([v[metric][e] for v in per_series.values()])) for e in experts}
           for metric in METRICS},
        "differences": {metric: {f"{a}-{b}": panel_mean_difference(
            {s: t[(metric, a)] - t[(metric, b)] for s, t in terms.items()}, reps=reps, seed=seed,
            level=level).to_dict() for a, b in comparisons} for metric in METRICS},
    }
    return per_series, pooled


def summarise(terms: Mapping[str, pd.DataFrame], *, reps: int = 2000, seed: int = 0,
              level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Each metric per series and pooled (equal weights), the paired intervals of :data:`COMPARISONS`, and the
    decision."""
    per_series, pooled = panel_summary(terms, EXPERTS, COMPARISONS, reps=reps, seed=seed, level=level)
    pooled["wins_log_loss"] = {e: sum(v["log_loss"][e] < v["log_loss"]["lightgbm"] for v in per_series.values())
                               for e in POOLED}
    pooled["pooled_wins_log_loss"] = pooled["wins_log_loss"]["pooled"]
    return {"level": level, "reps": reps, "series": per_series, "pooled": pooled, "decision": decide(pooled),
            "decisions": {e: decide(pooled, e) for e in POOLED}}


def decide(pooled: Mapping[str, Any], expert: str = "pooled") -> str:
    """The declared rule, the same for every network fitted on all series at once: ``expert`` qualifies to become a
    default (to be run in the MoE next) only when its pooled log loss is below LightGBM's with the whole interval of
    the difference below zero."""
    difference = pooled["differences"]["log_loss"][f"{expert}-lightgbm"]
    return f"{expert} qualifies" if difference["high"] < 0.0 else "LightGBM stays"


def throughput(records: list[dict[str, Any]], expert: str = "pooled") -> dict[str, float]:
    """Training samples per second of ``expert``'s fits' gradient steps, and the fits' wall times (cached refits
    carry the numbers of the run that made them)."""
    samples = sum(r[f"{expert}_samples_seen"] for r in records)
    train = sum(r[f"{expert}_train_seconds"] for r in records)
    return {"refits": len(records), "samples": samples, "train_seconds": train,
            "samples_per_second": samples / train if train else float("nan"),
            "fit_seconds": sum(r[f"{expert}_fit_seconds"] for r in records),
            "median_fit_seconds": float(np.median([r[f"{expert}_fit_seconds"] for r in records])),
            "max_fit_seconds": float(np.max([r[f"{expert}_fit_seconds"] for r in records])),
            "lightgbm_seconds": sum(r["lightgbm_seconds"] for r in records),
            "median_epochs": float(np.median([r[f"{expert}_epochs_run"] for r in records])),
            "median_best_epoch": float(np.median([r[f"{expert}_best_epoch"] for r in records]))}


def _interval(d: Mapping[str, float], digits: int = 4) -> str:
    return f"{d['difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


COLUMN_NAMES = {"prior": "prior", "lightgbm": "LightGBM", "pooled": "pooled", "lstm": "LSTM",
                "archetypes": "per archetype"}


def markdown(document: Mapping[str, Any]) -> str:
    """The metric table (per series and pooled), a table of paired differences with intervals per metric, and the
    decisions."""
    rows = {**document["series"], "pooled (equal weights)": document["pooled"]}
    names = [COLUMN_NAMES[e] for e in EXPERTS]
    lines = ["| series | test bars | " + " | ".join(f"log loss: {n}" for n in names) + " | "
             + " | ".join(f"balanced accuracy: {n}" for n in names) + " |", "|---|---|" + "---|" * 2 * len(names)]
    for symbol, v in rows.items():
        cells = [f"{v['log_loss'][e]:.4f}" for e in EXPERTS] + [f"{v['balanced_accuracy'][e]:.3f}" for e in EXPERTS]
        lines.append(f"| {symbol} | {v['rows']} | " + " | ".join(cells) + " |")
    level = f"{document['level']:.0%}"
    for metric, better in (("log_loss", "negative"), ("balanced_accuracy", "positive")):
        title = metric.replace("_", " ")
        lines += ["", f"Paired differences of {title}, mean per bar [{level} bootstrap interval]; {better} is better",
                  "", "| series | " + " | ".join(f"{COLUMN_NAMES[a]} - {COLUMN_NAMES[b]}" for a, b in COMPARISONS)
                  + " |", "|---|" + "---|" * len(COMPARISONS)]
        for symbol, v in rows.items():
            cells = [_interval(v["differences"][metric][f"{a}-{b}"], 4 if metric == "log_loss" else 3)
                     for a, b in COMPARISONS]
            lines.append(f"| {symbol} | " + " | ".join(cells) + " |")
    pooled = document["pooled"]
    lines.append("")
    for expert in POOLED:
        lines.append(f"series where {COLUMN_NAMES[expert]}'s log loss beats LightGBM's: "
                     f"{pooled['wins_log_loss'][expert]}/{pooled['series']}")
    lines.append(f"decision by the declared rule: {document['decision']}")
    lines += [f"decision by the declared rule for {COLUMN_NAMES[e]}: {document['decisions'][e]}" for e in POOLED[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-symbol LightGBM against the networks fitted on every series at "
                                                 "once (kernel bank, LSTM, one kernel bank per archetype) on the "
                                                 "daily development series (docs/research/pooled-experts.md).")
    parser.add_argument("--symbols", nargs="*", default=daily_development_symbols())
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where each refit's predictions are kept")
    parser.add_argument("--no-cache", action="store_true", help="fit every refit again, keep nothing")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    config = load_config("quick")
    started = time.perf_counter()
    panel = load_panel(args.symbols, config)
    forecasts, records = walk_forward(panel, config, None if args.no_cache else args.cache)
    terms = {name: scored_bars(series, {e: forecasts[e][name] for e in EXPERTS}, config.walk_forward.test_start)
             for name, series in panel.items()}
    document = summarise(terms, reps=args.reps)
    document["throughput"] = {e: throughput(records, e) for e in POOLED}
    document["refits"] = records
    document["wall_seconds"] = time.perf_counter() - started
    print(markdown(document))
    for expert, speed in document["throughput"].items():
        print(f"{COLUMN_NAMES[expert]} training on CPU: {speed['samples_per_second']:.0f} samples/s over "
              f"{speed['refits']} refits ({speed['samples']:.0f} samples in {speed['train_seconds']:.1f} s of gradient "
              f"steps; fits {speed['fit_seconds']:.1f} s, median {speed['median_fit_seconds']:.1f} s, at most "
              f"{speed['max_fit_seconds']:.1f} s; epochs median {speed['median_epochs']:.0f}, best epoch median "
              f"{speed['median_best_epoch']:.0f})")
    print(f"LightGBM fits {document['throughput']['pooled']['lightgbm_seconds']:.1f} s; wall "
          f"{document['wall_seconds']:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
