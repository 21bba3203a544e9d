"""Does tuning the LightGBM trend expert with Optuna, nested inside each refit's training window, beat its default
settings? Both walked forward per symbol on the common schedule of the pooled study (issue 23, item 3).

The protocol, declared before the run, is docs/research/tuning.md: the daily development series, the common
schedule of :mod:`~signal_engine.evaluation.pooled_walkforward` with the ``quick`` profile's settings, three
forecasts of the 5-bar trend class per bar (the class prior, the default ``trend_calibrated`` LightGBM and the same
expert with the parameters of an Optuna study run on that refit's training rows alone,
:mod:`signal_engine.tuning.lightgbm`), log loss and balanced accuracy on each series' test bars, per series and
pooled with paired stationary-bootstrap intervals, and the rule :func:`decide`.

Run: ``nice -n 19 python -m signal_engine.evaluation.tuning_study [--json OUT.json] [--cache DIR] [--trials N]``;
each refit's predictions and chosen parameters are kept under ``out/bench/tuning/``, every study in one SQLite
file there (``studies.sqlite3``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine import components
from signal_engine.config import RunConfig, load_config
from signal_engine.evaluation.pooled_study import (
    load_panel,
    panel_summary,
    scored_bars,
)
from signal_engine.evaluation.pooled_walkforward import (
    PanelSeries,
    PooledBlock,
    common_schedule,
    prior_block,
    training_rows,
)
from signal_engine.evaluation.significance import DEFAULT_LEVEL
from signal_engine.evaluation.sizing_vol_study import daily_development_symbols

EXPERTS: dict[str, str] = {
    "prior": "class prior",
    "default": "LightGBM trend_calibrated, default settings",
    "tuned": "LightGBM trend_calibrated, Optuna-tuned in the training window",
}
COMPARISONS = (("tuned", "default"), ("default", "prior"), ("tuned", "prior"))
METRICS = ("log_loss", "balanced_accuracy")
DEFAULT_CACHE = Path("out/bench/tuning")
CACHE_VERSION = 1
STORAGE_FILE = "studies.sqlite3"


def tuning_settings(config: RunConfig, trials: int) -> Any:
    """The study's settings: the run's seed and embargo, ``trials`` trials."""
    from signal_engine.tuning.lightgbm import TuningSettings

    return TuningSettings(trials=trials, embargo=config.walk_forward.embargo, seed=config.seed)


def scored(block: PooledBlock, name: str, test_start: int) -> bool:
    """Whether any bar the block decides in ``name`` is scored (bar ``test_start`` on)."""
    return block.decide[name][1] > test_start


def tuned_series(series: PanelSeries, name: str, block: PooledBlock, config: RunConfig, settings: Any,
                 storage: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """One series' tuned forecast of its decided bars: a study on the training rows at the block's fit bar, the
    best parameters set on the default expert, fitted on all those rows."""
    from signal_engine.tuning.lightgbm import fit_tuned

    rows = training_rows(series, block.fit_at[name], config.walk_forward.embargo)
    X, y = series.frame.iloc[rows], series.trend[rows]
    model, result = fit_tuned(components.trend_expert(config), X, y, rows, series.known_at[rows], settings=settings,
                              name=f"{name}@{block.fit_date.date()}", storage=storage)
    start, stop = block.decide[name]
    return np.asarray(model.predict_proba(series.frame.iloc[start:stop])), result.to_dict()


def block_predictions(panel: Mapping[str, PanelSeries], block: PooledBlock, config: RunConfig, settings: Any,
                      storage: str | None) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """The three forecasts of one refit for each decided series whose bars are scored, and each study's record."""
    embargo, test_start = config.walk_forward.embargo, config.walk_forward.test_start
    names = [name for name in block.decide if scored(block, name, test_start)]
    prior = prior_block(panel, block, embargo)
    out: dict[str, dict[str, np.ndarray]] = {"prior": {n: prior[n] for n in names}, "default": {}, "tuned": {}}
    studies = {}
    for name in names:
        series = panel[name]
        start, stop = block.decide[name]
        rows = training_rows(series, block.fit_at[name], embargo)
        default = components.trend_expert(config).fit(series.frame.iloc[rows], series.trend[rows])
        out["default"][name] = np.asarray(default.predict_proba(series.frame.iloc[start:stop]))
        began = time.perf_counter()
        out["tuned"][name], studies[name] = tuned_series(series, name, block, config, settings, storage)
        studies[name]["seconds"] = time.perf_counter() - began
    return out, studies


def walk_forward(panel: Mapping[str, PanelSeries], config: RunConfig, settings: Any, cache: Path | None,
                 ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Every expert's out-of-sample probabilities per series (NaN where not decided or not scored) and each refit's
    studies (from ``cache`` where it holds the refit)."""
    blocks = common_schedule({name: pd.DatetimeIndex(s.frame.index) for name, s in panel.items()},
                             config.walk_forward)
    out = {expert: {name: np.full((len(s.frame), 3), np.nan) for name, s in panel.items()} for expert in EXPERTS}
    folder = None if cache is None else cache / _cache_key(panel, config, settings)
    storage = None if folder is None else f"sqlite:///{(folder / STORAGE_FILE).resolve()}"
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    records = []
    for j, block in enumerate(blocks):
        path = None if folder is None else folder / f"block-{j:03d}-{block.fit_date.date()}"
        if path is not None and path.with_suffix(".json").exists():
            predictions, studies = _read_block(path)
            cached = True
        else:
            predictions, studies = block_predictions(panel, block, config, settings, storage)
            cached = False
            if path is not None:
                _write_block(path, predictions, studies)
        for expert, by_series in predictions.items():
            for name, proba in by_series.items():
                start, stop = block.decide[name]
                out[expert][name][start:stop] = proba
        records.append({"fit_date": str(block.fit_date.date()), "cached": cached, "studies": studies})
        seconds = sum(s["seconds"] for s in studies.values())
        print(f"refit {j + 1}/{len(blocks)} {block.fit_date.date()}: {len(studies)} series tuned in {seconds:.1f} s"
              + (" (cached)" if cached else ""), flush=True)
    return out, records


def _cache_key(panel: Mapping[str, PanelSeries], config: RunConfig, settings: Any) -> str:
    wf = config.walk_forward
    text = json.dumps([CACHE_VERSION, {name: len(s.frame) for name, s in panel.items()}, wf.initial_window,
                       wf.refit_every, wf.embargo, config.labels.horizon, config.labels.threshold, config.seed,
                       str(sorted(components.trend_expert(config).get_params().items())), asdict(settings)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _write_block(path: Path, predictions: Mapping[str, Mapping[str, np.ndarray]],
                 studies: Mapping[str, Any]) -> None:
    arrays: dict[str, Any] = {f"{expert}|{name}": proba for expert, by_series in predictions.items()
                              for name, proba in by_series.items()}
    np.savez(path.with_suffix(".npz"), **arrays)
    path.with_suffix(".json").write_text(json.dumps(studies, indent=1) + "\n")


def _read_block(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    studies = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as stored:
        predictions = {expert: {name: stored[f"{expert}|{name}"] for name in studies} for expert in EXPERTS}
    return predictions, studies


def summarise(terms: Mapping[str, pd.DataFrame], *, reps: int = 2000, seed: int = 0,
              level: float = DEFAULT_LEVEL) -> dict[str, Any]:
    """Each metric per series and pooled (equal weights), the paired intervals of :data:`COMPARISONS`, and the
    decision."""
    per_series, pooled = panel_summary(terms, EXPERTS, COMPARISONS, reps=reps, seed=seed, level=level)
    pooled["tuned_wins_log_loss"] = sum(v["log_loss"]["tuned"] < v["log_loss"]["default"]
                                        for v in per_series.values())
    return {"level": level, "reps": reps, "series": per_series, "pooled": pooled, "decision": decide(pooled)}


def decide(pooled: Mapping[str, Any]) -> str:
    """The declared rule: tuning qualifies to become the default only when its pooled log loss is below the default
    settings' with the whole interval of the difference below zero."""
    difference = pooled["differences"]["log_loss"]["tuned-default"]
    return "tuning qualifies" if difference["high"] < 0.0 else "default settings stay"


def _interval(d: Mapping[str, float], digits: int = 4) -> str:
    return f"{d['difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def markdown(document: Mapping[str, Any]) -> str:
    """The metric table (per series and pooled) and the table of paired differences with intervals."""
    rows = {**document["series"], "pooled (equal weights)": document["pooled"]}
    lines = ["| series | test bars | log loss: prior | default | tuned | balanced accuracy: prior | default "
             "| tuned |", "|---|---|---|---|---|---|---|---|"]
    for symbol, v in rows.items():
        cells = [f"{v['log_loss'][e]:.4f}" for e in EXPERTS] + [f"{v['balanced_accuracy'][e]:.3f}" for e in EXPERTS]
        lines.append(f"| {symbol} | {v['rows']} | " + " | ".join(cells) + " |")
    level = f"{document['level']:.0%}"
    lines += ["", f"Paired differences, mean per bar [{level} bootstrap interval]; log loss: negative is better, "
              "balanced accuracy: positive is better", "",
              "| series | log loss: tuned - default | default - prior | tuned - prior | balanced accuracy: "
              "tuned - default | default - prior | tuned - prior |", "|---|---|---|---|---|---|---|"]
    for symbol, v in rows.items():
        cells = [_interval(v["differences"][metric][f"{a}-{b}"], 4 if metric == "log_loss" else 3)
                 for metric in METRICS for a, b in COMPARISONS]
        lines.append(f"| {symbol} | " + " | ".join(cells) + " |")
    pooled = document["pooled"]
    lines += ["", f"series where tuning's log loss beats the default's: {pooled['tuned_wins_log_loss']}/"
              f"{pooled['series']}", f"decision by the declared rule: {document['decision']}"]
    return "\n".join(lines)


def study_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How many studies ran, their trials, pruned trials and seconds, and the chosen values' medians."""
    studies = [s for r in records for s in r["studies"].values()]
    tuned = [s for s in studies if s["trials"]]
    params = sorted({k for s in tuned for k in s["params"]})
    return {"studies": len(studies), "tuned": len(tuned), "trials": sum(s["trials"] for s in studies),
            "pruned": sum(s["pruned"] for s in studies), "seconds": sum(s["seconds"] for s in studies),
            "median_params": {k: float(np.median([s["params"][k] for s in tuned])) for k in params}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Default against Optuna-tuned LightGBM trend expert on the daily "
                                                 "development series (docs/research/tuning.md).")
    parser.add_argument("--symbols", nargs="*", default=daily_development_symbols())
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per study")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where each refit's predictions and the studies' SQLite storage are kept")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    config = load_config("quick")
    settings = tuning_settings(config, args.trials)
    started = time.perf_counter()
    panel = load_panel(args.symbols, config)
    forecasts, records = walk_forward(panel, config, settings, args.cache)
    terms = {name: scored_bars(series, {e: forecasts[e][name] for e in EXPERTS}, config.walk_forward.test_start)
             for name, series in panel.items()}
    document = summarise(terms, reps=args.reps)
    document["studies"] = study_figures(records)
    document["refits"] = records
    document["wall_seconds"] = time.perf_counter() - started
    print(markdown(document))
    figures = document["studies"]
    print(f"{figures['studies']} studies ({figures['tuned']} tuned), {figures['trials']} trials, {figures['pruned']} "
          f"pruned, {figures['seconds']:.0f} s; median chosen parameters {figures['median_params']}; wall "
          f"{document['wall_seconds']:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
