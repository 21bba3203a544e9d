"""Trend expert: probabilities of up / neutral / down over the label horizon."""

from __future__ import annotations

from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.features import FEATURE_NAMES, FINGERPRINT_NAMES
from signal_engine.labels import TREND_CLASSES

TREND_FEATURES: tuple[str, ...] = tuple(dict.fromkeys((*FEATURE_NAMES, *FINGERPRINT_NAMES)))


class GradientBoostedTrendExpert(Expert):
    """LightGBM multiclass classifier of the H-bar trend class from point-in-time features.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, reg_lambda :
        LightGBM hyper-parameters.
    random_state : seed for bagging and feature sampling; training is single-threaded and
        deterministic, so the same data give the same model.
    features : columns of the market frame to use; defaults to the whole feature set.

    References
    ----------
    Seed 000 (trend expert: classification on prices and technical indicators); Ke et al. (2017),
    "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS.
    """

    name = "trend"
    target = "trend"
    outputs = tuple(f"p_{c}" for c in TREND_CLASSES)

    def __init__(
        self,
        n_estimators: int = 100,
        learning_rate: float = 0.03,
        num_leaves: int = 7,
        min_child_samples: int = 100,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        random_state: int = 7,
        features: tuple[str, ...] = TREND_FEATURES,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.features = features

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        labels = np.asarray(y, dtype=np.int64)
        self.classes_ = np.arange(len(TREND_CLASSES))
        self.feature_names_in_ = np.array(self.features)
        self.model_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=1,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        self.model_.fit(self._matrix(X), labels)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities in the order down, neutral, up (classes absent from training get 0)."""
        proba = np.zeros((len(X), len(self.classes_)))
        if len(X):
            proba[:, self.model_.classes_] = self.model_.predict_proba(self._matrix(X))
        return proba

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X.loc[:, list(self.features)].to_numpy(dtype=float)
