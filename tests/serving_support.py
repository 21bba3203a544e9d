"""A small real model bundle for the serving tests: the MoE's parts fitted once on GOOG (shipped by `backtesting`).

Built once per test process (``goog_registry``), in a temporary folder laid out as a local model registry
(``CURRENT`` + ``<version>/``), so handler, server and adapter tests all load the same real bundle.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from signal_engine import components
from signal_engine.config import load_config
from signal_engine.data.datasets import export_dataset
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.features import FINGERPRINT_NAMES, feature_frame
from signal_engine.labels import make_labels
from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.scores import levels_score, trend_score, volatility_score
from signal_engine.registry import save_experts
from signal_engine.serving.bundle import (
    DEFAULT_EXPERT_OUTPUTS,
    CombinerSettings,
    GateSpec,
    RiskSettings,
    ScoreSettings,
    ServingBundle,
    read_current,
)
from signal_engine.serving.export import calibration_knots, softmax_gate_weights

EXPERTS = ("trend", "levels", "volatility")
VERSION = "20261123T150102Z-test0001"
TRAIN_BARS = 1500
"""GOOG has 2,148 bars: fit on the first 1,500 so the rest can serve as unseen requests."""
NEWS_VERSION = "20261123T150102Z-test0002"
TEXT_ROWS = 120
"""The text head of the news tests: trained on a stratified 120 of the shipped corpus's texts (a second or two)."""


def build_bundle(series: PriceSeries, folder: Path, version: str = VERSION) -> ServingBundle:
    """Fit the quick profile's experts, gate and calibrator on ``series`` and write a bundle to ``folder``."""
    config = load_config("quick")
    bars = series.bars
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    n = len(frame)
    known = np.arange(n) + config.labels.horizon < n
    trend_rows = np.flatnonzero(known & (labels.trend >= 0))
    trend = components.trend_expert(config).fit(frame.iloc[trend_rows], labels.trend[trend_rows])
    volatility = components.volatility_expert(config).fit(frame, labels.next_variance)
    future = np.column_stack((labels.future_low, labels.future_high))
    future[~known] = np.nan
    levels = components.levels_expert(config).fit(frame, future)

    proba = trend.predict_proba(frame)
    level_values = levels.predict(frame)
    vol = np.sqrt(volatility.predict_variance(frame))
    close = frame["close"].to_numpy()
    window = config.gate.score_window
    scores = np.column_stack((trend_score(proba[:, 2], proba[:, 0]),
                              levels_score(close, level_values[:, 0], level_values[:, 1]),
                              volatility_score(vol, window)))
    fingerprints = frame.loc[:, list(FINGERPRINT_NAMES)].to_numpy(dtype=float)
    rows = np.flatnonzero(known & np.isfinite(labels.forward_z) & np.isfinite(scores).all(axis=1))
    gate = components.gate(config).fit(fingerprints[rows], labels.forward_z[rows], expert_scores=scores[rows])
    combined = components.combiner(config).decision_function(scores[rows], gate.predict_proba(fingerprints[rows]))
    calibrator = ConfidenceCalibrator(min_rows=config.gate.min_rows).fit(combined, labels.forward_return[rows])

    trading = config.trading
    bundle = ServingBundle(
        version=version,
        created_at="2026-11-23T15:01:02Z",
        profile=config.profile,
        timeframe="1d",
        symbols=(series.symbol,),
        trained_through={series.symbol: str(bars.index[-1].date())},
        experts=EXPERTS,
        expert_outputs=dict(DEFAULT_EXPERT_OUTPUTS),
        min_bars=300,
        scores=ScoreSettings(volatility_window=window, volatility_min_periods=20),
        gate=GateSpec("softmax", softmax_gate_weights(gate, EXPERTS), FINGERPRINT_NAMES),
        combiner=CombinerSettings("weighted", trading.buy_threshold, trading.sell_threshold),
        calibration=calibration_knots(calibrator),
        risk=RiskSettings(trading.target_vol_annual, trading.max_leverage, trading.allow_short, trading.exit_level,
                          252.0),
    )
    bundle.save(folder)
    save_experts({"trend": trend, "levels": levels, "volatility": volatility}, folder / "experts")
    return bundle


@functools.cache
def goog_series() -> PriceSeries:
    """All 2,148 GOOG daily bars."""
    folder = Path(tempfile.mkdtemp(prefix="serving-data-"))
    return load_prices(export_dataset("GOOG", folder))


@functools.cache
def goog_registry() -> Path:
    """A local model registry whose CURRENT bundle was fitted on GOOG's first ``TRAIN_BARS`` bars."""
    registry = Path(tempfile.mkdtemp(prefix="serving-registry-"))
    full = goog_series()
    train = PriceSeries(full.symbol, full.source, full.bars.iloc[:TRAIN_BARS])
    build_bundle(train, registry / VERSION)
    (registry / "CURRENT").write_text(VERSION + "\n", encoding="utf-8")
    return registry


def request_bars(end: int, count: int = 400) -> list[dict[str, object]]:
    """The JSON bars of GOOG rows ``end - count .. end - 1``, as a client sends them."""
    bars = goog_series().bars.iloc[end - count:end]
    rows: list[dict[str, object]] = []
    for ts, row in zip(pd.DatetimeIndex(bars.index), bars.to_dict("records"), strict=True):
        item: dict[str, object] = {"timestamp": ts.strftime("%Y-%m-%d"), "open": row["open"], "high": row["high"],
                                   "low": row["low"], "close": row["close"]}
        if "volume" in bars.columns:
            item["volume"] = row["volume"]
        rows.append(item)
    return rows


@functools.cache
def text_model_folder() -> Path:
    """A text model folder as `signal-engine text-train --rows 120` writes it (the head cached for the bundles)."""
    from signal_engine.text.model import save_text_model, train_text_model

    folder = Path(tempfile.mkdtemp(prefix="serving-text-model-"))
    save_text_model(train_text_model(rows=TEXT_ROWS, reps=20, baselines=False), folder)
    return folder


@functools.cache
def goog_news_registry() -> Path:
    """A registry whose CURRENT is ``goog_registry``'s bundle with the text expert (``news``) added as training adds
    it (``signal_engine.workflow.news.add_news``, reusing ``text_model_folder``'s head)."""
    from signal_engine.workflow.news import NewsTraining, add_news

    registry = Path(tempfile.mkdtemp(prefix="serving-news-registry-"))
    target = registry / NEWS_VERSION
    shutil.copytree(read_current(goog_registry()), target)
    settings = add_news(target, NewsTraining(enabled=True), model_folder=text_model_folder())
    dataclasses.replace(ServingBundle.load(target), version=NEWS_VERSION, news=settings).save(target)
    (registry / "CURRENT").write_text(NEWS_VERSION + "\n", encoding="utf-8")
    return registry


NEWS_SLOT_VERSION = "20261123T150102Z-test0003"


@functools.cache
def goog_news_slot_registry() -> Path:
    """A registry whose CURRENT is ``goog_news_registry``'s bundle with a gate that has the news slot (``moe.news``):
    the softmax gate's kernel and bias with a fourth column for ``news`` (kernel 0, bias the mean of the others'),
    so the news weighs on every row and the price experts keep their relative weights."""
    from signal_engine.moe.numpy_gate import GateWeights

    registry = Path(tempfile.mkdtemp(prefix="serving-news-slot-registry-"))
    target = registry / NEWS_SLOT_VERSION
    shutil.copytree(read_current(goog_news_registry()), target)
    bundle = ServingBundle.load(target)
    weights = bundle.gate_weights
    (kernel, bias), = weights.layers
    slot = GateWeights(weights.mean, weights.scale,
                       ((np.column_stack((kernel, np.zeros(len(kernel)))), np.append(bias, bias.mean())),),
                       weights.k + 1, (*weights.experts, "news"))
    dataclasses.replace(bundle, version=NEWS_SLOT_VERSION, gate=dataclasses.replace(bundle.gate, weights=slot)
                        ).save(target)
    (registry / "CURRENT").write_text(NEWS_SLOT_VERSION + "\n", encoding="utf-8")
    return registry
