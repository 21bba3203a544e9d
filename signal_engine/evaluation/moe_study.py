"""Seed 001 §6 study: one archetype expert against the archetype MoE with the rule gate and the MLP gate.

The archetype experts' walk-forward outputs come from the expert suite; the gates are applied on the same
anchored schedule: at each refit bar r the rule gate (v0) routes on the fingerprint of the last year of
bars, and the MLP gate (v1, top-k) is trained on the experts' earlier out-of-sample outputs whose labels
are known by r. Accuracy is the trend class accuracy on the test span; net Sharpe is the volatility-
targeted strategy of P(up) - P(down), with the hold rule and costs of the backtest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.archetypes.fingerprint import route, series_fingerprint
from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.metrics import strategy_metrics, strategy_returns
from signal_engine.evaluation.planning import periods_per_year
from signal_engine.evaluation.walkforward import known_by, schedule
from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.labels import DOWN, UP, Labels
from signal_engine.moe.mlp_gate import MLPGate
from signal_engine.moe.numpy_gate import gate_forward
from signal_engine.risk import held_direction, volatility_target_position

SINGLE = "equity_daily"
ROUTING_LOOKBACK = 252


@dataclass(frozen=True)
class StudyInputs:
    """Per-bar inputs of the study: each archetype's out-of-sample probabilities and what judges them."""

    probabilities: Mapping[str, np.ndarray]
    fingerprints: np.ndarray
    labels: Labels
    bars: pd.DataFrame
    vol_forecast: np.ndarray


def gated_probabilities(inputs: StudyInputs, config: RunConfig, *, k: int = 2) -> dict[str, Any]:
    """Probabilities of the single expert, the rule-gated MoE and the MLP-gated MoE, bar by bar.

    Returns the three (n, 3) arrays and the per-bar cost of the MLP gate's forward pass with top-k
    routing and with dense routing (seconds per row), measured on the test span.
    """
    names = tuple(inputs.probabilities)
    stacked = np.stack([inputs.probabilities[name] for name in names], axis=1)  # (n, E, 3)
    scores = stacked[:, :, UP] - stacked[:, :, DOWN]
    n = len(inputs.bars)
    wf = config.walk_forward
    rule = np.full((n, 3), np.nan)
    mlp = np.full((n, 3), np.nan)
    timing = {"top_k": 0.0, "dense": 0.0, "rows": 0}
    complete = np.isfinite(scores).all(axis=1)
    for block in schedule(n, wf):
        rows = slice(block.start, block.stop)
        start = max(0, block.fit_at - ROUTING_LOOKBACK + 1)
        routed = route(series_fingerprint(inputs.bars.iloc[start : block.fit_at + 1]))
        choice = names.index(routed) if routed in names else names.index(SINGLE)
        rule[rows] = stacked[rows, choice]
        train = np.arange(wf.initial_window, block.fit_at + 1)
        train = train[known_by(inputs.labels.known_at_horizon(), block.fit_at, wf.embargo)[train] & complete[train]]
        train = train[np.isfinite(inputs.labels.forward_z[train])]
        gate = MLPGate(k=k, epochs=100, min_rows=config.gate.min_rows, random_state=config.seed, experts=names)
        gate.fit(inputs.fingerprints[train], inputs.labels.forward_z[train], expert_scores=scores[train])
        started = time.perf_counter()
        weights = gate.predict_proba(inputs.fingerprints[rows])
        middle = time.perf_counter()
        gate_forward(replace(gate.weights_, k=len(names)), inputs.fingerprints[rows])
        ended = time.perf_counter()
        if block.start >= wf.test_start:
            timing["top_k"] += middle - started
            timing["dense"] += ended - middle
            timing["rows"] += block.stop - block.start
        mlp[rows] = np.einsum("ne,nek->nk", weights, np.nan_to_num(stacked[rows]))
    single = stacked[:, names.index(SINGLE)]
    return {"single": single, "rule": rule, "mlp": mlp, "timing": timing}


def study_table(inputs: StudyInputs, config: RunConfig, *, k: int = 2) -> dict[str, Any]:
    """Accuracy and net Sharpe of single / MoE (rule) / MoE (MLP), and the top-k latency overhead."""
    gated = gated_probabilities(inputs, config, k=k)
    wf, trading = config.walk_forward, config.trading
    test = slice(wf.test_start, len(inputs.bars))
    y = inputs.labels.trend[test]
    close = inputs.bars["close"].to_numpy(dtype=float)
    next_return = np.append(close[1:] / close[:-1] - 1.0, np.nan)[test]
    tradable = np.isfinite(next_return)
    ppy = periods_per_year(inputs.bars.index.to_numpy()[: wf.initial_window + 1])
    table: dict[str, Any] = {}
    for name in ("single", "rule", "mlp"):
        proba = gated[name][test]
        known = (y >= 0) & np.isfinite(proba).all(axis=1)
        accuracy = float(np.mean(np.argmax(proba[known], axis=1) == y[known]))
        score = np.nan_to_num(proba[:, UP] - proba[:, DOWN])
        direction = held_direction(score, enter_long=trading.buy_threshold, enter_short=trading.sell_threshold,
                                   exit_level=trading.exit_level)
        position = volatility_target_position(
            direction, inputs.vol_forecast[test], target_vol_per_bar=trading.target_vol_annual / np.sqrt(ppy),
            max_leverage=trading.max_leverage, allow_short=trading.allow_short,
        )
        net = strategy_returns(position[tradable], next_return[tradable], trading.cost_bps)
        metrics = strategy_metrics(position[tradable], net, ppy)
        table[name] = {"accuracy": accuracy, "sharpe": metrics["sharpe"], "max_drawdown": metrics["max_drawdown"],
                       "rows": int(known.sum())}
    timing = gated["timing"]
    table["latency"] = {
        "mlp_top_k_us_per_row": 1e6 * timing["top_k"] / max(timing["rows"], 1),
        "mlp_dense_us_per_row": 1e6 * timing["dense"] / max(timing["rows"], 1),
        "top_k_overhead": timing["top_k"] / timing["dense"] - 1.0 if timing["dense"] > 0 else float("nan"),
    }
    return table


def study_inputs(series: PriceSeries, config: RunConfig, suite_outputs: Mapping[str, np.ndarray],
                 labels: Labels, frame: pd.DataFrame) -> StudyInputs:
    """Assemble the study's inputs from an expert-suite run (archetypes under ``archetype_<name>``)."""
    probabilities = {
        name.removeprefix("archetype_"): values for name, values in suite_outputs.items()
        if name.startswith("archetype_") and name != "archetype_routed"
    }
    variance = suite_outputs["baseline_garch11"][:, 0]
    return StudyInputs(probabilities, frame.loc[:, list(FINGERPRINT_NAMES)].to_numpy(dtype=float), labels,
                       series.bars, np.sqrt(variance))


VARIANTS: dict[str, dict[str, Any]] = {
    "softmax_weighted (default)": {},
    "trend_calibrated": {"moe": {"experts": {"trend": "trend_calibrated"}}},
    "vol_har": {"moe": {"experts": {"volatility": "vol_har"}}},
    "levels_regression": {"moe": {"experts": {"levels": "levels_regression"}}},
    "suite_best_experts": {"moe": {"experts": {"trend": "trend_calibrated", "volatility": "vol_har",
                                               "levels": "levels_regression"}}},
    "softmax_top2": {"moe": {"k": 2}},
    "rule_gate": {"moe": {"gate": "rule"}},
    "rule_gate_top2": {"moe": {"gate": "rule", "k": 2}},
    "mlp_gate_top2": {"moe": {"gate": "mlp", "k": 2}},
    "meta_combiner": {"moe": {"combiner": "meta"}},
    "rule_combiner": {"moe": {"combiner": "rule"}},
    "single_equity_daily": {"moe": {"enabled": False}},
    "meta_trend_calibrated": {"moe": {"combiner": "meta", "experts": {"trend": "trend_calibrated"}}},
    "meta_vol_har": {"moe": {"combiner": "meta", "experts": {"volatility": "vol_har"}}},
    "meta_levels_regression": {"moe": {"combiner": "meta", "experts": {"levels": "levels_regression"}}},
    "meta_suite_best_experts": {"moe": {"combiner": "meta", "experts": {
        "trend": "trend_calibrated", "volatility": "vol_har", "levels": "levels_regression"}}},
    "meta_calibrated_levels_regression": {"moe": {"combiner": "meta", "experts": {
        "trend": "trend_calibrated", "levels": "levels_regression"}}},
    "meta_rule_gate": {"moe": {"combiner": "meta", "gate": "rule"}},
    "meta_softmax_top2": {"moe": {"combiner": "meta", "k": 2}},
    "meta_mlp_gate_top2": {"moe": {"combiner": "meta", "gate": "mlp", "k": 2}},
}


def variant_row(series: PriceSeries, config: RunConfig) -> dict[str, float]:
    """Net Sharpe, max drawdown, trend accuracy and seconds of the backtest's MoE strategy under ``config``."""
    from signal_engine.evaluation.backtest import run_symbol

    started = time.perf_counter()
    result = run_symbol(series, config)
    seconds = time.perf_counter() - started
    moe = result.metrics["strategies"]["moe"]
    y, score = result.signals, result.signals["score"].to_numpy(dtype=float)
    move = result.metrics["confidence"]["moe"]
    return {"sharpe": moe["sharpe"], "max_drawdown": moe["max_drawdown"], "trades": moe["trades"],
            "hit_rate": move.get("hit_rate", float("nan")), "ece": move["ece"],
            "mean_abs_score": float(np.nanmean(np.abs(score))), "rows": len(y), "seconds": seconds}
