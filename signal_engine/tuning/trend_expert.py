"""A LightGBM trend expert that tunes its own settings at every fit, on the rows it is fitted on (nested by
construction: a walk-forward that refits it on a training window tunes inside that window only).

The module does not import Optuna; ``fit`` does, so a fitted expert unpickles and predicts without it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Self

import numpy as np
import pandas as pd

from signal_engine.experts.trend import TREND_FEATURES, GradientBoostedTrendExpert


class TunedTrendExpert(GradientBoostedTrendExpert):
    """:class:`GradientBoostedTrendExpert` whose ``fit(X, y)`` first runs an Optuna study on the known rows of ``X``
    (:func:`signal_engine.tuning.lightgbm.tune_trend_expert`: inner fold = the last ``validation_fraction`` of the
    rows, inner training rows purged by ``purge`` bars + ``embargo``), then fits with the best trial's settings.

    ``tune_trials``: trials per study; ``tune_storage``: an Optuna RDB URL (``sqlite:///PATH``) keeping the studies,
    named ``tune_study_name`` (``trend`` by default) and the fit's last bar of ``X``. The chosen settings and the
    study's figures are ``tuning_`` after fitting.
    """

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.03, num_leaves: int = 7,
                 min_child_samples: int = 100, subsample: float = 0.8, colsample_bytree: float = 0.8,
                 reg_lambda: float = 1.0, random_state: int = 7, features: tuple[str, ...] = TREND_FEATURES,
                 calibration: str | None = None, validation_fraction: float = 0.25, purge: int = 5,
                 refit: bool = True, tune_trials: int = 20, tune_embargo: int = 0, tune_storage: str | None = None,
                 tune_study_name: str = "trend") -> None:
        super().__init__(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                         min_child_samples=min_child_samples, subsample=subsample, colsample_bytree=colsample_bytree,
                         reg_lambda=reg_lambda, random_state=random_state, features=features,
                         calibration=calibration, validation_fraction=validation_fraction, purge=purge, refit=refit)
        self.tune_trials = tune_trials
        self.tune_embargo = tune_embargo
        self.tune_storage = tune_storage
        self.tune_study_name = tune_study_name

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        from signal_engine.tuning.lightgbm import TuningSettings, tune_trend_expert

        labels = np.asarray(y, dtype=np.int64)
        rows = np.flatnonzero(labels >= 0)
        settings = replace(TuningSettings(), trials=self.tune_trials, embargo=self.tune_embargo,
                           validation_fraction=self.validation_fraction, seed=self.random_state)
        name = f"{self.tune_study_name}@{X.index[rows[-1]]}" if len(rows) else self.tune_study_name
        defaults = GradientBoostedTrendExpert(**{k: v for k, v in self.get_params().items()
                                                 if not k.startswith("tune_")})
        result = tune_trend_expert(defaults, X.iloc[rows], labels[rows], rows, rows + self.purge,
                                   settings=settings, name=name, storage=self.tune_storage)
        chosen: dict[str, Any] = result.params
        fitted = GradientBoostedTrendExpert(**{**defaults.get_params(), **chosen}).fit(X, labels)
        self.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
        self.tuning_ = {**result.to_dict(), "params": chosen}
        return self
