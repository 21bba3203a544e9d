"""The text expert's head: multinomial logistic regression on sentence embeddings, C chosen by cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

DEFAULT_CS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class SentimentHead(ClassifierMixin, BaseEstimator):
    """Embeddings (texts x 384) to class probabilities; the inverse regularisation C is chosen by stratified
    ``folds``-fold cross-validation (log loss) on the data given to ``fit``, then refitted on all of it.

    Learned attributes: ``classes_``, ``C_`` (the chosen C), ``cv_log_loss_`` (mean CV log loss per C, in
    the order of ``Cs``), ``coef_`` and ``intercept_``. Deterministic: the folds are unshuffled and lbfgs
    has no randomness.
    """

    def __init__(self, Cs: Sequence[float] = DEFAULT_CS, folds: int = 5, max_iter: int = 5000) -> None:
        self.Cs = Cs
        self.folds = folds
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss
        from sklearn.model_selection import StratifiedKFold

        features, labels = _features(X), np.asarray(y)
        if len(features) != len(labels):
            raise ValueError(f"X has {len(features)} rows but y has {len(labels)}")
        if len(self.Cs) == 0 or min(self.Cs) <= 0:
            raise ValueError(f"Cs must be positive values, got {list(self.Cs)}")
        classes, counts = np.unique(labels, return_counts=True)
        folds = int(min(self.folds, counts.min()))
        if len(counts) < 2 or folds < 2:
            raise ValueError("the head needs at least two classes with at least two examples each; "
                             f"got class counts {counts.tolist()}")
        losses = np.zeros((len(self.Cs), folds))
        for f, (fit_rows, test_rows) in enumerate(StratifiedKFold(folds).split(features, labels)):
            for c, value in enumerate(self.Cs):
                model = LogisticRegression(C=float(value), max_iter=self.max_iter)
                model.fit(features[fit_rows], labels[fit_rows])
                losses[c, f] = log_loss(labels[test_rows], model.predict_proba(features[test_rows]),
                                        labels=model.classes_)
        mean = losses.mean(axis=1)
        self.cv_log_loss_ = mean.tolist()
        self.C_ = float(self.Cs[int(np.argmin(mean))])
        self.model_ = LogisticRegression(C=self.C_, max_iter=self.max_iter).fit(features, labels)
        self.classes_ = classes
        self.coef_ = self.model_.coef_
        self.intercept_ = self.model_.intercept_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(self.model_.predict_proba(_features(X)), dtype=float)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(X), axis=1)]


def _features(X: np.ndarray) -> np.ndarray:
    features = np.asarray(X, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings (texts x dimension), got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("the embeddings hold NaN or infinite values")
    return features
