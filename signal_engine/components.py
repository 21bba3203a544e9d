"""The MoE's parts, built from a RunConfig: one place for the backtest and the training workflow to share.

The walk-forward backtest clones these at every refit; the training workflow fits them once on all the
labels known at the end of the data. Both therefore train exactly the same models. ``config.moe`` picks
the expert of each role, the gate (``softmax``, ``rule``, ``mlp``), top-k and the combiner (``weighted``,
``rule``, ``meta``); ``moe.enabled: false`` swaps the MoE for the single ``equity_daily`` expert.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from signal_engine.archetypes.pooled_expert import PooledKernelTrendExpert, PooledTrendExpert
from signal_engine.archetypes.pooled_sequence import PooledLSTMTrendExpert
from signal_engine.config import POOLED_LSTM_TREND, POOLED_TRENDS, RunConfig, moe_experts
from signal_engine.experts import (
    GradientBoostedTrendExpert,
    HarVolatility,
    LevelRegressionExpert,
    SwingLevelsExpert,
    VolatilityExpert,
)
from signal_engine.experts.implied_volatility import IV_COLUMN, HarImpliedVolatility
from signal_engine.experts.linear_trend import LogisticTrendExpert
from signal_engine.experts.sized_volatility import SizedVolatility
from signal_engine.experts.trend import TREND_FEATURES
from signal_engine.features import MOMENTUM_NAMES
from signal_engine.moe.combiner import WeightedScoreCombiner
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.meta import MetaModelCombiner, meta_feature_names, meta_features
from signal_engine.moe.rule_gate import FingerprintRuleGate
from signal_engine.moe.rules import RuleBasedCombiner

MLP_EPOCHS = 100


def combiner(config: RunConfig) -> WeightedScoreCombiner:
    """The weighted-score combiner: its thresholds turn any combined score into buy / hold / sell."""
    return WeightedScoreCombiner(config.trading.buy_threshold, config.trading.sell_threshold).fit()


def combiner_kind(config: RunConfig) -> str:
    """``weighted``, ``rule`` or ``meta``: which combiner makes the MoE's score."""
    return config.moe.combiner


def meta_combiner(config: RunConfig) -> MetaModelCombiner:
    """The (unfitted) meta-model combiner: logistic regression on expert scores and gate weights."""
    return MetaModelCombiner(C=config.moe.meta_c, buy_threshold=config.trading.buy_threshold,
                             sell_threshold=config.trading.sell_threshold,
                             features=meta_feature_names(moe_experts(config)))


def rule_combiner(config: RunConfig) -> RuleBasedCombiner:
    """The rule-based combiner with seed 000's default rules."""
    return RuleBasedCombiner().fit()


def trend_features(config: RunConfig) -> tuple[str, ...]:
    """The trend expert's inputs: ``TREND_FEATURES``, plus ``MOMENTUM_NAMES`` where ``trend.momentum`` applies."""
    t = config.trend
    momentum = t.momentum and config.labels.horizon >= t.momentum_min_horizon
    return (*TREND_FEATURES, *MOMENTUM_NAMES) if momentum else TREND_FEATURES


def trend_expert(config: RunConfig) -> GradientBoostedTrendExpert | LogisticTrendExpert | PooledTrendExpert:
    """The MoE's trend expert: LightGBM, Platt-calibrated when ``moe.experts.trend`` is ``trend_calibrated``;
    logistic regression on the same features when it is ``trend_linear``; the pooled kernel-bank network (fitted on
    every series of a run at once, rows named by a ``series`` column) when it is ``trend_pooled``, the pooled LSTM
    when it is ``trend_pooled_lstm``."""
    t = config.trend
    if config.moe.experts.trend in POOLED_TRENDS:
        return pooled_trend_expert(config)
    if config.moe.experts.trend == "trend_linear":
        return LogisticTrendExpert(purge=config.labels.horizon, features=trend_features(config))
    calibrated = config.moe.experts.trend == "trend_calibrated"
    return GradientBoostedTrendExpert(
        n_estimators=t.n_estimators, learning_rate=t.learning_rate, num_leaves=t.num_leaves,
        min_child_samples=t.min_child_samples, subsample=t.subsample, colsample_bytree=t.colsample_bytree,
        reg_lambda=t.reg_lambda, random_state=config.seed, calibration="platt" if calibrated else None,
        purge=config.labels.horizon, features=trend_features(config),
    )


def pooled_trend_expert(config: RunConfig) -> PooledTrendExpert:
    """The pooled trend expert the config picks (the LSTM when ``moe.experts.trend`` or ``intraday_trend`` is
    ``trend_pooled_lstm``, else the kernel-bank network) with the config's ``pooled_trend`` settings, purged by the
    horizon."""
    p = config.pooled_trend
    if POOLED_LSTM_TREND in (config.moe.experts.trend, config.moe.experts.intraday_trend):
        return PooledLSTMTrendExpert(window=p.window, samples_per_series=p.samples_per_series,
                                     max_epochs=p.max_epochs, patience=p.patience, batch_size=p.batch_size,
                                     purge=config.labels.horizon, random_state=config.seed)
    return PooledKernelTrendExpert(archetype=p.archetype, window=p.window, samples_per_series=p.samples_per_series,
                                   max_epochs=p.max_epochs, patience=p.patience, batch_size=p.batch_size,
                                   purge=config.labels.horizon, random_state=config.seed)


def volatility_blend(config: RunConfig) -> VolatilityExpert:
    """GARCH(1,1) and EWMA blended by QLIKE (its parts are also the volatility baselines)."""
    return VolatilityExpert(lam=config.volatility.ewma_lambda, grid=config.volatility.blend_grid)


def volatility_expert(config: RunConfig) -> VolatilityExpert | HarVolatility:
    """The MoE's volatility expert (``moe.experts.volatility``), whose forecast its volatility score reads; each
    answers ``predict_variance``."""
    return volatility_model(config.moe.experts.volatility, config)


def sizing_volatility_expert(config: RunConfig) -> VolatilityExpert | HarVolatility:
    """The volatility forecast users see and positions are sized by (``moe.experts.sizing_volatility``)."""
    return volatility_model(config.moe.experts.sizing_volatility, config)


def volatility_model(name: str, config: RunConfig) -> VolatilityExpert | HarVolatility:
    """The volatility model called ``name`` (one of ``config.VOLATILITY_EXPERTS``), as the catalogue builds it.

    ``vol_har_implied`` is HAR plus the log implied variance of the frame's ``implied_vol`` column (the
    catalogue's entry), and the option-surface columns of ``volatility.implied_terms`` when set; its forecast is NaN
    (the expert abstains) on bars without implied volatility or without one of those terms.
    """
    measures, lags = ("garman_klass", "parkinson", "squared_return"), (1, 5, 22)
    if name == "vol_har":
        return HarVolatility(measures=measures, lags=lags)
    if name == "vol_har_implied":
        return HarImpliedVolatility(column=IV_COLUMN, periods_per_year=252.0, measures=measures, lags=lags,
                                    structure_terms=config.volatility.implied_terms)
    return volatility_blend(config)


def served_volatility_expert(config: RunConfig) -> Any:
    """The volatility expert the training workflow fits and the Signal API asks: the MoE's volatility expert, or,
    when the sizing forecast is another model, both in one (:class:`SizedVolatility`: ``vol_history`` from the
    score's model, ``vol_forecast`` from the sizing model)."""
    experts = config.moe.experts
    if experts.sizing_volatility == experts.volatility:
        return volatility_expert(config)
    return SizedVolatility(score=volatility_expert(config), sizing=sizing_volatility_expert(config))


def levels_expert(config: RunConfig) -> SwingLevelsExpert | LevelRegressionExpert:
    """The MoE's support/resistance expert (``moe.experts.levels``)."""
    if config.moe.experts.levels == "levels_regression":
        return LevelRegressionExpert(n_estimators=100, learning_rate=0.05, num_leaves=7, min_child_samples=50,
                                     random_state=config.seed, swing_width=config.levels.swing_width)
    return SwingLevelsExpert(windows=config.levels.windows, swing_width=config.levels.swing_width)


def gate(config: RunConfig) -> Any:
    """The (unfitted) gate of ``moe.gate``: ``fit(fingerprints, forward_z, expert_scores=...)``,
    ``predict_proba(fingerprints)`` gives weights over ``moe_experts(config)`` (trend, levels, volatility[, news])
    summing to 1, top-k sparse."""
    g, k, experts = config.gate, config.moe.k, moe_experts(config)
    if config.moe.gate == "rule":
        return FingerprintRuleGate(k=k)
    if config.moe.gate == "mlp":
        from signal_engine.moe.mlp_gate import MLPGate

        return MLPGate(k=k, epochs=MLP_EPOCHS, min_rows=g.min_rows, random_state=config.seed, experts=experts)
    return SoftmaxGate(l2=g.l2, entropy=g.entropy, iterations=g.iterations, learning_rate=g.learning_rate,
                       min_rows=g.min_rows, k=k if k < len(experts) else None)


def single_expert(config: RunConfig) -> Any:
    """The single ``equity_daily`` archetype expert used when ``moe.enabled`` is false (seed 001 §5.4)."""
    from signal_engine.registry import build

    overrides: dict[str, Any] = {"random_state": config.seed}
    if config.profile == "quick":
        overrides.update(epochs=2, max_train_rows=1500)
    return build("archetype_equity_daily", **overrides)


def fit_meta_combiner(config: RunConfig, scores: np.ndarray, gate_weights: np.ndarray,
                      trend: np.ndarray) -> MetaModelCombiner | None:
    """The meta-model combiner fitted as the backtest fits it, on out-of-fold rows (None: too few rows).

    ``scores`` and ``gate_weights`` are (n, E) out-of-sample expert scores and gate weights (e.g. a walk-forward's
    signals), ``trend`` the realised trend class (-1 where unknown). A NaN score is an expert that abstained on the
    row: the row is kept and the score reads as its training mean, as the forward pass (``meta_probabilities``)
    reads it, while the expert's gate weight (0 there) tells the model it abstained. With fewer than
    ``gate.min_rows`` usable rows or a single class, the backtest falls back to the weighted score, and so should
    its caller.
    """
    features = meta_features(scores, gate_weights)
    labels = np.asarray(trend, dtype=np.int64)
    answered = np.isfinite(np.asarray(scores, dtype=float)).any(axis=1)
    usable = np.isfinite(np.asarray(gate_weights, dtype=float)).all(axis=1) & answered & (labels >= 0)
    if usable.sum() < config.gate.min_rows or len(set(labels[usable])) < 2:
        return None
    return meta_combiner(config).fit(features[usable], labels[usable])
