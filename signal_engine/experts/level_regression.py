"""Gradient-boosted regression of the distance to the next support and resistance."""

from __future__ import annotations

from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.experts.levels import swing_levels
from signal_engine.experts.pivots import period_hlc, pivot_levels
from signal_engine.experts.trend import TREND_FEATURES

SWING_WINDOWS = (20, 50)


def level_features(X: pd.DataFrame, features: tuple[str, ...], swing_width: int) -> np.ndarray:
    """Market features plus the log distance from the close to pivot and swing levels."""
    close = X["close"].to_numpy(dtype=float)
    columns = [X.loc[:, list(features)].to_numpy(dtype=float)]
    for kind in ("classic", "fibonacci", "camarilla"):
        for period in (1, 5):
            levels = pivot_levels(*period_hlc(X, period), kind, 1)
            columns.append(np.log(levels / close[:, None]))
    for window in SWING_WINDOWS:
        columns.append(np.log(swing_levels(X, window, swing_width) / close[:, None]))
    return np.column_stack(columns)


class LevelRegressionExpert(Expert):
    """LightGBM regression of the log distance from the close to the next H bars' low and high.

    Two models (objective L1, so each predicts the conditional median, which minimises the absolute level
    error) learn ``log(C_t / low_{t+1..t+H})`` and ``log(high_{t+1..t+H} / C_t)`` from the market features
    and the distances to classic, Fibonacci and Camarilla pivots (1- and 5-bar periods) and to swing
    levels. Support and resistance are ``C exp(-d_support)`` and ``C exp(d_resistance)``.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, reg_lambda : LightGBM settings.
    random_state : seed (single-threaded and deterministic).
    features : columns of the market frame used besides the level distances.
    swing_width : swing confirmation width of the swing-level inputs.

    References
    ----------
    Seed 000 (support/resistance expert: a regression model trained on price action and pivot points);
    Ke et al. (2017), LightGBM; Koenker and Bassett (1978), "Regression quantiles", Econometrica.
    """

    name = "levels_regression"
    target = "future_range"
    outputs = ("support", "resistance")

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        subsample: float = 0.8,
        reg_lambda: float = 1.0,
        random_state: int = 7,
        features: tuple[str, ...] = TREND_FEATURES,
        swing_width: int = 3,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.reg_lambda = reg_lambda
        self.random_state = random_state
        self.features = features
        self.swing_width = swing_width

    def context_bars(self) -> int | None:
        return max(SWING_WINDOWS) + 2 * self.swing_width

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        future = np.asarray(y, dtype=float)
        close = X["close"].to_numpy(dtype=float)
        design = level_features(X, tuple(self.features), self.swing_width)
        rows = np.flatnonzero(np.isfinite(future).all(axis=1))
        targets = (np.log(close[rows] / future[rows, 0]), np.log(future[rows, 1] / close[rows]))
        self.support_model_, self.resistance_model_ = (self._model().fit(design[rows], t) for t in targets)
        self.n_train_rows_ = len(rows)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        close = X["close"].to_numpy(dtype=float)
        design = level_features(X, tuple(self.features), self.swing_width)
        support = close * np.exp(-np.asarray(self.support_model_.predict(design)))
        resistance = close * np.exp(np.asarray(self.resistance_model_.predict(design)))
        return np.column_stack((np.minimum(support, close), np.maximum(resistance, close)))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict(X)

    def _model(self) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            objective="l1", n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            num_leaves=self.num_leaves, min_child_samples=self.min_child_samples, subsample=self.subsample,
            subsample_freq=1, reg_lambda=self.reg_lambda, random_state=self.random_state, n_jobs=1,
            deterministic=True, force_row_wise=True, verbose=-1,
        )
