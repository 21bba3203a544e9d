"""What each workflow step does, as plain functions over folders (the local runner and the SageMaker jobs call these).

The experts are fitted exactly as the walk-forward backtest fits them at a refit (``signal_engine.components``),
once, at the last bar, on every label known there. The gate and the confidence map are fitted on the experts'
*out-of-sample* walk-forward outputs (the test span of :func:`signal_engine.evaluation.backtest.run_symbol`), so
the gate never learns from in-sample expert scores; the same walk-forward gives the metrics the quality gate
reads, so the run walks forward once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from signal_engine import components
from signal_engine.config import NEWS_COLUMN, NEWS_EXPERT, POOLED_TRENDS, RunConfig, for_bars, moe_experts
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import ConfigError, InputError
from signal_engine.evaluation.backtest import SCORE_VOL_COLUMN, SymbolResult, run_symbol
from signal_engine.evaluation.planning import check_inputs, check_length, periods_per_year
from signal_engine.evaluation.walkforward import known_by
from signal_engine.features import FINGERPRINT_NAMES, WARMUP_BARS, feature_frame
from signal_engine.json_values import json_safe
from signal_engine.labels import Labels, make_labels
from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.scores import levels_score, trend_score, volatility_score
from signal_engine.registry import load_experts, save_experts
from signal_engine.storage.export import series_csv
from signal_engine.workflow.news import NewsTraining
from signal_engine.workflow.plan import expert_model
from signal_engine.workflow.quality import Decision, QualityConfig, decide
from signal_engine.workflow.steps import (
    DATASET_FILE,
    EXPERTS,
    DatasetArtefact,
    EvaluationArtefact,
    ExpertArtefact,
    GateArtefact,
)

if TYPE_CHECKING:
    from signal_engine.evaluation.pooled_walkforward import PanelSeries
    from signal_engine.workflow.tuning import TuningRun

GATE_INFO_FILE = "gate.json"
POOLED_TREND_FILE = "pooled_trend.npz"
METRICS_FILE = "metrics.json"
META_FILE = "meta.npz"
GATE_FILE = "gate.npz"
DECISION_FILE = "decision.json"
VOLATILITY_MIN_PERIODS = 20


def check_exportable(config: RunConfig, news: NewsTraining | None = None, *, book: bool = False) -> None:
    """Fail before any work when ``config.moe`` picks parts the bundle cannot carry yet (one clear line).

    ``moe.news`` (the gate's news slot) needs the text expert in the bundle (``news``: the config's ``news:``
    section), whose score of the stored headlines is the slot's input when serving (and in the live book step, for
    every timeframe model of the book)."""
    moe = config.moe
    if not moe.enabled:
        raise ConfigError("moe.enabled is false: the training workflow publishes the MoE (experts, gate, combiner); "
                          "set moe.enabled: true to train a bundle")
    if moe.gate not in ("softmax", "mlp", "rule"):
        raise ConfigError(f"moe.gate '{moe.gate}': the bundle carries a softmax or MLP gate as NumPy weights or the "
                          "fingerprint rule gate as parameters; use moe.gate: softmax, mlp or rule for training")
    if moe.combiner not in ("weighted", "meta", "rule"):
        raise ConfigError(f"moe.combiner '{moe.combiner}': the training workflow exports the weighted, meta-model "
                          "and rule combiners; use moe.combiner: weighted, meta or rule for training")
    if moe.news:
        check_news_slot(config, news)
    chosen = [t for t in (moe.experts.trend, moe.experts.intraday_trend) if t in POOLED_TRENDS]
    if book and chosen:
        raise ConfigError(f"moe.experts.trend is {chosen[0]}: the whole book's timeframe models walk forward per "
                          "symbol, which cannot fit a network across series; train the MoE's bundle alone with "
                          "--no-book (SageMaker: hyperparameter book=false), or choose another trend expert")


def check_news_slot(config: RunConfig, news: NewsTraining | None) -> None:
    """``moe.news`` in training: the bundle carries the text expert (the whole book's models and online learning
    read the slot's input as the walk-forward does: ``signal_engine.workflow.book``, ``signal_engine.live``)."""
    if news is None or not news.enabled:
        raise ConfigError("moe.news is true, but the bundle would not carry the text expert: the served news slot's "
                          "input is the text expert's score of the stored headlines at each request's decision time; "
                          "add 'news: {enabled: true}' to the same config file (each bar's training news_score is "
                          "then the price file's news_score column where it has one, else the document store's "
                          "news scored by that text expert), or set moe.news: false")


# -- prepare dataset -----------------------------------------------------------------------------------------

def select_window(series: PriceSeries, start: str | None, end: str | None) -> PriceSeries:
    """The bars of ``series`` between ``start`` and ``end`` (ISO dates, inclusive; None for open ends)."""
    bars = series.bars
    index = pd.DatetimeIndex(bars.index)
    keep = np.ones(len(bars), dtype=bool)
    for name, bound in (("start", start), ("end", end)):
        if bound is None:
            continue
        try:
            stamp = pd.Timestamp(bound)
        except ValueError:
            raise InputError(name, f"'{bound}' is not a date; expected YYYY-MM-DD") from None
        if name == "start":
            keep &= np.asarray(index >= stamp, dtype=bool)
        else:
            after = stamp + pd.Timedelta(days=1) if stamp == stamp.normalize() else stamp + pd.Timedelta(seconds=1)
            keep &= np.asarray(index < after, dtype=bool)
    return replace(series, bars=bars.loc[keep])


def timeframe_of(series: PriceSeries) -> str:
    """``1d``, ``1h``, ``15m``, ``1w``...: the median spacing of the bars."""
    steps = pd.Series(pd.DatetimeIndex(series.bars.index)).diff().dt.total_seconds().dropna()
    seconds = float(steps.median()) if len(steps) else 86400.0
    if seconds >= 5 * 86400:
        return "1w"
    if seconds >= 20 * 3600:
        return "1d"
    if seconds >= 3600:
        return f"{round(seconds / 3600)}h"
    return f"{max(1, round(seconds / 60))}m"


def write_series(series: PriceSeries, path: Path) -> Path:
    """Write validated bars in the Yahoo layout (``Date,Open,High,Low,Close[,Volume]``), prices already adjusted,
    exactly as the bars export of the collectors writes them (every digit, so the jobs fit on the stored values)."""
    path.write_bytes(series_csv(series))
    return path


def prepare_dataset(series: Sequence[PriceSeries], out: Path, config: RunConfig, *,
                    start: str | None = None, end: str | None = None) -> DatasetArtefact:
    """Cut each series to [start, end], check it is long enough for ``config`` and carries the inputs its experts
    read (``implied_vol`` for ``vol_har_implied``), write it with ``dataset.json``.

    A price file's ``implied_vol`` column is kept as it is (point in time, empty where missing), so the experts are
    fitted on what the backtest reads."""
    if not series:
        raise InputError("symbols", "no series given; expected at least one symbol's bars")
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for s in series:
        cut = select_window(s, start, end)
        check_length(cut, config)
        check_inputs(cut, cut.bars, config)
        path = write_series(cut, out / f"{cut.symbol}.csv")
        entries[cut.symbol] = {
            "file": path.name, "bars": len(cut), "start": str(cut.bars.index[0]), "end": str(cut.bars.index[-1]),
            "timeframe": timeframe_of(cut), "source": cut.source,
        }
    document = {"schema_version": 1, "start": start, "end": end, "symbols": entries}
    (out / DATASET_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return DatasetArtefact(out, tuple(entries))


def load_dataset(root: Path) -> list[PriceSeries]:
    """The series of a prepared dataset folder, in its order, each naming the source it was prepared from (the
    metrics and the version's hash then name the user's file, not the folder the steps happened to run in)."""
    try:
        document = json.loads((root / DATASET_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{root}: no {DATASET_FILE}; expected a folder written by the prepare_dataset step") from None
    return [replace(load_prices(root / entry["file"], symbol), source=entry.get("source") or str(root / entry["file"]))
            for symbol, entry in document["symbols"].items()]


# -- train experts -------------------------------------------------------------------------------------------

def _frame_and_labels(series: PriceSeries, config: RunConfig) -> tuple[pd.DataFrame, Labels]:
    frame = series.bars.join(feature_frame(series.bars))
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    return frame, labels


def fit_expert(expert: str, series: PriceSeries, config: RunConfig) -> Any:
    """Fit one expert on everything known at the last bar, as the backtest does at a refit (with the config of
    the series' bars, ``for_bars``)."""
    config = for_bars(config, series.intraday)
    frame, labels = _frame_and_labels(series, config)
    r, embargo = len(series) - 1, config.walk_forward.embargo
    known_horizon = known_by(labels.known_at_horizon(), r, embargo)
    if expert == "trend":
        rows = trend_rows(labels, r, embargo)
        return expert_model("trend", config).fit(frame.iloc[rows], labels.trend[rows])
    if expert == "volatility":
        known_next = known_by(labels.known_at_next(), r, embargo)
        return expert_model("volatility", config).fit(frame, np.where(known_next, labels.next_variance, np.nan))
    if expert == "levels":
        future_range = np.column_stack((labels.future_low, labels.future_high))
        future_range[~known_horizon] = np.nan
        return expert_model("levels", config).fit(frame, future_range)
    raise ConfigError(f"unknown expert '{expert}'; expected one of {', '.join(EXPERTS)}")


def trend_rows(labels: Labels, fit_bar: int, embargo: int) -> np.ndarray:
    """The trend expert's training rows at ``fit_bar``: every trend label known there less ``embargo`` bars."""
    return np.flatnonzero(known_by(labels.known_at_horizon(), fit_bar, embargo) & (labels.trend >= 0))


def fit_tuned_trend(series: PriceSeries, config: RunConfig, tuning: TuningRun,
                    storage: str) -> tuple[Any, dict[str, Any]]:
    """The trend expert of :func:`fit_expert`, its LightGBM settings chosen first by an Optuna study on the same
    rows (``signal_engine.workflow.tuning``), and the study's record."""
    from signal_engine.workflow.tuning import study_name, tuned_trend

    config = for_bars(config, series.intraday)
    frame, labels = _frame_and_labels(series, config)
    r = len(series) - 1
    rows = trend_rows(labels, r, config.walk_forward.embargo)
    return tuned_trend(expert_model("trend", config), frame.iloc[rows], labels.trend[rows], rows,
                       labels.known_at_horizon()[rows], config=config, tuning=tuning,
                       name=study_name(series.symbol, series.bars.index[r]), storage=storage)


def train_expert(expert: str, series: Sequence[PriceSeries], config: RunConfig, out: Path, *,
                 tuning: TuningRun | None = None) -> ExpertArtefact:
    """Fit ``expert`` for every symbol and save them as ``<expert>/<SYMBOL>`` in an artefact folder.

    With ``tuning.enabled`` the trend expert is tuned first (:func:`fit_tuned_trend`); the studies go to
    ``tuning.storage``, by default ``out/tuning/optuna.db``, and their records to ``out/tuning.json``."""
    pooled = pooled_series(series, config) if expert == "trend" else []
    if pooled:
        return train_pooled_trend(series, pooled, config, out,
                                  tuning=tuning if tuning is not None and tuning.enabled else None)
    if tuning is None or not tuning.enabled or expert != "trend":
        fitted = {f"{expert}/{s.symbol}": fit_expert(expert, s, config) for s in series}
        save_experts(fitted, out)
        return ExpertArtefact(expert, out)
    from signal_engine.workflow.tuning import require_optuna, sqlite_storage, write_records

    require_optuna("tuning")
    storage = tuning.storage or sqlite_storage(out)
    fitted, records = {}, {}
    for s in series:
        fitted[f"{expert}/{s.symbol}"], records[s.symbol] = fit_tuned_trend(s, config, tuning, storage)
    save_experts(fitted, out)
    write_records(records, out)
    return ExpertArtefact(expert, out)


# -- the pooled trend expert -----------------------------------------------------------------------------------

def pooled_series(series: Sequence[PriceSeries], config: RunConfig) -> list[PriceSeries]:
    """The series whose trend expert is the pooled one (``trend_pooled`` for their bars, ``for_bars``)."""
    return [s for s in series if for_bars(config, s.intraday).moe.experts.trend in POOLED_TRENDS]


def trend_panel(series: Sequence[PriceSeries], config: RunConfig) -> dict[str, PanelSeries]:
    """Each series' design frame, trend labels and the bar each label is known at, named by its symbol."""
    from signal_engine.evaluation.pooled_walkforward import panel_series

    panel = {}
    for s in series:
        frame, labels = _frame_and_labels(s, for_bars(config, s.intraday))
        panel[s.symbol] = panel_series(s.symbol, frame, labels.trend, labels.known_at_horizon())
    return panel


def pooled_training_rows(panel: Mapping[str, PanelSeries], config: RunConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The final pooled fit's rows: every series up to its last bar, labelled where its label is known there less
    the embargo (what :func:`fit_expert` gives each per-symbol trend expert), -1 elsewhere."""
    from signal_engine.evaluation.pooled_walkforward import PooledBlock, pooled_training_set

    last = PooledBlock(max(pd.Timestamp(s.frame.index[-1]) for s in panel.values()),
                       {name: len(s.frame) - 1 for name, s in panel.items()}, {})
    return pooled_training_set(panel, last, config.walk_forward.embargo)


def fit_pooled_trend(panel: Mapping[str, PanelSeries], config: RunConfig) -> Any:
    """One pooled trend network over every series of ``panel``, on :func:`pooled_training_rows`."""
    return components.pooled_trend_expert(config).fit(*pooled_training_rows(panel, config))


def fit_tuned_pooled_trend(panel: Mapping[str, PanelSeries], config: RunConfig, tuning: TuningRun,
                           storage: str | None) -> tuple[Any, dict[str, Any]]:
    """The network of :func:`fit_pooled_trend`, its settings chosen first by an Optuna study on the same rows
    (``signal_engine.workflow.tuning.tuned_pooled``), and the study's record."""
    from signal_engine.workflow.tuning import pooled_study_name, tuned_pooled

    X, y = pooled_training_rows(panel, config)
    return tuned_pooled(components.pooled_trend_expert(config), X, y, config=config, tuning=tuning,
                        name=pooled_study_name(config, X.index.max()), storage=storage)


def train_pooled_trend(series: Sequence[PriceSeries], pooled: Sequence[PriceSeries], config: RunConfig,
                       out: Path, *, tuning: TuningRun | None = None) -> ExpertArtefact:
    """The trend artefact with ``trend_pooled``: the pooled network once (entry ``trend``; each symbol is answered
    with its own series code and normalisation) and, in ``pooled_trend.npz``, its out-of-sample probabilities from
    the pooled walk-forward (:func:`~signal_engine.evaluation.pooled_walkforward.pooled_out_of_sample`), which the
    gate step's walk-forward reads as the trend expert's; any series with another trend expert (intraday bars) gets
    its own fit as ``trend/SYMBOL``.

    With ``tuning`` (enabled) the network's settings are chosen by an Optuna study on the final fit's rows (kept in
    ``tuning.storage``, by default ``out/tuning/optuna.db``; each pooled symbol's record in ``out/tuning.json``),
    every refit of the pooled walk-forward is tuned the same way on its own training rows (records in
    ``out/pooled_tuning.json``), and the other series' trend experts are tuned as :func:`fit_tuned_trend` tunes."""
    from signal_engine.evaluation.pooled_walkforward import pooled_out_of_sample

    panel = trend_panel(pooled, config)
    others = [s for s in series if s.symbol not in panel]
    if tuning is None:
        model = fit_pooled_trend(panel, config)
        fitted = {"trend": model, **{f"trend/{s.symbol}": fit_expert("trend", s, config) for s in others}}
        save_experts(fitted, out)
        proba, _ = pooled_out_of_sample(panel, components.pooled_trend_expert(config), config.walk_forward)
    else:
        proba = _train_tuned_pooled_trend(panel, others, config, out, tuning)
    arrays = {}
    for name, values in proba.items():
        arrays[f"proba_{name}"] = values
        arrays[f"dates_{name}"] = pd.DatetimeIndex(panel[name].frame.index).asi8
    np.savez(out / POOLED_TREND_FILE, **arrays)  # type: ignore[arg-type]
    return ExpertArtefact("trend", out)


def _train_tuned_pooled_trend(panel: Mapping[str, PanelSeries], others: Sequence[PriceSeries], config: RunConfig,
                              out: Path, tuning: TuningRun) -> dict[str, np.ndarray]:
    """:func:`train_pooled_trend` with tuning on: the tuned network and experts saved, the studies' records
    written; returns the tuned pooled walk-forward's probabilities."""
    from signal_engine.evaluation.pooled_walkforward import PooledBlock, pooled_out_of_sample
    from signal_engine.workflow.tuning import (
        require_optuna,
        sqlite_storage,
        tuned_pooled_expert,
        write_pooled_refits,
        write_records,
    )

    require_optuna("tuning")
    storage = tuning.storage or sqlite_storage(out)
    model, record = fit_tuned_pooled_trend(panel, config, tuning, storage)
    fitted, records = {"trend": model}, dict.fromkeys(panel, record)
    for s in others:
        fitted[f"trend/{s.symbol}"], records[s.symbol] = fit_tuned_trend(s, config, tuning, storage)
    save_experts(fitted, out)
    write_records(records, out)
    refits: list[dict[str, Any]] = []

    def keep(block: PooledBlock, refit: Any) -> None:
        refits.append({**refit.tuning_, "fit_date": block.fit_date.isoformat(), "decide": list(block.decide)})

    expert = tuned_pooled_expert(components.pooled_trend_expert(config), config, tuning)
    proba, _ = pooled_out_of_sample(panel, expert, config.walk_forward, on_fit=keep)
    write_pooled_refits(refits, out)
    return proba


def pooled_tuning_records(roots: Sequence[Path]) -> dict[str, list[dict[str, Any]]] | None:
    """Per symbol, the study records of the tuned pooled walk-forward's refits that decided its bars, from the trend
    artefact among ``roots`` (None when it was not tuned or the trend expert is not pooled)."""
    from signal_engine.workflow.tuning import read_pooled_refits

    return read_pooled_refits(roots)


def pooled_trend_proba(roots: Sequence[Path], series: Sequence[PriceSeries]) -> dict[str, np.ndarray] | None:
    """The pooled walk-forward's trend probabilities of each series from the trend artefact among ``roots`` (None when
    none holds ``pooled_trend.npz``); ConfigError when they are not of these series' bars."""
    found = [root / POOLED_TREND_FILE for root in roots if (root / POOLED_TREND_FILE).is_file()]
    if not found:
        return None
    with np.load(found[0]) as stored:
        out = {}
        for s in series:
            if f"proba_{s.symbol}" not in stored:
                continue
            if not np.array_equal(stored[f"dates_{s.symbol}"], pd.DatetimeIndex(s.bars.index).asi8):
                raise ConfigError(f"{found[0]}: the pooled trend probabilities of {s.symbol} are of other bars than "
                                  "this run's dataset; train the trend expert on the same dataset")
            out[s.symbol] = stored[f"proba_{s.symbol}"]
    return out


# -- train gate (and walk forward) ---------------------------------------------------------------------------

def walk_forward(series: Sequence[PriceSeries], config: RunConfig,
                 on_block: Callable[[], None] | None = None, *,
                 trend_proba: Mapping[str, np.ndarray] | None = None) -> list[SymbolResult]:
    """The walk-forward backtest of each series (the gate's training rows and the run's metrics), with the numerical
    libraries' thread pools held to one thread as in the backtest's tasks, so both give the same bits.
    ``trend_proba``: the pooled trend expert's out-of-sample probabilities by symbol (:func:`pooled_trend_proba`)."""
    from threadpoolctl import threadpool_limits

    given = trend_proba or {}
    with threadpool_limits(limits=1):
        return [run_symbol(s, config, on_block=on_block, trend_proba=given.get(s.symbol)) for s in series]


def out_of_sample_rows(series: PriceSeries, result: SymbolResult, config: RunConfig) -> dict[str, np.ndarray]:
    """The test span of a walk-forward as gate training rows: fingerprints, expert scores, targets.

    Trend and levels scores are recomputed from the signal rows exactly; the volatility score is the z-score of
    the out-of-sample forecasts against their own trailing window within the test span.
    """
    frame, labels = _frame_and_labels(series, config)
    test = slice(config.walk_forward.test_start, len(series))
    signals = result.signals
    if len(signals) != test.stop - test.start:
        raise ConfigError(f"{series.symbol}: the walk-forward gave {len(signals)} rows for a test span of "
                          f"{test.stop - test.start}; run it with the same config")
    close = frame["close"].to_numpy()[test]
    scores = np.column_stack((
        trend_score(signals["p_up"].to_numpy(float), signals["p_down"].to_numpy(float)),
        levels_score(close, signals["support"].to_numpy(float), signals["resistance"].to_numpy(float)),
        volatility_score(_score_vol(signals).to_numpy(float), config.gate.score_window, VOLATILITY_MIN_PERIODS),
        *([frame[NEWS_COLUMN].to_numpy(dtype=float)[test]] if config.moe.news else []),  # the news slot: as read
    ))
    return {
        "fingerprints": frame.loc[:, list(FINGERPRINT_NAMES)].to_numpy(dtype=float)[test],
        "scores": scores,
        "forward_z": labels.forward_z[test],
        "forward_return": labels.forward_return[test],
        "trend": labels.trend[test].astype(float),
        "gate": signals.loc[:, [f"gate_{e}" for e in moe_experts(config)]].to_numpy(float),
        "combined": signals["score"].to_numpy(float),
    }


def _score_vol(signals: pd.DataFrame) -> pd.Series:
    """The forecast the MoE's volatility score read in the walk-forward (``vol_forecast`` in results written before
    the sizing forecast could differ from it)."""
    return signals[SCORE_VOL_COLUMN] if SCORE_VOL_COLUMN in signals.columns else signals["vol_forecast"]


def train_gate(series: Sequence[PriceSeries], config: RunConfig, out: Path,
               results: Sequence[SymbolResult], tuning: TuningRun | None = None,
               pooled_tuning: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> GateArtefact:
    """Fit the pooled gate and confidence map on the walk-forward's out-of-sample rows; keep the metrics.

    With ``tuning.enabled`` the walk-forward must be the tuned one (every refit of its trend expert tuned,
    ``run_walk_forwards(..., tuning=...)``; with ``trend_pooled``, the pooled walk-forward whose probabilities it
    read, ``pooled_tuning``: :func:`pooled_tuning_records`), and the metrics get a ``tuning`` section saying so
    (:func:`~signal_engine.workflow.tuning.walk_forward_section`)."""
    from signal_engine.pipeline import build_metrics
    from signal_engine.serving.export import calibration_knots, gate_weights, rule_gate_params

    if [r.symbol for r in results] != [s.symbol for s in series]:
        raise ConfigError("the walk-forward results do not match the dataset's symbols; run them on the same data")
    rows = [out_of_sample_rows(s, r, config) for s, r in zip(series, results, strict=True)]
    pooled = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    # a row where an expert abstained (NaN score, e.g. vol_har_implied without implied volatility) is kept, as the
    # backtest keeps it: the gate's fit renormalises over the experts that answered (rows where none did are left out)
    usable = np.isfinite(pooled["forward_z"]) & np.any(np.isfinite(pooled["scores"]), axis=1)
    gate = components.gate(config).fit(pooled["fingerprints"][usable], pooled["forward_z"][usable],
                                       expert_scores=pooled["scores"][usable])
    weights, rule = None, None
    slots = moe_experts(config)  # the price experts, and the news slot with moe.news
    if config.moe.gate == "rule":  # fixed rules and one learned threshold: parameters in gate.json, no gate.npz
        kind, rule = "rule", rule_gate_params(gate, slots)
    else:
        kind, weights = gate_weights(gate, slots)
        if kind == "softmax":  # top-k routing of the softmax gate (k >= the number of slots is dense)
            weights = replace(weights, k=min(config.moe.k, len(slots)))
    combiner = components.combiner_kind(config)
    out.mkdir(parents=True, exist_ok=True)
    if combiner == "meta":
        _train_meta(pooled, config, out / META_FILE)
    calibrator = ConfidenceCalibrator(min_rows=config.gate.min_rows).fit(pooled["combined"], pooled["forward_return"])
    knots = calibration_knots(calibrator)
    if weights is not None:
        weights.save(out / GATE_FILE)
    (out / "calibration.json").write_text(json.dumps({"x": knots.x.tolist(), "y": knots.y.tolist()}) + "\n",
                                          encoding="utf-8")
    per_symbol = {
        s.symbol: {
            "timeframe": timeframe_of(s),
            "periods_per_year": periods_per_year(s.bars.index.to_numpy()[: config.walk_forward.initial_window + 1]),
            "cost_bps": config.trading.cost_for(s.symbol),
            "trained_through": str(pd.Timestamp(s.bars.index[-1]).isoformat()),
            "bars": len(s),
        }
        for s in series
    }
    info = {"kind": kind, "combiner": combiner, "features": list(FINGERPRINT_NAMES), "experts": list(slots),
            "rows": int(usable.sum()), **({"rules": rule_conditions(config)} if combiner == "rule" else {}),
            **({"rule": asdict(rule)} if rule is not None else {}),
            "per_symbol": per_symbol, "config": config.to_dict()}
    (out / GATE_INFO_FILE).write_text(json.dumps(json_safe(info), indent=2) + "\n", encoding="utf-8")
    metrics = build_metrics(list(results), config)
    if tuning is not None and tuning.enabled:
        metrics["tuning"] = tuned_walk_forward(results, tuning, pooled_tuning)
    (out / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return GateArtefact(out)


def tuned_walk_forward(results: Sequence[SymbolResult], tuning: TuningRun,
                       pooled_tuning: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """The metrics' ``tuning`` section of a walk-forward whose every refit was tuned (a symbol whose trend
    probabilities came from the pooled walk-forward: that walk-forward's refits, ``pooled_tuning``); ConfigError
    naming the symbols whose walk-forward was not (e.g. a backtest fan-out's batches, which are walked forward with
    the defaults, or an untuned pooled walk-forward)."""
    from signal_engine.workflow.tuning import walk_forward_section

    pooled = pooled_tuning or {}
    refits = {r.symbol: r.diagnostics.get("tuning") or pooled.get(r.symbol) for r in results}
    untuned = [symbol for symbol, records in refits.items() if not records]
    if untuned:
        raise ConfigError(f"tuning is on, but the walk-forward of {', '.join(untuned)} was run with the config's "
                          "trend settings: the quality gate would judge another procedure than the one served; walk "
                          "forward with tuning on (not from a backtest fan-out's batches, and with trend_pooled from a "
                          "trend step that was tuned too), or train without tuning")
    return walk_forward_section(tuning, {symbol: list(records or []) for symbol, records in refits.items()})


def rule_conditions(config: RunConfig) -> dict[str, list[str]]:
    """The rule combiner's conditions as the bundle's ``field op number`` strings, per signal."""
    fitted = components.rule_combiner(config)
    return {signal: [f"{c.field} {c.op} {c.value!r}" for c in conditions]
            for signal, conditions in fitted.conditions_.items()}


def _train_meta(pooled: dict[str, np.ndarray], config: RunConfig, path: Path) -> None:
    """The meta-model combiner on the walk-forward's out-of-sample scores and gate weights, as the backtest trains
    it at each refit (``moe.combiner: meta``), fitted once on every test row whose trend label is known (a row where
    an expert abstained is kept: its score reads as the training mean, its gate weight is 0)."""
    labels = pooled["trend"].astype(np.int64)
    meta = components.fit_meta_combiner(config, pooled["scores"], pooled["gate"], labels)
    if meta is None:
        rows = int(((labels >= 0) & np.isfinite(pooled["scores"]).any(axis=1)).sum())
        raise ConfigError(f"moe.combiner 'meta': only {rows} out-of-sample rows with a known trend "
                          f"label (need {config.gate.min_rows} and two classes); use more data or the weighted "
                          "combiner")
    meta.weights_.save(path)


# -- evaluate: quality gate and the bundle -------------------------------------------------------------------

def min_bars(config: RunConfig) -> int:
    """Bars an expert needs to answer: the volatility score's window plus a warm-up for GARCH and the features."""
    return max(300, config.gate.score_window + 250, max(config.levels.windows) + 2 * config.levels.swing_width + 1,
               max(WARMUP_BARS.values()) + 1)


def evaluate(config: RunConfig, quality: QualityConfig, experts: Sequence[ExpertArtefact], gate: GateArtefact,
             out: Path, *, now: datetime | None = None, news: NewsTraining | None = None,
             on_news_training: Callable[[Path], None] | None = None) -> tuple[EvaluationArtefact, str]:
    """Decide on quality from the walk-forward metrics and assemble the complete bundle folder in ``out``.

    The quality gate judges each symbol on its own metrics; the bundle's ``withheld`` names the symbols that
    failed (with the reason) so serving refuses them, and the evaluation passed when at least one symbol did.
    With ``news.enabled`` the bundle also carries the text expert (``signal_engine.workflow.news.add_news``: the
    cached text-train head, trained first when there is none; ``on_news_training(folder)`` says so).

    Returns the evaluation and the bundle's version (``<UTC time>-<hash of the bundle's content>``).
    """
    from signal_engine.moe.numpy_gate import GateWeights
    from signal_engine.serving.bundle import (
        DEFAULT_EXPERT_OUTPUTS,
        Calibration,
        CombinerSettings,
        GateSpec,
        RiskSettings,
        ScoreSettings,
        ServingBundle,
    )

    metrics = json.loads((gate.root / METRICS_FILE).read_text(encoding="utf-8"))
    info = json.loads((gate.root / GATE_INFO_FILE).read_text(encoding="utf-8"))
    symbols = tuple(info["per_symbol"])
    tuned = tuning_records(experts)
    check_tuned_alike(bool(tuned), "tuning" in metrics)
    decision = decide(metrics, quality, symbols)
    merged: dict[str, Any] = {}
    for artefact in experts:
        merged.update(load_experts(artefact.root))
    missing = [f"{e}/{s}" for e in EXPERTS for s in symbols if f"{e}/{s}" not in merged and e not in merged]
    if missing:
        raise ConfigError(f"the expert artefacts lack {missing}; train every expert for every symbol of the dataset")
    out.mkdir(parents=True, exist_ok=True)
    save_experts(merged, out / "experts")
    news_settings = None
    if NEWS_EXPERT in info["experts"] and (news is None or not news.enabled):
        raise ConfigError("the gate has the news slot (moe.news), but the config's 'news:' section is off: a bundle "
                          "with the slot carries the text expert, whose score is the slot's input when serving; add "
                          "'news: {enabled: true}'")
    if news is not None and news.enabled:
        from signal_engine.workflow.news import add_news

        news_settings = add_news(out, news, on_training=on_news_training)
    rule = _rule_params(info, gate.root)
    weights = None if rule is not None else GateWeights.load(gate.root / GATE_FILE)
    calibration = json.loads((gate.root / "calibration.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    gate_files = () if rule is not None else (gate.root / GATE_FILE,)
    for path in (out / "experts" / "manifest.json", *gate_files, gate.root / "calibration.json",
                 gate.root / METRICS_FILE):
        digest.update(path.read_bytes())
    if rule is not None:  # the rule gate's parameters are its content, as gate.npz is the other gates'
        digest.update(json.dumps({"gate.rule": info["rule"]}, sort_keys=True).encode())
    digest.update(json.dumps({"quality": quality.to_dict(), "decision": decision.to_dict()}, sort_keys=True,
                             default=str).encode())
    online = online_settings(config)
    if online is not None:  # a bundle that learns between retrains is another bundle
        digest.update(json.dumps({"online": online.to_json()}, sort_keys=True).encode())
    if news_settings is not None:  # so is one that carries the text expert (the head is in its sha256)
        digest.update(json.dumps({"news": news_settings.to_json()}, sort_keys=True).encode())
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    version = f"{created:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}"
    first = info["per_symbol"][symbols[0]]
    trading = config.trading
    bundle = ServingBundle(
        version=version,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        profile=config.profile,
        timeframe=first["timeframe"],
        symbols=symbols,
        trained_through={s: v["trained_through"] for s, v in info["per_symbol"].items()},
        experts=EXPERTS,
        expert_outputs={e: DEFAULT_EXPERT_OUTPUTS[e] for e in EXPERTS},
        min_bars=min_bars(config),
        scores=ScoreSettings(config.gate.score_window, VOLATILITY_MIN_PERIODS),
        gate=GateSpec(info["kind"], weights, tuple(info["features"]), rule),
        combiner=CombinerSettings(info.get("combiner", "weighted"), trading.buy_threshold, trading.sell_threshold,
                                  rules=({k: tuple(v) for k, v in info["rules"].items()} if "rules" in info else None),
                                  meta=_meta_arrays(gate.root / META_FILE)),
        calibration=Calibration(np.asarray(calibration["x"], float), np.asarray(calibration["y"], float)),
        risk=RiskSettings(trading.target_vol_annual, trading.max_leverage, trading.allow_short, trading.exit_level,
                          float(first["periods_per_year"])),
        withheld=decision.withheld,
        online=online,
        news=news_settings,
    )
    bundle.save(out)
    document = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    document["per_symbol"] = {s: {k: v[k] for k in ("timeframe", "periods_per_year", "cost_bps")}
                              for s, v in info["per_symbol"].items()}
    if tuned:  # the settings each symbol's tuned expert was fitted with, where its study is kept, and the budget
        # each refit of the walk-forward the quality gate judged was tuned with
        document["tuning"] = {**tuned, "walk_forward": metrics["tuning"]}
    (out / "bundle.json").write_text(json.dumps(json_safe(document), indent=2) + "\n", encoding="utf-8")
    metrics["quality"] = {"thresholds": quality.to_dict(), **decision.to_dict()}
    (out / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    write_decision(decision, out)
    return EvaluationArtefact(out, decision.passed), version


def check_tuned_alike(experts_tuned: bool, walk_forward_tuned: bool) -> None:
    """The served trend expert and the walk-forward the quality gate judges were both tuned or both not."""
    if experts_tuned and not walk_forward_tuned:
        raise ConfigError("the trend expert was tuned (its artefact has tuning.json), but the walk-forward whose "
                          "metrics the quality gate reads was not: run the train_gate step with tuning on too "
                          "(SageMaker: hyperparameter tune=true)")
    if walk_forward_tuned and not experts_tuned:
        raise ConfigError("the walk-forward whose metrics the quality gate reads was tuned, but the trend expert was "
                          "not (its artefact has no tuning.json): train the experts with tuning on too "
                          "(SageMaker: hyperparameter tune=true)")


def tuning_records(experts: Sequence[ExpertArtefact]) -> dict[str, Any]:
    """The expert artefacts' tuning records (``tuning.json``, written by ``train_expert`` with tuning on)."""
    from signal_engine.workflow.tuning import read_records

    return read_records(artefact.root for artefact in experts)


def online_settings(config: RunConfig) -> Any:
    """The bundle's ``online`` section (``OnlineSettings``) when ``moe.online`` is on, else None."""
    online = config.moe.online
    if not online.enabled:
        return None
    from signal_engine.moe.gate import SoftmaxGate
    from signal_engine.serving.bundle import OnlineSettings

    gate_rate = online.gate_rate if config.moe.gate == "softmax" else 0.0
    meta_rate = online.meta_rate if config.moe.combiner == "meta" else 0.0
    return OnlineSettings(gate_rate=gate_rate, meta_rate=meta_rate, entropy=config.gate.entropy,
                          clip=SoftmaxGate().clip, horizon=config.labels.horizon,
                          embargo=config.walk_forward.embargo, threshold=config.labels.threshold)


def _rule_params(info: dict[str, Any], root: Path) -> Any:
    """The rule gate of a gate artefact (``gate.json`` field ``rule``) as RuleGateParams, or None (softmax, MLP)."""
    if info.get("kind") != "rule":
        return None
    from signal_engine.moe.numpy_gate import RuleGateParams

    doc = info.get("rule")
    try:
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        return RuleGateParams(**{**doc, "experts": tuple(doc["experts"])})
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{root / GATE_INFO_FILE}: field 'rule' is {doc!r} ({exc}); expected the rule gate's "
                          "parameters as the train_gate step writes them; rerun that step") from None


def _meta_arrays(path: Path) -> Any:
    """The meta-model of a gate artefact as the bundle's MetaArrays, or None (weighted combiner)."""
    if not path.is_file():
        return None
    from signal_engine.moe.meta import MetaWeights
    from signal_engine.serving.export import meta_arrays

    weights = MetaWeights.load(path)
    return meta_arrays(weights, weights.features)


def write_decision(decision: Decision, out: Path) -> Path:
    path = out / DECISION_FILE
    path.write_text(json.dumps(json_safe(decision.to_dict()), indent=2) + "\n", encoding="utf-8")
    return path


