"""Walk-forward backtest of one symbol: fit experts, gate and combiner at each refit, decide each bar.

Every number is out of sample: models fitted at bar r's close (on labels known by then) decide bars
r .. r + refit_every - 1; the gate learns from the experts' earlier out-of-sample outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine import components
from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import InputError
from signal_engine.evaluation import baselines
from signal_engine.evaluation.metrics import (
    levels_metrics,
    periods_per_year,
    reliability,
    strategy_metrics,
    strategy_returns,
    trend_metrics,
    volatility_metrics,
)
from signal_engine.evaluation.walkforward import Block, known_by, schedule
from signal_engine.experts import PivotLevels
from signal_engine.explain import classifier_directional_shap, expert_contributions, top_features
from signal_engine.features import FINGERPRINT_NAMES, feature_frame
from signal_engine.labels import Labels, make_labels
from signal_engine.moe import SIGNALS
from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.scores import levels_score, trend_score, volatility_score
from signal_engine.risk import held_direction, volatility_target_position

EXPERTS = ("trend", "levels", "volatility")
SIGNAL_COLUMNS = (
    "timestamp", "symbol", "signal", "score", "confidence", "position", "p_up", "p_down", "p_neutral",
    "support", "resistance", "vol_forecast", *(f"gate_{e}" for e in EXPERTS),
)


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

    def __init__(self, n: int) -> None:
        def empty(width: int = 1) -> np.ndarray:
            return np.full((n, width), np.nan) if width > 1 else np.full(n, np.nan)

        self.trend_proba = empty(3)
        self.majority_proba = empty(3)
        self.levels = empty(2)
        self.pivots = empty(2)
        self.variance = {"expert": empty(), "garch11": empty(), "ewma": empty()}
        self.scores = empty(len(EXPERTS))
        self.gate = empty(len(EXPERTS))
        self.combined = empty()
        self.confidence = empty()
        self.top_features = np.full(n, "", dtype=object)
        self.garch_converged: list[bool] = []
        self.blend_weight: list[float] = []
        self.levels_window: list[int] = []


def run_symbol(
    series: PriceSeries, config: RunConfig, on_block: Callable[[], None] | None = None
) -> SymbolResult:
    """Walk forward through ``series`` and evaluate the MoE, each expert and the baselines."""
    check_length(series, config)
    wf = config.walk_forward
    n = len(series)
    frame = series.bars.join(feature_frame(series.bars))
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    ppy = periods_per_year(series.bars.index.to_numpy()[: wf.initial_window + 1])
    out = _OutOfSample(n)
    fingerprints = frame.loc[:, list(FINGERPRINT_NAMES)].to_numpy(dtype=float)
    for block in schedule(n, wf):
        _decide_block(block, frame, labels, fingerprints, out, config)
        if on_block is not None:
            on_block()
    return _evaluate(series, frame, labels, out, config, ppy)


def check_length(series: PriceSeries, config: RunConfig) -> None:
    """Fail with one clear line when ``series`` is too short for the walk-forward of ``config``."""
    wf = config.walk_forward
    if len(series) < wf.min_rows:
        raise InputError(
            series.source,
            f"has {len(series)} bars; profile '{config.profile}' needs at least {wf.min_rows} (initial window "
            f"{wf.initial_window} + validation {wf.validation_bars} + test {wf.min_test_bars}); use a longer "
            "file or smaller walk_forward settings in --config",
        )


def blocks_for(series: PriceSeries, config: RunConfig) -> int:
    """How many refits the walk-forward of ``series`` takes (for progress bars)."""
    return len(schedule(len(series), config.walk_forward))


def _decide_block(
    block: Block,
    frame: pd.DataFrame,
    labels: Labels,
    fingerprints: np.ndarray,
    out: _OutOfSample,
    config: RunConfig,
) -> None:
    r, rows = block.fit_at, slice(block.start, block.stop)
    history = frame.iloc[: block.stop]
    embargo = config.walk_forward.embargo
    known_horizon = known_by(labels.known_at_horizon(), r, embargo)
    known_next = known_by(labels.known_at_next(), r, embargo)

    trend_rows = np.flatnonzero(known_horizon & (labels.trend >= 0))
    trend = clone(components.trend_expert(config)).fit(frame.iloc[trend_rows], labels.trend[trend_rows])
    majority = baselines.majority_classifier(labels.trend[trend_rows])
    volatility = clone(components.volatility_expert(config)).fit(
        frame.iloc[: r + 1], np.where(known_next, labels.next_variance, np.nan)[: r + 1]
    )
    future_range = np.column_stack((labels.future_low, labels.future_high))
    future_range[~known_horizon] = np.nan
    levels = clone(components.levels_expert(config)).fit(frame.iloc[: r + 1], future_range[: r + 1])

    out.trend_proba[rows] = trend.predict_proba(frame.iloc[rows])
    block_matrix = frame.iloc[rows].loc[:, list(trend.features)].to_numpy(dtype=float)
    out.top_features[rows] = top_features(classifier_directional_shap(trend.model_, block_matrix), trend.features)
    out.majority_proba[rows] = baselines.majority_proba(majority, block.stop - block.start)
    out.levels[rows] = levels.predict(history)[rows]
    out.pivots[rows] = PivotLevels().fit(history).predict(frame.iloc[rows])
    out.variance["garch11"][rows] = volatility.garch_.predict(history)[rows]
    out.variance["ewma"][rows] = volatility.ewma_.predict(history)[rows]
    out.variance["expert"][rows] = volatility.predict_variance(history)[rows]
    out.garch_converged.append(bool(volatility.garch_.converged_))
    out.blend_weight.append(volatility.weight_)
    out.levels_window.append(int(levels.window_))

    close = frame["close"].to_numpy()
    first = config.walk_forward.initial_window
    vol_scores = volatility_score(np.sqrt(out.variance["expert"][first : block.stop]), config.gate.score_window)
    out.scores[rows, 0] = trend_score(out.trend_proba[rows, 2], out.trend_proba[rows, 0])
    out.scores[rows, 1] = levels_score(close[rows], out.levels[rows, 0], out.levels[rows, 1])
    out.scores[rows, 2] = vol_scores[block.start - first :]

    gate_rows = np.arange(first, r + 1)
    gate_rows = gate_rows[known_horizon[gate_rows] & np.isfinite(labels.forward_z[gate_rows])]
    gate = components.gate(config).fit(
        fingerprints[gate_rows], labels.forward_z[gate_rows], expert_scores=out.scores[gate_rows]
    )
    out.gate[rows] = gate.predict_proba(fingerprints[rows])
    out.combined[rows] = components.combiner(config).decision_function(out.scores[rows], out.gate[rows])
    calibration_rows = np.arange(first, r + 1)
    calibration_rows = calibration_rows[known_horizon[calibration_rows]]
    calibrator = ConfidenceCalibrator(min_rows=config.gate.min_rows).fit(
        out.combined[calibration_rows], labels.forward_return[calibration_rows]
    )
    out.confidence[rows] = calibrator.predict(out.combined[rows])


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
    vol_forecast = np.sqrt(out.variance["expert"])
    target_per_bar = trading.target_vol_annual / np.sqrt(ppy)

    def sized(score: np.ndarray) -> np.ndarray:
        direction = held_direction(score, enter_long=trading.buy_threshold, enter_short=trading.sell_threshold,
                                   exit_level=trading.exit_level)
        return volatility_target_position(direction, vol_forecast[test], target_vol_per_bar=target_per_bar,
                                          max_leverage=trading.max_leverage, allow_short=trading.allow_short)

    def unsized(direction: np.ndarray) -> np.ndarray:
        direction = np.asarray(direction, dtype=float)
        return np.maximum(direction, 0.0) if not trading.allow_short else direction

    score = out.combined[test]
    positions = {
        "moe": sized(score),
        **{f"expert_{name}": sized(out.scores[test, i]) for i, name in enumerate(EXPERTS)},
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
        **{f"gate_{e}": out.gate[test, i] for i, e in enumerate(EXPERTS)},
    })

    next_return = np.append(close[1:] / close[:-1] - 1.0, np.nan)[test]
    tradable = np.isfinite(next_return)
    returns = pd.DataFrame(
        {name: strategy_returns(pos[tradable], next_return[tradable], trading.cost_for(series.symbol))
         for name, pos in positions.items()},
        index=timestamps[tradable],
    )
    metrics = {
        "trend": _trend_table(labels, out, test),
        "volatility": _volatility_table(labels, out, test),
        "levels": _levels_table(labels, out, close, test),
        "confidence": {"moe": _confidence_table(labels, out, test)},
        "strategies": {
            name: strategy_metrics(positions[name][tradable], returns[name].to_numpy(), ppy) for name in positions
        },
    }
    contributions = expert_contributions(out.scores[test], out.gate[test])
    explanations = pd.DataFrame({
        "timestamp": signals["timestamp"],
        "symbol": series.symbol,
        "signal": signals["signal"],
        "score": score,
        **{f"contrib_{e}": contributions[:, i] for i, e in enumerate(EXPERTS)},
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
        "periods_per_year": ppy,
        "cost_bps": trading.cost_for(series.symbol),
        "test_start": str(series.bars.index[wf.test_start]),
        "test_bars": test.stop - test.start,
    }
    diagnostics = {
        "refits": len(out.blend_weight),
        "garch_converged_share": float(np.mean(out.garch_converged)),
        "mean_garch_blend_weight": float(np.mean(out.blend_weight)),
        "levels_windows": sorted(set(out.levels_window)),
        "mean_gate": {e: float(np.mean(out.gate[test, i])) for i, e in enumerate(EXPERTS)},
    }
    return SymbolResult(series.symbol, data, signals, metrics, returns, realised, diagnostics,
                        explanations=explanations)


def _confidence_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, Any]:
    """Reliability of the confidence: did the H-bar move go the way of the score's sign?"""
    score, move = out.combined[test], labels.forward_return[test]
    known = np.isfinite(move) & (score != 0)
    return reliability(out.confidence[test][known], (np.sign(score[known]) == np.sign(move[known])).astype(float))


def _trend_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, dict[str, float]]:
    y = labels.trend[test]
    known = y >= 0
    return {
        "trend_lightgbm": trend_metrics(y[known], out.trend_proba[test][known]),
        "baseline_majority": trend_metrics(y[known], out.majority_proba[test][known]),
    }


def _volatility_table(labels: Labels, out: _OutOfSample, test: slice) -> dict[str, dict[str, float]]:
    realised = labels.next_variance[test]
    names = {"expert": "volatility_blend", "garch11": "baseline_garch11", "ewma": "baseline_ewma"}
    return {names[key]: volatility_metrics(values[test], realised) for key, values in out.variance.items()}


def _levels_table(labels: Labels, out: _OutOfSample, close: np.ndarray, test: slice) -> dict[str, dict[str, float]]:
    horizon = labels.horizon
    later = np.append(close[horizon:], np.full(horizon, np.nan))[test]
    args = (close[test], labels.future_low[test], labels.future_high[test], later)
    return {
        "levels_swing": levels_metrics(out.levels[test], *args),
        "baseline_pivot": levels_metrics(out.pivots[test], *args),
    }
