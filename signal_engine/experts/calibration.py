"""Probability calibration on a validation fold that ends before the fit bar.

Every trend expert holds out the most recent part of its training rows, purged by the label horizon,
fits its model on the rows before, and fits a calibrator on the model's predictions for the held-out
fold. Nothing after the fit bar is ever used.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CALIBRATION_METHODS = ("isotonic", "sigmoid", "platt")


def temporal_split(rows: np.ndarray, fraction: float, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """Split time-ordered row positions into a fit part and a later validation fold.

    The validation fold holds the last ``ceil(fraction * len(rows))`` rows; fit rows are those at
    least ``purge`` positions before the fold's first row, so no fit label looks into the fold.

    Parameters
    ----------
    rows : increasing bar positions of the training rows.
    fraction : share of rows in the validation fold (0 gives an empty fold).
    purge : bars dropped between the two parts (the label horizon).

    Returns
    -------
    (fit_rows, validation_rows)
    """
    rows = np.asarray(rows)
    size = int(np.ceil(fraction * len(rows))) if fraction > 0 else 0
    if size == 0 or size >= len(rows):
        return rows, rows[:0]
    validation = rows[-size:]
    fit = rows[rows < validation[0] - purge]
    return fit, validation


class MulticlassCalibrator(BaseEstimator):
    """Calibration of class probabilities fitted on a validation fold: isotonic or Platt.

    ``"isotonic"`` and ``"sigmoid"`` map each class one-vs-rest (isotonic regression, or a logistic
    regression on the class's log-odds) and renormalise each row. ``"platt"`` is the multinomial form of
    Platt scaling: a multinomial logistic regression on the three log-probabilities, L2-regularised with
    strength ``1 / C``; where the model's probabilities carry little information its slopes shrink to
    zero and it falls back to the fold's class frequencies. Its inputs are clipped to the range seen in
    the fold (as isotonic regression clips), so a model that grows more confident after the fold is not
    extrapolated.

    Parameters
    ----------
    method : ``"isotonic"``, ``"sigmoid"``, ``"platt"`` or None (identity).
    C : inverse L2 strength of the ``"platt"`` regression.
    n_classes : number of classes; columns of the probability matrix.
    min_rows : below this many validation rows the calibrator stays the identity.
    floor : calibrated probabilities are kept at or above this before renormalising, so log loss stays
        finite.

    References
    ----------
    Platt (1999), "Probabilistic outputs for support vector machines"; Zadrozny and Elkan (2002),
    "Transforming classifier scores into accurate multiclass probability estimates", KDD; Guo, Pleiss,
    Sun and Weinberger (2017), "On calibration of modern neural networks", ICML.
    """

    def __init__(self, method: str | None = "isotonic", n_classes: int = 3, min_rows: int = 60,
                 floor: float = 1e-3, C: float = 0.1) -> None:
        self.method = method
        self.C = C
        self.n_classes = n_classes
        self.min_rows = min_rows
        self.floor = floor

    def fit(self, proba: np.ndarray, y: np.ndarray) -> Self:
        if self.method is not None and self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method {self.method!r}; expected one of {CALIBRATION_METHODS} or None")
        proba = np.asarray(proba, dtype=float)
        labels = np.asarray(y, dtype=np.int64)
        self.n_rows_ = len(labels)
        self.maps_: list[IsotonicRegression | LogisticRegression | None] = []
        active = self.method is not None and len(labels) >= self.min_rows
        self.multinomial_: LogisticRegression | None = None
        if active and self.method == "platt" and len(np.unique(labels)) > 1:
            log_proba = _log(proba)
            self.log_range_ = (log_proba.min(axis=0), log_proba.max(axis=0))
            self.multinomial_ = LogisticRegression(C=self.C, max_iter=1000).fit(log_proba, labels)
            self.maps_ = [None] * self.n_classes
            return self
        for k in range(self.n_classes):
            hits = (labels == k).astype(float)
            if not active or hits.min() == hits.max():
                self.maps_.append(None)
            elif self.method == "isotonic":
                self.maps_.append(IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba[:, k], hits))
            else:
                self.maps_.append(LogisticRegression(C=1e4).fit(_logit(proba[:, k]), hits.astype(int)))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities; the input unchanged while no class has a fitted map."""
        proba = np.asarray(proba, dtype=float)
        if self.multinomial_ is not None:
            calibrated = np.zeros((len(proba), self.n_classes))
            inside = np.clip(_log(proba), *self.log_range_)
            calibrated[:, self.multinomial_.classes_] = self.multinomial_.predict_proba(inside)
            calibrated = np.maximum(calibrated, self.floor)
            return calibrated / calibrated.sum(axis=1, keepdims=True)
        if all(mapping is None for mapping in self.maps_):
            return proba
        columns = []
        for k, mapping in enumerate(self.maps_):
            if mapping is None:
                columns.append(proba[:, k])
            elif isinstance(mapping, IsotonicRegression):
                columns.append(mapping.predict(proba[:, k]))
            else:
                columns.append(mapping.predict_proba(_logit(proba[:, k]))[:, 1])
        calibrated = np.maximum(np.column_stack(columns), self.floor)
        return calibrated / calibrated.sum(axis=1, keepdims=True)


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, 1e-6, 1.0))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))[:, None]
