"""Walk-forward backtest of one symbol: fit experts, gate and combiner at each refit, decide each bar.

Every number is out of sample: models fitted at bar r's close (on labels known by then) decide bars
r .. r + refit_every - 1; the gate, the meta-model combiner and the multi-stage engine learn from the
experts' earlier out-of-sample outputs. ``config.moe`` picks the experts, gate, top-k and combiner;
``moe.enabled: false`` makes the single ``equity_daily`` archetype expert the signal.

Abstention: an expert whose score at a bar is NaN abstains there (the volatility slot where its forecast is
missing, e.g. ``vol_har_implied`` on a bar without implied volatility). The gate gives it 0 and renormalises the
others (``moe.numpy_gate.available_top_k``, the Signal API's own rule), it learns nothing from that bar, and the
combined score reads only the experts that answered. Sizing reads its own forecast (``moe.experts.sizing_volatility``).

``moe.news`` adds a fourth expert, ``news``: its score is the frame's ``news_score`` column (the text expert's
point-in-time aggregate at each bar's close; NaN, an abstention, on a bar without news). The experts of a run are
``config.moe_experts(config)``; ``signals.csv`` has ``gate_news`` and the explanations ``contrib_news`` only then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine import components
from signal_engine.config import (
    NEWS_COLUMN,
    NEWS_EXPERT,
    POOLED_TRENDS,
    PRICE_EXPERTS,
    SINGLE_EXPERT,
    RunConfig,
    for_bars,
    moe_experts,
)
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.evaluation import baselines
from signal_engine.evaluation.metrics import (
    levels_metrics,
    reliability,
    strategy_metrics,
    strategy_returns,
    trading_costs,
    trend_metrics,
    volatility_metrics,
)
from signal_engine.evaluation.planning import check_inputs, check_length, periods_per_year
from signal_engine.evaluation.walkforward import Block, known_by, schedule
from signal_engine.experts import PivotLevels
from signal_engine.experts.volatility_combination import variance_forecast
from signal_engine.explain import (
    expert_contributions,
    meta_contributions,
    top_features,
)
from signal_engine.features import FINGERPRINT_NAMES, feature_frame
from signal_engine.labels import DOWN, UP, Labels, make_labels
from signal_engine.moe.combiner import SIGNALS
from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.meta import meta_features
from signal_engine.moe.numpy_gate import MetaArrays, available_experts, gate_forward
from signal_engine.moe.online import OnlineLearner, OnlineRates, RealisedRow
from signal_engine.moe.rules import expert_outputs
from signal_engine.moe.scores import levels_score, meta_probabilities, trend_score, volatility_score, weighted_score
from signal_engine.multistage import MultiStageEngine, SequenceRefiner, StageInputs, return_windows
from signal_engine.risk import held_direction, volatility_target_position

if TYPE_CHECKING:
    from signal_engine.workflow.tuning import TuningRun

EXPERTS = PRICE_EXPERTS  # the default MoE's experts; a run's own are ``moe_experts(config)``
SIGNAL_COLUMNS = (
    "timestamp", "symbol", "signal", "score", "confidence", "position", "p_up", "p_down", "p_neutral",
    "support", "resistance", "vol_forecast", *(f"gate_{e}" for e in EXPERTS),
)


def signal_columns(config: RunConfig) -> tuple[str, ...]:
    """The columns of ``signals.csv`` for ``config``: ``SIGNAL_COLUMNS``, plus ``gate_news`` when ``moe.news`` is on."""
    return (*SIGNAL_COLUMNS, *(f"gate_{e}" for e in moe_experts(config) if e not in EXPERTS))
SCORE_VOL_COLUMN = "score_vol_forecast"  # in SymbolResult.signals: the forecast the MoE's volatility score read
SEQUENCE_WINDOW = 20
STAGES = ("stage1_filters", "stage2_sequence", "stage3_stacking")


@dataclass
class SymbolResult:
    """What the backtest of one symbol produced: the signal rows, metrics and per-bar curves."""

    symbol: str
    data: dict[str, Any]
    signals: pd.DataFrame
    metrics: dict[str, dict[str, dict[str, Any]]]
    returns: pd.DataFrame
    realised_vol: pd.Series
    diagnostics: dict[str, Any] = field(default_factory=dict)
    experts: dict[str, Any] = field(default_factory=dict)
    explanations: pd.DataFrame = field(default_factory=pd.DataFrame)


class _OutOfSample:
    """Per-bar arrays filled block by block; NaN until a model has decided that bar."""

    def __init__(self, n: int, config: RunConfig) -> None:
        def empty(width: int = 1) -> np.ndarray:
            return np.full((n, width), np.nan) if width > 1 else np.full(n, np.nan)

        choice = config.moe.experts
        self.trend_name, self.levels_name, self.vol_name = choice.trend, choice.levels, choice.volatility
        self.sizing_name = choice.sizing_volatility
        self.experts = moe_experts(config)
        self.trend_proba = empty(3)
        # the calibrated expert's raw LightGBM probabilities are also scored, as ``trend_lightgbm``
        self.raw_trend_proba = empty(3) if self.trend_name == "trend_calibrated" else None
        self.majority_proba = empty(3)
        self.levels = empty(2)
        self.pivots = empty(2)
        self.variance = {name: empty() for name in dict.fromkeys(
            (self.vol_name, self.sizing_name, "volatility_blend", "baseline_garch11", "baseline_ewma"))}
        self.scores = empty(len(self.experts))
        self.gate = empty(len(self.experts))
        self.combined = empty()
        self.contributions = empty(len(self.experts))
        self.prior = empty()
        self.confidence = empty()
        self.single_proba = empty(3)
        self.single_model: Any = None
        self.single_fits = 0
        self.sequence_proba = empty(3)
        self.stage_direction = np.zeros(n, dtype=np.int64)
        self.raw_direction = np.zeros(n, dtype=np.int64)
        self.stage_kept = np.zeros((n, len(STAGES)), dtype=bool)
        self.stage_confidence = empty()
        self.top_features = np.full(n, "", dtype=object)
        self.garch_converged: list[bool] = []
        self.blend_weight: list[float] = []
        self.levels_window: list[int] = []
        self.meta_rows: list[int] = []
        self.online_updates: list[int] = []
        self.tuning_refits: list[dict[str, Any]] = []  # with tuning on: each refit's study of the trend expert

    @property
    def score_vol(self) -> np.ndarray:
        """The forecast the MoE's volatility score reads (``moe.experts.volatility``), NaN where that expert
        abstains."""
        return np.sqrt(self.variance[self.vol_name])

    @property
    def vol_forecast(self) -> np.ndarray:
        """The forecast users see and positions are sized by (``moe.experts.sizing_volatility``), or the GARCH/EWMA
        blend's on a bar where that model gives none."""
        sizing = np.sqrt(self.variance[self.sizing_name])
        return np.where(np.isfinite(sizing), sizing, np.sqrt(self.variance["volatility_blend"]))


def run_symbol(
    series: PriceSeries,
    config: RunConfig,
    on_block: Callable[[], None] | None = None,
    *,
    features: pd.DataFrame | None = None,
    trend_proba: np.ndarray | None = None,
    tuning: TuningRun | None = None,
) -> SymbolResult:
    """Walk forward through ``series`` and evaluate the MoE, each expert and the baselines (with the config of
    its bars, ``for_bars``: intraday series use ``moe.experts.intraday_trend``).

    ``features`` is ``series_frame(series)`` when the caller computed it already (one computation per run is
    shared by the MoE, the timeframe models and the expert suite). ``trend_proba`` (one row of down, neutral, up
    per bar) is the trend expert's out-of-sample probabilities computed elsewhere: the pooled trend expert
    (``trend_pooled``) is fitted across series by the pooled walk-forward
    (:mod:`signal_engine.evaluation.pooled_walkforward`), whose model fitted before each bar decides it; the
    walk-forward then reads them instead of fitting a trend expert at each refit (it refuses ``trend_pooled``
    without them).

    ``tuning`` (the training run's ``tuning:`` section, when enabled): at every refit the LightGBM trend expert's
    settings are first chosen by an Optuna study on that refit's training rows only (``workflow.tuning.tuned_trend``,
    nested as ``train --tune``'s final fit), so the metrics judge the tuned procedure that is served; each refit's
    record is the ``tuning`` list of the diagnostics."""
    config = for_bars(config, series.intraday)
    check_trend_proba(series, config, trend_proba)
    check_length(series, config)
    wf = config.walk_forward
    n = len(series)
    frame = series_frame(series) if features is None else features
    check_inputs(series, frame, config)
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    ppy = periods_per_year(series.bars.index.to_numpy()[: wf.initial_window + 1])
    out = _OutOfSample(n, config)
    fingerprints = frame.loc[:, list(FINGERPRINT_NAMES)].to_numpy(dtype=float)
    windows = return_windows(frame["close"].to_numpy(dtype=float), frame["vol30"].to_numpy(dtype=float),
                             SEQUENCE_WINDOW)
    for block in schedule(n, wf):
        _decide_block(block, frame, labels, fingerprints, out, config, trend_proba,
                      tuning=tuning if tuning is not None and tuning.enabled else None, symbol=series.symbol)
        if config.moe.multistage:
            _stages_block(block, frame, labels, windows, out, config)
        if on_block is not None:
            on_block()
    return _evaluate(series, frame, labels, out, config, ppy)


def check_trend_proba(series: PriceSeries, config: RunConfig, trend_proba: np.ndarray | None) -> None:
    """``trend_proba`` is given exactly when the trend expert is ``trend_pooled``, with a finite row for every bar
    the walk-forward decides (from ``initial_window`` on)."""
    pooled = config.moe.experts.trend in POOLED_TRENDS
    if pooled and trend_proba is None:
        raise ConfigError(f"{series.symbol}: moe.experts.trend is {config.moe.experts.trend}, one network fitted "
                          "across every series of a run; the per-symbol backtest cannot fit it. Train it with the "
                          "training workflow (`signal-engine train`), whose pooled walk-forward gives the "
                          "out-of-sample trend probabilities, or choose another trend expert")
    if trend_proba is None:
        return
    if not pooled:
        raise ConfigError(f"{series.symbol}: trend probabilities were given, but moe.experts.trend is "
                          f"{config.moe.experts.trend!r}, which the walk-forward fits itself")
    first = config.walk_forward.initial_window  # the walk-forward decides (and its gate learns from) bars from here
    decided = np.asarray(trend_proba, dtype=float)[first:]
    if len(trend_proba) != len(series) or decided.shape[1:] != (3,) or not np.isfinite(decided).all():
        raise ConfigError(f"{series.symbol}: the pooled trend probabilities must give (down, neutral, up) for each "
                          f"of its {len(series)} bars from bar {first} on")


def series_frame(series: PriceSeries) -> pd.DataFrame:
    """The bars of ``series`` joined with every point-in-time feature (the walk-forward's design frame)."""
    return series.bars.join(feature_frame(series.bars))


def blocks_for(series: PriceSeries, config: RunConfig) -> int:
    """How many refits the walk-forward of ``series`` takes (for progress bars)."""
    return len(schedule(len(series), config.walk_forward))


def _predict_window(model: Any, frame: pd.DataFrame, start: int, stop: int, method: Callable[..., Any]) -> np.ndarray:
    """``method`` over bars start .. stop - 1, given only the context the model needs before ``start``."""
    context = model.context_bars()
    first = 0 if context is None else max(0, start - context)
    return np.asarray(method(frame.iloc[first:stop]))[start - first :]


def _decide_block(
    block: Block,
    frame: pd.DataFrame,
    labels: Labels,
    fingerprints: np.ndarray,
    out: _OutOfSample,
    config: RunConfig,
    trend_proba: np.ndarray | None = None,
    *,
    tuning: TuningRun | None = None,
    symbol: str = "",
) -> None:
    r, rows = block.fit_at, slice(block.start, block.stop)
    history = frame.iloc[: block.stop]
    embargo = config.walk_forward.embargo
    known_horizon = known_by(labels.known_at_horizon(), r, embargo)
    known_next = known_by(labels.known_at_next(), r, embargo)

    trend_rows = np.flatnonzero(known_horizon & (labels.trend >= 0))
    if trend_proba is not None:  # the pooled trend expert's, from the pooled walk-forward (no feature attributions)
        out.trend_proba[rows] = trend_proba[rows]
    elif tuning is not None:
        trend = _tuned_trend(trend_rows, frame, labels, out, config, tuning, (symbol, frame.index[r]))
        _trend_outputs(trend, rows, frame, out)
    else:
        _trend_block(rows, trend_rows, frame, labels, out, config)
    majority = baselines.majority_classifier(labels.trend[trend_rows])
    next_variance = np.where(known_next, labels.next_variance, np.nan)[: r + 1]
    blend = clone(components.volatility_blend(config)).fit(frame.iloc[: r + 1], next_variance)
    future_range = np.column_stack((labels.future_low, labels.future_high))
    future_range[~known_horizon] = np.nan
    levels = clone(components.levels_expert(config)).fit(frame.iloc[: r + 1], future_range[: r + 1])

    out.majority_proba[rows] = baselines.majority_proba(majority, block.stop - block.start)
    out.levels[rows] = _predict_window(levels, frame, block.start, block.stop, levels.predict)
    out.pivots[rows] = PivotLevels().fit(history).predict(frame.iloc[rows])
    out.variance["baseline_garch11"][rows] = blend.garch_.predict(history)[rows]
    out.variance["baseline_ewma"][rows] = blend.ewma_.predict(history)[rows]
    out.variance["volatility_blend"][rows] = blend.predict_variance(history)[rows]
    for name in [n for n in dict.fromkeys((out.vol_name, out.sizing_name)) if n != "volatility_blend"]:
        volatility = clone(components.volatility_model(name, config)).fit(frame.iloc[: r + 1], next_variance)
        out.variance[name][rows] = _predict_window(
            volatility, frame, block.start, block.stop, lambda x, model=volatility: variance_forecast(model, x))
    out.garch_converged.append(bool(blend.garch_.converged_))
    out.blend_weight.append(blend.weight_)
    out.levels_window.append(int(getattr(levels, "window_", 0)))

    close = frame["close"].to_numpy()
    first = config.walk_forward.initial_window
    vol_scores = volatility_score(out.score_vol[first : block.stop], config.gate.score_window)
    out.scores[rows, 0] = trend_score(out.trend_proba[rows, 2], out.trend_proba[rows, 0])
    out.scores[rows, 1] = levels_score(close[rows], out.levels[rows, 0], out.levels[rows, 1])
    out.scores[rows, 2] = vol_scores[block.start - first :]
    if NEWS_EXPERT in out.experts:
        out.scores[rows, out.experts.index(NEWS_EXPERT)] = frame[NEWS_COLUMN].to_numpy(dtype=float)[rows]

    past = np.arange(first, r + 1)
    gate_rows = past[known_horizon[past] & np.isfinite(labels.forward_z[past])]
    out.prior[rows] = 0.0
    if config.moe.enabled:
        gate = components.gate(config).fit(
            fingerprints[gate_rows], labels.forward_z[gate_rows], expert_scores=out.scores[gate_rows]
        )
        out.gate[rows] = gate.predict_proba(fingerprints[rows], available_experts(out.scores[rows]))
        if config.moe.online.enabled and components.combiner_kind(config) != "rule":
            _online_block(block, gate, labels, fingerprints, out, config, known_horizon)
        else:
            out.combined[rows] = _combine(block, frame, labels, out, config, known_horizon)
    else:
        out.gate[rows] = np.eye(len(out.experts))[0]
        out.combined[rows] = _single_expert_score(block, frame, labels, out, config, known_horizon)
        out.contributions[rows] = 0.0
        out.contributions[rows, 0] = out.combined[rows]
    calibration_rows = past[known_horizon[past]]
    calibrator = ConfidenceCalibrator(min_rows=config.gate.min_rows).fit(
        out.combined[calibration_rows], labels.forward_return[calibration_rows]
    )
    out.confidence[rows] = calibrator.predict(out.combined[rows])


def _trend_block(rows: slice, trend_rows: np.ndarray, frame: pd.DataFrame, labels: Labels, out: _OutOfSample,
                 config: RunConfig) -> None:
    """The trend expert fitted on ``trend_rows``: its probabilities and top features for the block's bars."""
    trend = clone(components.trend_expert(config)).fit(frame.iloc[trend_rows], labels.trend[trend_rows])
    _trend_outputs(trend, rows, frame, out)


def _tuned_trend(trend_rows: np.ndarray, frame: pd.DataFrame, labels: Labels, out: _OutOfSample, config: RunConfig,
                 tuning: TuningRun, fit: tuple[str, Any]) -> Any:
    """The trend expert fitted on ``trend_rows`` with the settings a nested Optuna study chose on those rows alone
    (the code of ``train --tune``'s final fit); the study (in memory, named ``trend/<SYMBOL>@<fit bar>`` by ``fit``)
    leaves its record in ``out.tuning_refits``."""
    from signal_engine.workflow.tuning import study_name, tuned_trend

    name = study_name(*fit)
    trend, record = tuned_trend(clone(components.trend_expert(config)), frame.iloc[trend_rows],
                                labels.trend[trend_rows], trend_rows, labels.known_at_horizon()[trend_rows],
                                config=config, tuning=tuning, name=name, storage=None)
    out.tuning_refits.append(record)
    return trend


def _trend_outputs(trend: Any, rows: slice, frame: pd.DataFrame, out: _OutOfSample) -> None:
    """A fitted trend expert's probabilities and top features for the block's bars."""
    out.trend_proba[rows] = trend.predict_proba(frame.iloc[rows])
    if out.raw_trend_proba is not None:
        out.raw_trend_proba[rows] = trend._raw_proba(frame.iloc[rows], None)
    block_matrix = frame.iloc[rows].loc[:, list(trend.features)].to_numpy(dtype=float)
    out.top_features[rows] = top_features(trend.directional_contributions(block_matrix), trend.features)


def _combine(block: Block, frame: pd.DataFrame, labels: Labels, out: _OutOfSample, config: RunConfig,
             known_horizon: np.ndarray) -> np.ndarray:
    """The MoE's combined score for the block's bars, by ``moe.combiner``; fills each expert's contribution.

    Weighted: score x gate weight. Rule: every condition must hold, so each expert gets an equal share of
    the call. Meta: the experts' linear parts of the meta-model's up-vs-down margin, scaled to the score,
    with the class prior's part apart (:func:`signal_engine.explain.meta_contributions`).
    """
    rows = slice(block.start, block.stop)
    if components.combiner_kind(config) == "rule":
        close = frame["close"].to_numpy(dtype=float)[rows]
        outputs = expert_outputs(close, out.trend_proba[rows, UP], out.trend_proba[rows, DOWN], out.levels[rows, 0],
                                 out.levels[rows, 1], out.vol_forecast[rows])
        called = np.asarray(components.rule_combiner(config).decision_function(outputs), dtype=float)
        out.contributions[rows] = np.repeat(called[:, None] / len(out.experts), len(out.experts), axis=1)
        return called
    return _gated_score(rows, out, _fit_meta(block, labels, out, config, known_horizon))


def _fit_meta(block: Block, labels: Labels, out: _OutOfSample, config: RunConfig,
              known_horizon: np.ndarray) -> MetaArrays | None:
    """The meta-model combiner fitted at the block's refit on out-of-fold scores and gate weights of earlier bars
    whose label is known by then (None: ``moe.combiner`` is not ``meta``, or too few rows: the weighted score)."""
    if components.combiner_kind(config) != "meta":
        return None
    past = np.arange(config.walk_forward.initial_window, block.fit_at + 1)
    train = past[known_horizon[past]]
    meta = components.fit_meta_combiner(config, out.scores[train], out.gate[train], labels.trend[train])
    out.meta_rows.append(0 if meta is None else meta.n_train_)
    if meta is None:
        return None
    w = meta.weights_
    return MetaArrays(w.features, w.mean, w.scale, w.coef, w.intercept, w.classes)


def _gated_score(rows: slice, out: _OutOfSample, meta: MetaArrays | None) -> np.ndarray:
    """The combined score of ``rows`` from their expert scores and gate weights: the meta-model's P(up) - P(down)
    when there is one, else the weighted score; fills each expert's contribution (and the meta-model's prior)."""
    scores, gate = out.scores[rows], out.gate[rows]
    if meta is None:
        answered = np.where(available_experts(scores), scores, 0.0)  # an abstaining expert contributes nothing
        out.contributions[rows] = expert_contributions(answered, gate)
        return weighted_score(answered, gate)
    features = meta_features(scores, gate)
    proba = meta_probabilities(features, meta.mean, meta.scale, meta.coef, meta.intercept, meta.classes)
    score = proba[:, UP] - proba[:, DOWN]
    out.contributions[rows], out.prior[rows] = meta_contributions(
        meta.mean, meta.scale, meta.coef, meta.intercept, meta.classes, features, len(out.experts), score)
    return score


def _online_block(block: Block, gate: Any, labels: Labels, fingerprints: np.ndarray, out: _OutOfSample,
                  config: RunConfig, known_horizon: np.ndarray) -> None:
    """The block's bars one at a time with the gate and meta-model learning online (``moe.online``).

    At bar t > fit_at the label of bar ``t - horizon - embargo`` has just become known (the walk-forward's own
    rule); the learner takes its step on what the models read at that bar, then the bar is decided with the
    weights as they stand. A gate that is not a softmax gate keeps its refit weights (``out.gate`` as filled).
    """
    online = config.moe.online
    meta = _fit_meta(block, labels, out, config, known_horizon)
    softmax_gate = isinstance(gate, SoftmaxGate)
    learner = OnlineLearner(gate.gate_weights(out.experts) if softmax_gate else None, meta,
                            OnlineRates(gate=online.gate_rate if softmax_gate else 0.0, meta=online.meta_rate,
                                        entropy=gate.entropy if softmax_gate else 0.0,
                                        clip=gate.clip if softmax_gate else 3.0))
    lag, first = labels.horizon + config.walk_forward.embargo, config.walk_forward.initial_window
    for t in range(block.start, block.stop):
        known = t - lag
        if t > block.fit_at and known >= first:
            learner.learn(RealisedRow(fingerprints[known], out.scores[known], out.gate[known],
                                      float(labels.forward_z[known]), int(labels.trend[known])))
        weights = learner.gate_weights()
        if weights is not None:
            out.gate[t] = gate_forward(weights, fingerprints[t : t + 1], available_experts(out.scores[t : t + 1]))[0]
        out.combined[t] = _gated_score(slice(t, t + 1), out, learner.meta_arrays())[0]
    out.online_updates.append(learner.updates)


def _single_expert_score(block: Block, frame: pd.DataFrame, labels: Labels, out: _OutOfSample, config: RunConfig,
                         known_horizon: np.ndarray) -> np.ndarray:
    """P(up) - P(down) of the single ``equity_daily`` archetype expert, refitted every ``single_refit_every`` bars."""
    from signal_engine.experts.tf_runtime import tensorflow_available

    if not tensorflow_available():
        raise ConfigError(f"moe.enabled: false runs the single {SINGLE_EXPERT} expert, a TensorFlow model, but "
                          "TensorFlow is not installed; pip install -e .[tf] or set moe.enabled: true")
    r, rows = block.fit_at, slice(block.start, block.stop)
    due = (r - config.walk_forward.initial_window) % config.moe.single_refit_every < config.walk_forward.refit_every
    if out.single_model is None or due:
        target = np.where(known_horizon & (labels.trend >= 0), labels.trend, -1)[: r + 1]
        out.single_model = clone(components.single_expert(config)).fit(frame.iloc[: r + 1], target)
        out.single_fits += 1
    model = out.single_model
    out.single_proba[rows] = _predict_window(model, frame, block.start, block.stop, model.predict_proba)
    return trend_score(out.single_proba[rows, UP], out.single_proba[rows, DOWN])


def _stages_block(block: Block, frame: pd.DataFrame, labels: Labels, windows: np.ndarray, out: _OutOfSample,
                  config: RunConfig) -> None:
    """Seed 002's three stages on the block's bars, each stage fitted on earlier out-of-sample rows."""
    r, rows = block.fit_at, slice(block.start, block.stop)
    known = known_by(labels.known_at_horizon(), r, config.walk_forward.embargo)
    past = np.arange(config.walk_forward.initial_window, r + 1)
    train = past[known[past] & (labels.trend[past] >= 0)]
    refiner = SequenceRefiner(min_rows=config.gate.min_rows).fit(
        windows[train], out.trend_proba[train], labels.trend[train])
    out.sequence_proba[rows] = refiner.predict_proba(windows[rows], out.trend_proba[rows])
    rsi = frame["rsi_14"].to_numpy(dtype=float)

    def inputs(index: np.ndarray | slice) -> StageInputs:
        # the price experts' scores: the stages read no news (a column the news expert may leave empty)
        return StageInputs(out.trend_proba[index], out.sequence_proba[index], rsi[index],
                           out.scores[index, : len(PRICE_EXPERTS)])

    engine = MultiStageEngine(random_state=config.seed, min_lift=0.0)
    engine.fit(inputs(train), labels.trend[train])
    decisions = engine.decide(inputs(rows))
    out.raw_direction[rows] = decisions.raw_direction
    out.stage_direction[rows] = decisions.direction
    out.stage_kept[rows] = np.column_stack((decisions.after_stage1, decisions.after_stage2, decisions.after_stage3))
    out.stage_confidence[rows] = decisions.confidence


def _evaluate(
    series: PriceSeries,
    frame: pd.DataFrame,
    labels: Labels,
    out: _OutOfSample,
    config: RunConfig,
    ppy: float,
) -> SymbolResult:
    wf, trading = config.walk_forward, config.trading
    test = slice(wf.test_start, len(series))
    close = frame["close"].to_numpy()
    combiner = components.combiner(config)
    vol_forecast = out.vol_forecast
    target_per_bar = trading.target_vol_annual / np.sqrt(ppy)

    def size(direction: np.ndarray) -> np.ndarray:
        return volatility_target_position(direction, vol_forecast[test], target_vol_per_bar=target_per_bar,
                                          max_leverage=trading.max_leverage, allow_short=trading.allow_short)

    def sized(score: np.ndarray) -> np.ndarray:
        return size(held_direction(score, enter_long=trading.buy_threshold, enter_short=trading.sell_threshold,
                                   exit_level=trading.exit_level))

    def unsized(direction: np.ndarray) -> np.ndarray:
        direction = np.asarray(direction, dtype=float)
        return np.maximum(direction, 0.0) if not trading.allow_short else direction

    score = out.combined[test]
    stage_positions: dict[str, np.ndarray] = {}
    if config.moe.multistage:
        raw = out.raw_direction[test].astype(float)
        stage_positions = {"raw": size(raw), **{name: size(raw * out.stage_kept[test, i])
                                                 for i, name in enumerate(STAGES)}}
    positions = {
        "moe": sized(score),
        **{f"expert_{name}": sized(out.scores[test, i]) for i, name in enumerate(EXPERTS)},
        **({"expert_news": sized(np.nan_to_num(out.scores[test, len(EXPERTS)]))} if config.moe.news else {}),
        **({"multistage": stage_positions[STAGES[-1]]} if stage_positions else {}),
        "baseline_buy_and_hold": np.ones(test.stop - test.start),
        "baseline_sma_crossover": unsized(baselines.sma_crossover_direction(close)[test]),
        "baseline_majority": unsized(baselines.trend_direction(out.majority_proba[test])),
    }
    timestamps = pd.DatetimeIndex(series.bars.index[test])
    signals = pd.DataFrame({
        "timestamp": timestamps.strftime("%Y-%m-%d %H:%M:%S" if series.intraday else "%Y-%m-%d"),
        "symbol": series.symbol,
        "signal": SIGNALS[combiner.direction(score) + 1],
        "score": score,
        "confidence": out.confidence[test],
        "position": positions["moe"],
        "p_up": out.trend_proba[test, 2],
        "p_down": out.trend_proba[test, 0],
        "p_neutral": out.trend_proba[test, 1],
        "support": out.levels[test, 0],
        "resistance": out.levels[test, 1],
        "vol_forecast": vol_forecast[test],
        **{f"gate_{e}": out.gate[test, i] for i, e in enumerate(out.experts)},
        SCORE_VOL_COLUMN: out.score_vol[test],  # not in signals.csv: the training workflow's volatility score reads it
    })

    next_return = np.append(close[1:] / close[:-1] - 1.0, np.nan)[test]
    tradable = np.isfinite(next_return)
    cost = trading.cost_for(series.symbol)
    returns = pd.DataFrame(
        {name: strategy_returns(pos[tradable], next_return[tradable], cost) for name, pos in positions.items()},
        index=timestamps[tradable],
    )
    confidence = {"moe": _confidence_table(labels, out, test)}
    if stage_positions:
        confidence["multistage"] = _stage_confidence_table(labels, out, test)
    metrics: dict[str, Any] = {
        "trend": _trend_table(labels, out, test),
        "volatility": _volatility_table(labels, out, test),
        "levels": _levels_table(labels, out, close, test),
        "confidence": confidence,
        "strategies": {
            name: strategy_metrics(positions[name][tradable], returns[name].to_numpy(), ppy,
                                   costs=trading_costs(positions[name][tradable], cost))
            for name in positions
        },
    }
    if stage_positions:
        metrics["stages"] = _stage_table(labels, out, test, stage_positions, next_return, tradable, cost, ppy)
    contributions = out.contributions[test]
    explanations = pd.DataFrame({
        "timestamp": signals["timestamp"],
        "symbol": series.symbol,
        "signal": signals["signal"],
        "score": score,
        **{f"contrib_{e}": contributions[:, i] for i, e in enumerate(out.experts)},
        "contrib_prior": out.prior[test],
        "top_features": out.top_features[test],
    })
    realised = pd.Series(np.sqrt(labels.next_variance[test]), index=timestamps, name="realised_abs_return")
    data = {
        "symbol": series.symbol,
        "source": series.source,
        "bars": len(series),
        "start": str(series.bars.index[0]),
        "end": str(series.bars.index[-1]),
        "intraday": series.intraday,
        "trend_expert": config.moe.experts.trend,
        "periods_per_year": ppy,
        "cost_bps": cost,
        "test_start": str(series.bars.index[wf.test_start]),
        "test_bars": test.stop - test.start,
    }
    diagnostics = {
        "refits": len(out.blend_weight),
        "garch_converged_share": float(np.mean(out.garch_converged)),
        "mean_garch_blend_weight": float(np.mean(out.blend_weight)),
        "levels_windows": sorted(set(out.levels_window)),
        "mean_gate": {e: float(np.mean(out.gate[test, i])) for i, e in enumerate(out.experts)},
        "moe": {
            "enabled": config.moe.enabled,
            "experts": {"trend": out.trend_name, "levels": out.levels_name, "volatility": out.vol_name,
                        "sizing_volatility": out.sizing_name, **({"news": NEWS_COLUMN} if config.moe.news else {})},
            "gate": config.moe.gate,
            "k": config.moe.k,
            "combiner": config.moe.combiner,
            **({"meta_training_rows": out.meta_rows} if out.meta_rows else {}),
            **({"online": {"gate_rate": config.moe.online.gate_rate, "meta_rate": config.moe.online.meta_rate,
                           "updates_per_block": out.online_updates}} if out.online_updates else {}),
            **({"single_expert": SINGLE_EXPERT, "single_expert_fits": out.single_fits}
               if not config.moe.enabled else {}),
        },
        **({"tuning": out.tuning_refits} if out.tuning_refits else {}),
    }
    return SymbolResult(series.symbol, data, signals, metrics, returns, realised, diagnostics,
                        explanations=explanations)


def _stage_table(labels: Labels, out: _OutOfSample, test: slice, positions: dict[str, np.ndarray],
                 next_return: np.ndarray, tradable: np.ndarray, cost: float, ppy: float) -> list[dict[str, Any]]:
    """Per stage on the test span: candidates in, kept, false positives removed, true positives lost, net Sharpe.

    Each bar starts as the stage-1 model's raw call (long when P(up) >= P(down), else short); it is a true
    positive when the H-bar trend class matches that direction. Bars whose label is not yet known at the
    end of the data are left out of the counts. Net Sharpe trades every kept call, volatility-targeted,
    net of costs, from the bar's close to the next.
    """
    y = labels.trend[test]
    known = y >= 0
    raw = out.raw_direction[test]
    correct = ((raw > 0) & (y == UP)) | ((raw < 0) & (y == DOWN))
    previous = np.ones(len(y), dtype=bool)
    table = []
    for i, name in enumerate(("raw", *STAGES)):
        kept = previous if name == "raw" else out.stage_kept[test, i - 1]
        removed = previous & ~kept & known
        net = strategy_returns(positions[name][tradable], next_return[tradable], cost)
        row = strategy_metrics(positions[name][tradable], net, ppy)
        table.append({
            "stage": name,
            "candidates_in": int((previous & known).sum()),
            "passed": int((kept & known).sum()),
            "false_positives_removed": int((removed & ~correct).sum()),
            "true_positives_lost": int((removed & correct).sum()),
            "precision": float(correct[kept & known].mean()) if (kept & known).any() else float("nan"),
            "sharpe": row["sharpe"],
            "max_drawdown": row["max_drawdown"],
            "turnover": row["turnover"],
        })
        previous = kept
    return table


def _stage_confidence_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, Any]:
    """Reliability of stage 3's confidence on the calls that pass stages 1 and 2."""
    y = labels.trend[test]
    direction = out.stage_direction[test]
    kept = out.stage_kept[test, 1] & (y >= 0)
    correct = ((direction > 0) & (y == UP)) | ((direction < 0) & (y == DOWN))
    return reliability(out.stage_confidence[test][kept], correct[kept].astype(float))


def _confidence_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, Any]:
    """Reliability of the confidence: did the H-bar move go the way of the score's sign?"""
    score, move = out.combined[test], labels.forward_return[test]
    known = np.isfinite(move) & (score != 0)
    return reliability(out.confidence[test][known], (np.sign(score[known]) == np.sign(move[known])).astype(float))


def _trend_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, dict[str, float]]:
    y = labels.trend[test]
    known = y >= 0
    table = {out.trend_name: trend_metrics(y[known], out.trend_proba[test][known])}
    if out.raw_trend_proba is not None:
        table["trend_lightgbm"] = trend_metrics(y[known], out.raw_trend_proba[test][known])
    if np.isfinite(out.single_proba[test]).all():
        table[f"archetype_{SINGLE_EXPERT}"] = trend_metrics(y[known], out.single_proba[test][known])
    table["baseline_majority"] = trend_metrics(y[known], out.majority_proba[test][known])
    return table


def _volatility_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, dict[str, float]]:
    realised = labels.next_variance[test]
    return {name: volatility_metrics(values[test], realised) for name, values in out.variance.items()}


def _levels_table(labels: Labels, out: _OutOfSample, close: np.ndarray, test: slice) -> dict[str, dict[str, float]]:
    horizon = labels.horizon
    later = np.append(close[horizon:], np.full(horizon, np.nan))[test]
    args = (close[test], labels.future_low[test], labels.future_high[test], later)
    return {
        out.levels_name: levels_metrics(out.levels[test], *args),
        "baseline_pivot": levels_metrics(out.pivots[test], *args),
    }
