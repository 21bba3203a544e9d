"""Ensembles of models that predict the same target (seed 003): classes or a number.

Each ensemble is a scikit-learn estimator over the *predictions* of its members, given as a mapping
``{model_name: prediction}`` (class probabilities of shape (n, K), or values of shape (n,)). They
know nothing of the models, so any set of experts, baselines or ensembles can be combined.
"""

from signal_engine.ensembles.classification import (
    BayesianModelAveraging,
    MajorityVote,
    SoftVote,
    Stacking,
    ThresholdVote,
    WeightedVote,
)
from signal_engine.ensembles.regression import (
    BayesianAverageRegressor,
    InverseLossAverage,
    MeanAverage,
    StackingRegressor,
)

__all__ = [
    "BayesianAverageRegressor",
    "BayesianModelAveraging",
    "InverseLossAverage",
    "MajorityVote",
    "MeanAverage",
    "SoftVote",
    "Stacking",
    "StackingRegressor",
    "ThresholdVote",
    "WeightedVote",
]
