"""Experts: estimators with the scikit-learn contract whose outputs the gate and combiner mix.

Importing this package never imports TensorFlow: the Keras experts (``LSTMTrendExpert``,
``TransformerTrendExpert`` and :class:`signal_engine.archetypes.KernelBankExpert`) import it inside
``fit``/``predict``.
"""

from signal_engine.experts.base import Expert
from signal_engine.experts.boosted_volatility import BoostedLogVariance
from signal_engine.experts.calibration import MulticlassCalibrator
from signal_engine.experts.garch_family import ArchVolatility
from signal_engine.experts.har import HarVolatility
from signal_engine.experts.level_regression import LevelRegressionExpert
from signal_engine.experts.levels import SwingLevelsExpert
from signal_engine.experts.linear_trend import LogisticTrendExpert
from signal_engine.experts.lstm_trend import LSTMTrendExpert
from signal_engine.experts.pivots import PivotLevels
from signal_engine.experts.swing_clusters import SwingClusterLevels
from signal_engine.experts.transformer_trend import TransformerTrendExpert
from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.experts.trend_base import TrendClassifier
from signal_engine.experts.volatility import Ewma, Garch11, VolatilityExpert
from signal_engine.experts.volatility_combination import VolatilityCombination

__all__ = [
    "ArchVolatility",
    "BoostedLogVariance",
    "Ewma",
    "Expert",
    "Garch11",
    "GradientBoostedTrendExpert",
    "HarVolatility",
    "LSTMTrendExpert",
    "LevelRegressionExpert",
    "LogisticTrendExpert",
    "MulticlassCalibrator",
    "PivotLevels",
    "SwingClusterLevels",
    "SwingLevelsExpert",
    "TransformerTrendExpert",
    "TrendClassifier",
    "VolatilityCombination",
    "VolatilityExpert",
]
