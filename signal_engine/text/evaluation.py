"""Accuracy and macro-F1 of a text classifier on held-out texts, with bootstrap intervals.

The held-out texts are independent items (no time order), so the resampling is the plain i.i.d. bootstrap
over texts (``arch``'s IIDBootstrap: the stationary bootstrap of :mod:`signal_engine.evaluation.significance`
with blocks of one); a model's difference from a baseline resamples the same texts for both (paired).
Intervals are percentile intervals; the p-value of a difference is inverted from it as in ``significance``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from arch.bootstrap import IIDBootstrap

from signal_engine.evaluation.significance import DEFAULT_LEVEL, DEFAULT_REPS, _percentile_interval


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The share of texts labelled as annotated."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(truth == predicted)) if len(truth) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: int = 3) -> float:
    """The unweighted mean over ``classes`` (labels 0..classes-1) of each class's F1; a class that is neither
    annotated nor predicted counts as F1 0 (scikit-learn's ``zero_division=0``)."""
    truth, predicted = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    hits = np.bincount(truth[truth == predicted], minlength=classes)[:classes]
    annotated = np.bincount(truth, minlength=classes)[:classes]
    guessed = np.bincount(predicted, minlength=classes)[:classes]
    denominator = annotated + guessed
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(classes), where=denominator > 0)
    return float(f1.mean())


METRICS = {"accuracy": accuracy, "macro_f1": macro_f1}


def scored(y_true: np.ndarray, predictions: Mapping[str, np.ndarray], *, reference: str,
           reps: int = DEFAULT_REPS, level: float = DEFAULT_LEVEL, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per model: each metric, its bootstrap interval, and (for models other than ``reference``) the paired
    interval and p-value of ``reference``'s metric minus the model's.

    Keys: ``accuracy``, ``accuracy_low``, ``accuracy_high``, ``macro_f1``, ..., and ``<metric>_gap``,
    ``<metric>_gap_low``, ``<metric>_gap_high``, ``<metric>_gap_p_value`` (the reference's lead).
    """
    truth = np.asarray(y_true, dtype=int)
    if reference not in predictions:
        raise ValueError(f"reference {reference!r} is not among the predictions ({', '.join(predictions)})")
    names = list(predictions)
    stacked = np.column_stack([truth] + [np.asarray(predictions[n], dtype=int) for n in names])
    if stacked.shape[0] < 2:
        raise ValueError("a bootstrap interval needs at least two texts")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")

    def statistics(sample: np.ndarray) -> np.ndarray:
        values = []
        for metric in METRICS.values():
            per_model = [metric(sample[:, 0], sample[:, 1 + k]) for k in range(len(names))]
            values.extend(per_model)
        return np.array(values)

    point = statistics(stacked)
    draws = IIDBootstrap(stacked, seed=seed).apply(statistics, reps=reps)
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    ref = names.index(reference)
    for m, metric in enumerate(METRICS):
        for k, name in enumerate(names):
            column = m * len(names) + k
            low, high, _ = _percentile_interval(draws[:, column], level)
            out[name].update({metric: float(point[column]), f"{metric}_low": low, f"{metric}_high": high})
            if k != ref:
                gap = draws[:, m * len(names) + ref] - draws[:, column]
                gap_low, gap_high, p_value = _percentile_interval(gap, level)
                out[name].update({f"{metric}_gap": float(point[m * len(names) + ref] - point[column]),
                                  f"{metric}_gap_low": gap_low, f"{metric}_gap_high": gap_high,
                                  f"{metric}_gap_p_value": p_value})
    return out
