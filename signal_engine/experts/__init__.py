"""Experts: estimators with the scikit-learn contract whose outputs the gate and combiner mix."""

from signal_engine.experts.base import Expert
from signal_engine.experts.levels import PivotLevels, SwingLevelsExpert
from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.experts.volatility import Ewma, Garch11, VolatilityExpert

__all__ = [
    "Ewma",
    "Expert",
    "Garch11",
    "GradientBoostedTrendExpert",
    "PivotLevels",
    "SwingLevelsExpert",
    "VolatilityExpert",
]
