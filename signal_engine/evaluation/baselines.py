"""Baselines computed in the same run as the models they are compared with."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from signal_engine.labels import DOWN, TREND_CLASSES, UP


def majority_classifier(trend_labels: np.ndarray) -> DummyClassifier:
    """The class prior of the training labels: predicts the majority class, probabilities = frequencies."""
    return DummyClassifier(strategy="prior").fit(np.zeros((len(trend_labels), 1)), trend_labels)


def majority_proba(model: DummyClassifier, n_rows: int) -> np.ndarray:
    """(n_rows, 3) probabilities in the order down, neutral, up; unseen classes get 0."""
    proba = np.zeros((n_rows, len(TREND_CLASSES)))
    proba[:, model.classes_] = model.predict_proba(np.zeros((n_rows, 1)))
    return proba


def trend_direction(proba: np.ndarray) -> np.ndarray:
    """+1 when the most likely class is up, -1 when down, 0 when neutral."""
    predicted = np.argmax(proba, axis=1)
    return np.where(predicted == UP, 1, np.where(predicted == DOWN, -1, 0))


def sma_crossover_direction(close: np.ndarray, fast: int = 20, slow: int = 50) -> np.ndarray:
    """+1 while the fast SMA is above the slow one, -1 below, 0 before both exist."""
    series = pd.Series(close)
    gap = (series.rolling(fast).mean() - series.rolling(slow).mean()).to_numpy()
    return np.nan_to_num(np.sign(gap), nan=0.0).astype(int)
