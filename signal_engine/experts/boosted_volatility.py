"""Gradient boosting of log-variance under the QLIKE loss."""

from __future__ import annotations

from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.experts.har import har_features
from signal_engine.experts.realised import MEASURES, intraday_hours, usable_measures

RATIO_CAP = 50.0
FRAME_FEATURES = ("atr_14", "bb_width_20", "vol30", "ret_1", "ret_5", "ret_20", "volume_z_20", "spread")


def qlike_objective(y_true: np.ndarray | None, log_variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Fisher-scoring Hessian of ``z + y exp(-z)`` with respect to z = log variance.

    The exact Hessian ``y exp(-z)`` is zero where y is; its expectation at the optimum is 1, which keeps
    every Newton step of the boosting well defined. The ratio is capped so one outlier cannot dominate.
    """
    if y_true is None:
        raise ValueError("the QLIKE objective needs the realised squared returns")
    ratio = np.minimum(y_true * np.exp(-log_variance), RATIO_CAP)
    return 1.0 - ratio, np.ones_like(ratio)


class BoostedLogVariance(Expert):
    """LightGBM model of the next bar's log variance, trained with the QLIKE loss.

    Inputs at bar t: the HAR components (log trailing means of the Garman-Klass, Parkinson and squared
    return measures over 1, 5 and 22 bars, and the leverage terms; squared returns alone on close-only bars,
    ``measures_``), point-in-time features of the market
    frame that are present (ATR, Bollinger width, 30-bar volatility, recent returns, volume z-score,
    spread) and, for intraday bars, the hour of day. The boosting starts from the log of the mean
    squared return and each tree takes a Fisher-scoring step on QLIKE, so ``exp`` of the output is a
    variance forecast on the scale of the target.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, reg_lambda, subsample : LightGBM settings.
    random_state : seed (training is single-threaded and deterministic).
    lags : HAR windows.

    References
    ----------
    Friedman (2001), "Greedy function approximation: a gradient boosting machine", Annals of Statistics;
    Ke et al. (2017), LightGBM; Patton (2011) for QLIKE; Corsi (2009) for the HAR inputs.
    """

    name = "boosted_log_variance"
    target = "next_variance"
    outputs = ("variance",)

    def __init__(
        self,
        n_estimators: int = 150,
        learning_rate: float = 0.03,
        num_leaves: int = 7,
        min_child_samples: int = 200,
        reg_lambda: float = 10.0,
        subsample: float = 0.8,
        random_state: int = 7,
        lags: tuple[int, ...] = (1, 5, 22),
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.random_state = random_state
        self.lags = lags

    def context_bars(self) -> int | None:
        return max(self.lags)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        target = np.asarray(y, dtype=float)
        self.measures_ = usable_measures(_MEASURES, X)
        self.floor_ = np.array([_positive_median(MEASURES[m](X)) * 0.01 for m in self.measures_])
        self.frame_features_ = tuple(c for c in FRAME_FEATURES if c in X.columns)
        design = self._design(X)
        rows = np.flatnonzero(np.isfinite(target))
        rows = rows[rows > 0]
        self.init_score_ = float(np.log(np.mean(target[rows])))
        self.model_ = lgb.LGBMRegressor(
            objective=qlike_objective,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=max(20, min(self.min_child_samples, len(rows) // 5)),
            feature_pre_filter=False,
            reg_lambda=self.reg_lambda,
            subsample=self.subsample,
            subsample_freq=1,
            random_state=self.random_state,
            n_jobs=1,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        self.model_.fit(design[rows], target[rows], init_score=np.full(len(rows), self.init_score_))
        return self

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        raw = np.asarray(self.model_.predict(self._design(X), raw_score=True), dtype=float)
        return np.exp(np.clip(self.init_score_ + raw, -60.0, 60.0))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_variance(X)[:, None]

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        measures = getattr(self, "measures_", _MEASURES)  # a model pickled before measures_ has them all
        columns = [har_features(X, measures, tuple(self.lags), self.floor_, leverage=True)]
        if self.frame_features_:
            columns.append(X.loc[:, list(self.frame_features_)].to_numpy(dtype=float))
        hours = intraday_hours(X.index)
        if hours is not None:
            columns.append(hours[:, None].astype(float))
        return np.column_stack(columns)


_MEASURES = ("garman_klass", "parkinson", "squared_return")


def _positive_median(values: np.ndarray) -> float:
    positive = values[np.isfinite(values) & (values > 0)]
    return float(np.median(positive)) if len(positive) else 1e-10
