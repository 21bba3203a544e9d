"""The MoE's parts, built from a RunConfig: one place for the backtest and the training workflow to share.

The walk-forward backtest clones these at every refit; the training workflow fits them once on all the
labels known at the end of the data. Both therefore train exactly the same models.
"""

from __future__ import annotations

from signal_engine.config import RunConfig
from signal_engine.experts import GradientBoostedTrendExpert, SwingLevelsExpert, VolatilityExpert
from signal_engine.moe import SoftmaxGate, WeightedScoreCombiner


def combiner(config: RunConfig) -> WeightedScoreCombiner:
    return WeightedScoreCombiner(config.trading.buy_threshold, config.trading.sell_threshold).fit()


def trend_expert(config: RunConfig) -> GradientBoostedTrendExpert:
    t = config.trend
    return GradientBoostedTrendExpert(
        n_estimators=t.n_estimators, learning_rate=t.learning_rate, num_leaves=t.num_leaves,
        min_child_samples=t.min_child_samples, subsample=t.subsample, colsample_bytree=t.colsample_bytree,
        reg_lambda=t.reg_lambda, random_state=config.seed,
    )


def volatility_expert(config: RunConfig) -> VolatilityExpert:
    return VolatilityExpert(lam=config.volatility.ewma_lambda, grid=config.volatility.blend_grid)


def levels_expert(config: RunConfig) -> SwingLevelsExpert:
    return SwingLevelsExpert(windows=config.levels.windows, swing_width=config.levels.swing_width)


def gate(config: RunConfig) -> SoftmaxGate:
    g = config.gate
    return SoftmaxGate(l2=g.l2, entropy=g.entropy, iterations=g.iterations, learning_rate=g.learning_rate,
                       min_rows=g.min_rows)
