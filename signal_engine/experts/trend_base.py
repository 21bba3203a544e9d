"""What every trend expert shares: training rows, the calibration fold and calibrated probabilities."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from signal_engine.experts.base import Expert
from signal_engine.experts.calibration import MulticlassCalibrator, temporal_split
from signal_engine.labels import TREND_CLASSES

MIN_FIT_ROWS = 100
INPUT_CLIP = 5.0  # standardised inputs are clipped here, so one extreme bar cannot dominate


def fit_standardiser(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: mean and standard deviation of the finite values; 0 and 1 for a column with none (a
    look-back longer than the history) or without spread."""
    known = np.isfinite(values)
    counts = known.sum(axis=0)
    center = np.divide(np.where(known, values, 0.0).sum(axis=0), counts, out=np.zeros(values.shape[1]),
                       where=counts > 0)
    spread = np.where(known, values - center, 0.0)
    variance = np.divide((spread**2).sum(axis=0), counts, out=np.zeros(values.shape[1]), where=counts > 0)
    return center, np.where(variance > 0, np.sqrt(variance), 1.0)


def standardise(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """z-scores clipped at +/- ``INPUT_CLIP``; a missing value becomes 0 (the training mean)."""
    z = np.clip((values - center) / scale, -INPUT_CLIP, INPUT_CLIP)
    return np.where(np.isfinite(z), z, 0.0)


class TrendClassifier(Expert):
    """A classifier of the H-bar trend class (down, neutral, up) with probabilities calibrated out of sample.

    ``fit(X, y)`` trains on the rows of ``X`` whose label ``y`` is 0, 1 or 2 (-1 marks rows whose label
    is not known at the fit bar; they still serve as history for sequence models). With ``calibration``
    set, the last ``validation_fraction`` of those rows form a validation fold, the model is fitted on the
    rows at least ``purge`` bars before it, and a :class:`MulticlassCalibrator` is fitted on the model's
    predictions for the fold; with ``refit`` the model is then fitted again on all rows and keeps that
    calibrator. Subclasses implement ``_fit_model(X, labels, rows)`` and ``_raw_proba(X, rows)``.
    """

    name = "trend"
    target = "trend"
    outputs = tuple(f"p_{c}" for c in TREND_CLASSES)

    calibration: str | None
    validation_fraction: float
    purge: int
    refit: bool
    features: tuple[str, ...]

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        labels = np.asarray(y, dtype=np.int64)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        self.classes_ = np.arange(len(TREND_CLASSES))
        rows = np.flatnonzero(labels >= 0)
        rows = rows[self._trainable(X, rows)]
        if len(rows) == 0:
            raise ValueError("no row of y holds a known trend label (0, 1 or 2)")
        fraction = self.validation_fraction if self.calibration else 0.0
        fit_rows, validation_rows = temporal_split(rows, fraction, self.purge)
        if len(fit_rows) < MIN_FIT_ROWS:
            fit_rows, validation_rows = rows, rows[:0]
        self._fit_model(X, labels, fit_rows)
        raw = self._raw_proba(X, validation_rows) if len(validation_rows) else np.empty((0, len(self.classes_)))
        method = self.calibration if len(validation_rows) else None
        self.calibrator_ = MulticlassCalibrator(method=method, n_classes=len(self.classes_)).fit(
            raw, labels[validation_rows]
        )
        self.n_fit_rows_, self.n_validation_rows_ = len(fit_rows), len(validation_rows)
        if self.refit and len(validation_rows):
            self._fit_model(X, labels, rows)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities in the order down, neutral, up; rows sum to 1."""
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)))
        return self.calibrator_.transform(self._raw_proba(X, None))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)

    def _feature_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The model's input columns (``features``) of ``X`` as floats."""
        return X.loc[:, list(self.features)].to_numpy(dtype=float)

    def _trainable(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Mask over ``rows`` of those the model can learn from (all by default)."""
        return np.ones(len(rows), dtype=bool)

    def _fit_model(self, X: pd.DataFrame, labels: np.ndarray, rows: np.ndarray) -> None:
        raise NotImplementedError

    def _raw_proba(self, X: pd.DataFrame, rows: np.ndarray | None) -> np.ndarray:
        """Uncalibrated (n, 3) probabilities for ``rows`` of ``X`` (all rows when None)."""
        raise NotImplementedError


def full_proba(proba: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread probabilities over the classes seen in training into all ``n_classes`` columns."""
    out = np.zeros((len(proba), n_classes))
    out[:, seen] = proba
    return out
