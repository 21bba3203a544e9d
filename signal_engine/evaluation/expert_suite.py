"""Every expert of the registry, walked forward on one series next to its baseline.

The frame, labels, schedule and purging are those of :func:`signal_engine.evaluation.backtest.run_symbol`:
models fitted at bar r's close, on labels known by then (:func:`~signal_engine.evaluation.walkforward.known_by`),
decide bars r .. r + refit_every - 1; the schedule is anchored at the first bar. Classical experts refit at
every walk-forward refit; TensorFlow experts every ``tf_refit_every`` bars (a multiple keeps their refit
bars among the classical ones). Metrics cover the backtest's test span, bars ``test_start`` onwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine.archetypes.fingerprint import route, series_fingerprint
from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation import baselines
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.metrics import (
    expected_calibration_error,
    level_respect_metrics,
    levels_metrics,
    trend_metrics,
    volatility_metrics,
)
from signal_engine.evaluation.walkforward import known_by, schedule
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.experts.volatility_combination import variance_forecast
from signal_engine.labels import Labels, make_labels
from signal_engine.registry import ExpertSpec, build, load_catalogue

RESPECT_BAND_SIGMAS = 0.25


@dataclass(frozen=True)
class SuiteSettings:
    """Which experts the suite runs and how often each kind refits.

    Parameters
    ----------
    experts : catalogue names to run (None: every entry whose inputs the frame carries: the bars, and e.g. an
        ``implied_vol`` column where the price file has one); the baselines
        ``baseline_majority``, ``baseline_garch11``, ``baseline_ewma`` and ``baseline_pivot`` always run.
    refit_every : bars between refits of the classical experts (None: the walk-forward's ``refit_every``).
    tf_refit_every : bars between refits of the TensorFlow experts (None: 4 x ``refit_every``).
    tf_overrides : kwargs replacing those of every TensorFlow expert (e.g. fewer epochs).
    include_tensorflow : run the TensorFlow experts (skipped anyway when TensorFlow is not installed).
    archetypes : ``"all"`` runs every archetype expert under its own name; ``"routed"`` only the one the
        rule gate routes the series to (from its fingerprint before the test span), reported as
        ``archetype_routed`` so that every series has the same table rows (``result.archetype`` names it).
    """

    experts: tuple[str, ...] | None = None
    refit_every: int | None = None
    tf_refit_every: int | None = None
    tf_overrides: Mapping[str, Any] = field(default_factory=dict)
    include_tensorflow: bool = True
    archetypes: str = "all"


SUITE_PROFILES: dict[str, SuiteSettings] = {
    "quick": SuiteSettings(refit_every=252, tf_refit_every=1008, tf_overrides={"epochs": 2, "max_train_rows": 1500},
                           archetypes="routed"),
    "full": SuiteSettings(),
}
ARCHETYPE_PREFIX = "archetype_"
ROUTED = "archetype_routed"
ALWAYS = ("baseline_garch11", "baseline_ewma", "baseline_pivot")


@dataclass
class ExpertSuiteResult:
    """Per-kind metric tables of one series, with what produced them.

    ``metrics`` is ``{"trend": {model: {...}}, "volatility": {...}, "levels": {...}}`` with baselines
    under ``baseline_*`` names; ``baselines`` maps each expert to its baseline; ``outputs`` holds each
    model's out-of-sample per-bar outputs (NaN before its first decision); ``seconds`` the wall time per
    model; ``refits`` the number of fits per model; ``skipped`` why an expert did not run.
    """

    symbol: str
    metrics: dict[str, dict[str, dict[str, float]]]
    baselines: dict[str, str | None]
    outputs: dict[str, np.ndarray]
    seconds: dict[str, float]
    refits: dict[str, int]
    archetype: str
    fingerprint: dict[str, Any]
    skipped: dict[str, str]


def run_expert_suite(
    series: PriceSeries,
    config: RunConfig,
    *,
    settings: SuiteSettings | None = None,
    catalogue: Mapping[str, ExpertSpec] | None = None,
    on_model: Callable[[str], None] | None = None,
    features: pd.DataFrame | None = None,
) -> ExpertSuiteResult:
    """Walk every selected expert and the baselines forward through ``series``; metrics on the test span.

    Parameters
    ----------
    series : validated bars of one symbol.
    config : the run configuration (walk-forward schedule, label horizon and threshold, seed).
    settings : experts and refit cadence (default: ``SUITE_PROFILES[config.profile]`` when it exists).
    catalogue : expert specs by name (default: the packaged catalogue).
    on_model : called with each model's name when it finishes (for progress bars).
    features : ``series_frame(series)`` when the caller computed it already (shared with the MoE walk-forward).
    """
    settings = settings or SUITE_PROFILES.get(config.profile, SuiteSettings())
    specs = dict(catalogue) if catalogue is not None else load_catalogue()
    wf = config.walk_forward
    frame = series_frame(series) if features is None else features
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    n = len(frame)
    test = slice(wf.test_start, n)
    classical_every = settings.refit_every or wf.refit_every
    tf_every = settings.tf_refit_every or 4 * classical_every
    fingerprint = series_fingerprint(series.bars.iloc[: wf.test_start])
    archetype = route(fingerprint)

    names = list(settings.experts) if settings.experts is not None else [
        name for name, spec in specs.items() if not spec.is_baseline
    ]
    names = list(dict.fromkeys([*names, *ALWAYS]))
    skipped: dict[str, str] = {}
    outputs: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    refits: dict[str, int] = {}
    kinds: dict[str, str] = {"baseline_majority": "trend"}
    baselines_of: dict[str, str | None] = {"baseline_majority": None}
    for name in names:
        spec = specs[name]
        reason = _skip_reason(spec, settings, archetype, frame.columns)
        if reason:
            skipped[name] = reason
            continue
        tensorflow = spec.schedule == "tensorflow"
        overrides = dict(settings.tf_overrides) if tensorflow else {}
        if "random_state" in build(name, specs).get_params():
            overrides.setdefault("random_state", config.seed)
        prototype = build(name, specs, **overrides)
        every = tf_every if tensorflow else classical_every
        key = ROUTED if settings.archetypes == "routed" and name.startswith(ARCHETYPE_PREFIX) else name
        kinds[key], baselines_of[key] = spec.kind, spec.baseline
        started = time.perf_counter()
        outputs[key], refits[key] = _walk(prototype, spec.kind, frame, labels, replace(wf, refit_every=every))
        seconds[key] = time.perf_counter() - started
        if on_model is not None:
            on_model(key)

    started = time.perf_counter()
    outputs["baseline_majority"] = _majority(labels, n, replace(wf, refit_every=classical_every))
    seconds["baseline_majority"] = time.perf_counter() - started

    metrics = {
        "trend": {name: _trend_scores(labels, outputs[name], test) for name in outputs if kinds[name] == "trend"},
        "volatility": {name: volatility_metrics(outputs[name][test, 0], labels.next_variance[test])
                       for name in outputs if kinds[name] == "volatility"},
        "levels": {name: _level_scores(labels, frame, outputs[name], test)
                   for name in outputs if kinds[name] == "levels"},
    }
    return ExpertSuiteResult(
        symbol=series.symbol,
        metrics=metrics,
        baselines=baselines_of,
        outputs=outputs,
        seconds=seconds,
        refits=refits,
        archetype=archetype,
        fingerprint=fingerprint.to_dict(),
        skipped=skipped,
    )


def _skip_reason(spec: ExpertSpec, settings: SuiteSettings, archetype: str, columns: Any) -> str | None:
    if spec.inputs != "bars" and spec.inputs not in columns:
        return f"needs {spec.inputs} data, which the price series do not carry"
    if spec.schedule == "tensorflow" and not settings.include_tensorflow:
        return "TensorFlow experts left out by the suite settings"
    if spec.schedule == "tensorflow" and not tensorflow_available():
        return "TensorFlow is not installed (pip install -e .[tf])"
    routed_only = settings.archetypes == "routed" and spec.name.startswith(ARCHETYPE_PREFIX)
    if routed_only and spec.name != ARCHETYPE_PREFIX + archetype:
        return f"the rule gate routes this series to {archetype}"
    return None


def _walk(prototype: Any, kind: str, frame: pd.DataFrame, labels: Labels, wf: Any) -> tuple[np.ndarray, int]:
    """Out-of-sample outputs of one expert over every block of the schedule."""
    n = len(frame)
    width = {"trend": 3, "volatility": 1, "levels": 2}[kind]
    out = np.full((n, width), np.nan)
    blocks = schedule(n, wf)
    for block in blocks:
        r = block.fit_at
        history = frame.iloc[: r + 1]
        model = clone(prototype).fit(history, _target(kind, labels, r, wf.embargo)[: r + 1])
        context = model.context_bars()
        first = 0 if context is None else max(0, block.start - context)
        window = frame.iloc[first : block.stop]
        out[block.start : block.stop] = _predict(model, kind, window)[block.start - first :]
    return out, len(blocks)


def _target(kind: str, labels: Labels, r: int, embargo: int) -> np.ndarray:
    """Labels known at bar r's close; -1 (trend) or NaN elsewhere."""
    if kind == "trend":
        known = known_by(labels.known_at_horizon(), r, embargo)
        return np.where(known & (labels.trend >= 0), labels.trend, -1)
    if kind == "volatility":
        return np.where(known_by(labels.known_at_next(), r, embargo), labels.next_variance, np.nan)
    future = np.column_stack((labels.future_low, labels.future_high))
    future[~known_by(labels.known_at_horizon(), r, embargo)] = np.nan
    return future


def _predict(model: Any, kind: str, X: pd.DataFrame) -> np.ndarray:
    if kind == "trend":
        return np.asarray(model.predict_proba(X))
    if kind == "volatility":
        return variance_forecast(model, X)[:, None]
    return np.asarray(model.predict(X))


def _majority(labels: Labels, n: int, wf: Any) -> np.ndarray:
    out = np.full((n, 3), np.nan)
    for block in schedule(n, wf):
        known = known_by(labels.known_at_horizon(), block.fit_at, wf.embargo) & (labels.trend >= 0)
        model = baselines.majority_classifier(labels.trend[known])
        out[block.start : block.stop] = baselines.majority_proba(model, block.stop - block.start)
    return out


def _trend_scores(labels: Labels, proba: np.ndarray, test: slice) -> dict[str, float]:
    y = labels.trend[test]
    p = proba[test]
    known = (y >= 0) & np.isfinite(p).all(axis=1)
    scores = trend_metrics(y[known], p[known])
    scores["ece"] = expected_calibration_error(y[known], p[known])
    return scores


def _level_scores(labels: Labels, frame: pd.DataFrame, levels: np.ndarray, test: slice) -> dict[str, float]:
    close = frame["close"].to_numpy(dtype=float)
    horizon = labels.horizon
    later = np.append(close[horizon:], np.full(horizon, np.nan))
    band = RESPECT_BAND_SIGMAS * frame["vol30"].to_numpy(dtype=float) * np.sqrt(horizon) * close
    args = (close[test], labels.future_low[test], labels.future_high[test], later[test])
    return {**levels_metrics(levels[test], *args), **level_respect_metrics(levels[test], *args, band[test])}


HEADLINE = {"trend": ("log_loss", "balanced_accuracy", "ece"), "volatility": ("qlike",),
            "levels": ("support_error", "resistance_error", "respect_rate")}


def markdown_table(results: list[ExpertSuiteResult]) -> str:
    """One row per model and kind, one column per symbol and headline metric, baselines last."""
    lines = []
    for kind, metric_names in HEADLINE.items():
        models = list(dict.fromkeys(m for r in results for m in r.metrics[kind]))
        models.sort(key=lambda m: (m.startswith("baseline_"), 0))
        header = [f"{r.symbol} {metric}" for r in results for metric in metric_names]
        lines += [f"\n{kind}\n", "| model | baseline | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for model in models:
            baseline = next((r.baselines.get(model) for r in results if r.baselines.get(model)), "") or ""
            cells = [f"{r.metrics[kind][model][metric]:.4f}" if model in r.metrics[kind] else "-"
                     for r in results for metric in metric_names]
            lines.append(f"| {model} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the suite on the shipped real series; print a table, optionally write JSON."""
    import argparse
    import json
    import tempfile
    from pathlib import Path

    from signal_engine.config import load_config
    from signal_engine.data.datasets import DATASETS, export_dataset
    from signal_engine.data.loader import load_prices

    parser = argparse.ArgumentParser(description="Walk every expert forward on the shipped real series.")
    parser.add_argument("--profile", default="quick", choices=sorted(SUITE_PROFILES))
    parser.add_argument("--archetypes", default=None, choices=("all", "routed"))
    parser.add_argument("--symbols", nargs="*", default=list(DATASETS))
    parser.add_argument("--json", type=Path, default=None, help="write the metric tables here")
    args = parser.parse_args(argv)
    config = load_config(args.profile)
    settings = SUITE_PROFILES[args.profile]
    if args.archetypes:
        settings = replace(settings, archetypes=args.archetypes)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for symbol in args.symbols:
            started = time.perf_counter()
            result = run_expert_suite(load_prices(export_dataset(symbol, Path(folder))), config, settings=settings)
            print(f"{symbol}: {time.perf_counter() - started:.1f} s, routed to {result.archetype}", flush=True)
            results.append(result)
    print(markdown_table(results))
    if args.json is not None:
        document = {r.symbol: {"metrics": r.metrics, "baselines": r.baselines, "seconds": r.seconds,
                               "refits": r.refits, "archetype": r.archetype, "fingerprint": r.fingerprint,
                               "skipped": r.skipped} for r in results}
        args.json.write_text(json.dumps(document, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
