"""Does tuning the pooled trend network with Optuna at every refit, on that refit's training rows only, give better
trend probabilities than its default settings? Both walked forward on the common schedule of the pooled study.

The protocol, declared before the run, is in docs/research/tuning.md ("The pooled network"): the daily development
series NDX and N225, the common schedule of :mod:`~signal_engine.evaluation.pooled_walkforward` with the ``quick``
profile's settings, two forecasts of the 5-bar trend class per bar (the pooled network of the pooled study with its
default settings, and the same network with the settings of an Optuna study run on that refit's training rows,
:class:`~signal_engine.tuning.keras.TunedPooledExpert`), log loss and balanced accuracy on each series' test bars,
per series and pooled with paired stationary-bootstrap intervals, and the rule :func:`decide`.

Run: ``nice -n 19 python -m signal_engine.evaluation.pooled_tuning_study [--json OUT.json] [--trials N]``; each
refit's predictions and its study's record are kept under ``out/bench/pooled_tuning/``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.config import RunConfig, load_config
from signal_engine.evaluation.pooled_study import load_panel, panel_summary, pooled_expert, scored_bars
from signal_engine.evaluation.pooled_walkforward import PanelSeries, PooledBlock, common_schedule, pooled_block
from signal_engine.evaluation.significance import DEFAULT_LEVEL

SYMBOLS = ("NDX", "N225")
EXPERTS = {"default": "pooled network, default settings", "tuned": "pooled network, Optuna-tuned at every refit"}
COMPARISONS = (("tuned", "default"),)
DEFAULT_CACHE = Path("out/bench/pooled_tuning")


def tuned_expert(config: RunConfig, trials: int) -> Any:
    from signal_engine.tuning.keras import TunedPooledExpert

    return TunedPooledExpert(pooled_expert(config), trials=trials, seed=config.seed, timeout_s=None)


def block_predictions(panel: Mapping[str, PanelSeries], block: PooledBlock, config: RunConfig,
                      trials: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Both forecasts of one refit for each decided series, and the tuned refit's study record and seconds."""
    embargo = config.walk_forward.embargo
    started = time.perf_counter()
    _, default = pooled_block(panel, block, pooled_expert(config), embargo)
    default_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model, tuned = pooled_block(panel, block, tuned_expert(config, trials), embargo)
    record = {**model.tuning_, "default_seconds": default_seconds, "tuned_seconds": time.perf_counter() - started}
    return {"default": default, "tuned": tuned}, record


def walk_forward(panel: Mapping[str, PanelSeries], config: RunConfig, trials: int, cache: Path,
                 ) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Both experts' out-of-sample probabilities per series (NaN where not decided), refit by refit (only refits
    that decide a scored bar), each refit cached in ``cache``."""
    blocks = common_schedule({name: pd.DatetimeIndex(s.frame.index) for name, s in panel.items()},
                             config.walk_forward)
    test_start = config.walk_forward.test_start
    blocks = [b for b in blocks if any(stop > test_start for _, stop in b.decide.values())]
    out = {e: {name: np.full((len(s.frame), 3), np.nan) for name, s in panel.items()} for e in EXPERTS}
    cache.mkdir(parents=True, exist_ok=True)
    records = []
    for j, block in enumerate(blocks):
        path = cache / f"block-{j:03d}-{block.fit_date.date()}-{trials}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as stored:
                predictions = {e: {n: stored[f"{e}/{n}"] for n in block.decide} for e in EXPERTS}
                record = json.loads(str(stored["record"]))
        else:
            predictions, record = block_predictions(panel, block, config, trials)
            np.savez(path, record=json.dumps(record, default=float),
                     **{f"{e}/{n}": v for e, by in predictions.items() for n, v in by.items()})  # type: ignore[arg-type]
        for expert, by_series in predictions.items():
            for name, (start, stop) in block.decide.items():
                out[expert][name][start:stop] = by_series[name]
        records.append({"fit_date": str(block.fit_date.date()), **record})
        print(f"refit {j + 1}/{len(blocks)} {block.fit_date.date()}: default {record['default_seconds']:.0f} s, "
              f"tuned {record['tuned_seconds']:.0f} s ({record['trials']} trials, {record['pruned']} pruned), "
              f"chosen {record['params']}", flush=True)
    return out, records


def decide(pooled: Mapping[str, Any]) -> str:
    """The declared rule: tuning qualifies to become the default only when its pooled log loss is below the default
    settings' with the whole interval of tuned - default below zero."""
    difference = pooled["differences"]["log_loss"]["tuned-default"]
    return "tuning qualifies" if difference["high"] < 0.0 else "the default settings stay"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", nargs="*", default=list(SYMBOLS))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    config = load_config("quick")
    panel = load_panel(args.symbols, config)
    forecasts, records = walk_forward(panel, config, args.trials, args.cache)
    terms = {name: scored_bars(series, {e: forecasts[e][name] for e in EXPERTS}, config.walk_forward.test_start)
             for name, series in panel.items()}
    per_series, pooled = panel_summary(terms, EXPERTS, COMPARISONS, reps=2000, seed=0, level=DEFAULT_LEVEL)
    document = {"symbols": args.symbols, "trials": args.trials, "experts": EXPERTS, "series": per_series,
                "pooled": pooled, "decision": decide(pooled), "refits": records,
                "seconds": {"default": sum(r["default_seconds"] for r in records),
                            "tuned": sum(r["tuned_seconds"] for r in records)}}
    text = json.dumps(document, indent=2, default=float)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    print(json.dumps({k: document[k] for k in ("series", "pooled", "decision", "seconds")}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
