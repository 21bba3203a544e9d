"""Mixture of Experts: expert scores, the softmax gate, and the combiner."""

from signal_engine.moe.combiner import SIGNALS, WeightedScoreCombiner
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.scores import levels_score, trend_score, volatility_score

__all__ = ["SIGNALS", "SoftmaxGate", "WeightedScoreCombiner", "levels_score", "trend_score", "volatility_score"]
