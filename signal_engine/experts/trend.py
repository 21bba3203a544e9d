"""Trend expert: LightGBM probabilities of up / neutral / down over the label horizon."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from signal_engine.experts.trend_base import TrendClassifier, full_proba
from signal_engine.explain import classifier_directional_shap
from signal_engine.features import FEATURE_NAMES, FINGERPRINT_NAMES

TREND_FEATURES: tuple[str, ...] = tuple(dict.fromkeys((*FEATURE_NAMES, *FINGERPRINT_NAMES)))


class GradientBoostedTrendExpert(TrendClassifier):
    """LightGBM multiclass classifier of the H-bar trend class from point-in-time features.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, reg_lambda :
        LightGBM hyper-parameters.
    random_state : seed for bagging and feature sampling; training is single-threaded and
        deterministic, so the same data give the same model.
    features : columns of the market frame to use; defaults to the whole feature set.
    calibration : None (raw LightGBM probabilities), ``"isotonic"`` or ``"sigmoid"`` (Platt), fitted on
        the last ``validation_fraction`` of the training rows (see
        :class:`~signal_engine.experts.trend_base.TrendClassifier`).
    validation_fraction, purge : the calibration fold and the bars purged before it (the label horizon).
    refit : fit again on all training rows after calibrating (the calibrator is kept).

    References
    ----------
    Seed 000 (trend expert: classification on prices and technical indicators); Ke et al. (2017),
    "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS; Zadrozny and Elkan (2002)
    for one-vs-rest isotonic calibration.
    """

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
        calibration: str | None = None,
        validation_fraction: float = 0.25,
        purge: int = 5,
        refit: bool = True,
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
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.purge = purge
        self.refit = refit

    def context_bars(self) -> int | None:
        return 0

    def _fit_model(self, X: pd.DataFrame, labels: np.ndarray, rows: np.ndarray) -> None:
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
        self.model_.fit(self._feature_matrix(X.iloc[rows]), labels[rows])

    def _raw_proba(self, X: pd.DataFrame, rows: np.ndarray | None) -> np.ndarray:
        selected = X if rows is None else X.iloc[rows]
        proba = self.model_.predict_proba(self._feature_matrix(selected))
        return full_proba(np.asarray(proba), self.model_.classes_, len(self.classes_))

    def directional_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n, F) TreeSHAP contributions of each feature (columns of ``features``) to logit(up) - logit(down)."""
        return classifier_directional_shap(self.model_, matrix)
