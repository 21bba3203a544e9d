"""Optuna tuning of the pooled trend network (``moe.experts.trend: trend_pooled``) on one fit's training rows, nested:
the study never sees a bar the tuned network will decide.

The pooled expert (:class:`~signal_engine.archetypes.pooled_expert.PooledKernelTrendExpert`) already holds out, in
each series, the last ``validation_fraction`` of its labelled rows after a purge of ``purge`` bars (the label
horizon) as a validation tail, stops training early on the equal-weight mean over series of the tails' log loss and
keeps the best epoch. Each trial fits a copy of the expert, with the trial's settings, on exactly the rows the final
fit is given; the trial's value is that early-stopping figure at its best epoch (the network's own probabilities,
before the calibrator, which is fitted on the tails). The tails play the part the inner validation fold plays for
LightGBM (:mod:`signal_engine.tuning.lightgbm`): the trial trains on each series' rows before its tail, whose labels
are known before the tail's first bar. The best trial's settings are then set on the expert, which is fitted on the
same rows as usual (its tails again stopping it early and calibrating it). Every row the study sees is a training
row of the fit, so a walk-forward that tunes each refit (:class:`TunedPooledExpert`) never shows a study the block
its refit decides.

Pruning is per epoch: before the next epoch trains, the expert's ``_before_epoch`` hook reports each finished
epoch's tail log loss to the trial (:meth:`optuna.Trial.report`) and stops the trial when a
:class:`optuna.pruners.MedianPruner` says so (:meth:`optuna.Trial.should_prune`). The expert is driven from outside
through ``get_params`` / ``set_params`` / ``fit``; the hook is filled in by a subclass (:func:`reporting_class`).

Everything runs in one process, a trial at a time, with a seeded TPE sampler; the expert's training is deterministic
for its ``random_state``, so the same rows and seed give the same trials and the same choice (unless ``timeout_s``
cuts a study short). The study can be kept in an Optuna RDB storage (``sqlite:///PATH``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Self

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, clone

from signal_engine.tuning.studies import fresh_study

SEARCHED = ("learning_rate", "hidden", "dropout", "embedding_dim")
HIDDEN_CHOICES = (8, 16, 32)
EMBEDDING_CHOICES = (2, 4, 8)


@dataclass(frozen=True)
class PooledTuningSettings:
    """The study's budget: ``trials`` per study (the first is the expert's own settings); the median pruner prunes
    nothing before ``startup_trials`` finished trials or ``warmup_epochs`` epochs; ``timeout_s``: no trial starts
    after this many seconds of the study (None: no limit)."""

    trials: int = 20
    startup_trials: int = 3
    warmup_epochs: int = 2
    seed: int = 7
    timeout_s: float | None = None


@dataclass(frozen=True)
class PooledTuningResult:
    """The chosen settings (to ``set_params`` on the expert), the study's figures and the rows it saw."""

    params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    study_name: str
    storage: str | None
    rows: dict[str, Any] = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        return math.isfinite(self.best_value)

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "best_value": self.best_value if self.tuned else None, "trials": self.trials,
                "pruned": self.pruned, "study_name": self.study_name, "storage": self.storage, "rows": self.rows}


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: Adam's learning rate, the dense head's units, its dropout and the series embedding's size
    (the window, the kernel bank and the epochs' rows stay as configured; the epochs come from early stopping)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
        "hidden": trial.suggest_categorical("hidden", HIDDEN_CHOICES),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "embedding_dim": trial.suggest_categorical("embedding_dim", EMBEDDING_CHOICES),
    }


def expert_params(expert: Any) -> dict[str, Any]:
    """The expert's own values of the searched settings (the study's first trial)."""
    params = expert.get_params()
    return {name: params[name] for name in SEARCHED}


def in_space(params: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``params`` that the search space holds (an out-of-space value is left to the sampler)."""
    inside = {"learning_rate": 1e-3 <= params["learning_rate"] <= 1e-2, "hidden": params["hidden"] in HIDDEN_CHOICES,
              "dropout": 0.0 <= params["dropout"] <= 0.3, "embedding_dim": params["embedding_dim"] in EMBEDDING_CHOICES}
    return {name: value for name, value in params.items() if inside[name]}


def report_epochs(expert: Any, trial: optuna.Trial, reported: int) -> int:
    """Report the epochs of ``expert.validation_curve_`` (the tails' log loss after each epoch) after the first
    ``reported`` to ``trial``; raise :class:`optuna.TrialPruned` when the trial's pruner says to stop. Returns how
    many epochs are reported now."""
    curve = list(getattr(expert, "validation_curve_", []))
    for epoch in range(reported + 1, len(curve) + 1):
        trial.report(curve[epoch - 1], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"tail log loss {curve[epoch - 1]:.4f} after epoch {epoch}")
    return max(reported, len(curve))


@cache
def reporting_class(expert_class: Any) -> Any:
    """A subclass of ``expert_class`` that, before each epoch trains, reports the epochs scored since to the
    instance's ``_trial`` (when set)."""

    class Reporting(expert_class):
        def _before_epoch(self, epoch: int) -> None:
            trial = getattr(self, "_trial", None)
            if trial is not None:
                self._reported = report_epochs(self, trial, getattr(self, "_reported", 0))

    Reporting.__name__ = Reporting.__qualname__ = f"Reporting{expert_class.__name__}"
    return Reporting


def trial_expert(expert: Any, params: dict[str, Any], trial: optuna.Trial | None) -> Any:
    """An unfitted copy of ``expert`` with ``params`` whose epochs are reported to ``trial``."""
    kind: Any = type(expert)
    copy = reporting_class(kind)(**{**expert.get_params(), **params})
    copy._trial = trial
    return copy


def objective(expert: Any, X: pd.DataFrame, y: np.ndarray) -> Any:
    """The trial's value: the best epoch's equal-weight mean over series of the validation tails' log loss of a copy
    of ``expert`` with the trial's settings fitted on ``X, y`` (NaN, a failed trial, when no series has a tail)."""

    def run(trial: optuna.Trial) -> float:
        model = trial_expert(expert, suggest(trial), trial).fit(X, y)
        trial.set_user_attr("epochs", int(model.epochs_run_))
        trial.set_user_attr("best_epoch", int(model.best_epoch_))
        trial.set_user_attr("fit_rows", {str(k): int(v) for k, v in model.fit_rows_per_series_.items()})
        trial.set_user_attr("tail_rows", {str(k): int(v) for k, v in model.validation_rows_per_series_.items()})
        curve = list(model.validation_curve_)
        return float(min(curve)) if curve else float("nan")

    return run


def create_study(name: str, storage: str | None, settings: PooledTuningSettings,
                 pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """A fresh minimising study (one of the same name in ``storage`` is replaced): seeded TPE, median pruner over
    epochs."""
    return fresh_study(name, storage, seed=settings.seed, startup_trials=settings.startup_trials,
                       warmup_steps=settings.warmup_epochs, pruner=pruner)


def rows_seen(X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """What the study was given: labelled rows and the last bar of each series (the study's user attributes)."""
    from signal_engine.archetypes.pooled_expert import SERIES_COLUMN

    labelled = np.asarray(y) >= 0
    names = X[SERIES_COLUMN].to_numpy().astype(str)
    return {"labelled": int(labelled.sum()),
            "last_bar": {name: pd.Timestamp(X.index[names == name].max()).isoformat()
                         for name in dict.fromkeys(names.tolist())}}


def tune_pooled_expert(expert: Any, X: pd.DataFrame, y: np.ndarray, *, settings: PooledTuningSettings,
                       name: str = "trend_pooled", storage: str | None = None,
                       pruner: optuna.pruners.BasePruner | None = None) -> PooledTuningResult:
    """Tune ``expert``'s searched settings (:func:`suggest`) on the rows it would be fitted on (``X`` with the
    ``series`` column, ``y`` -1 where a row is history only) and return the settings to set on it.

    Returns the expert's own settings (``best_value`` NaN) when no trial finished (every trial pruned or without a
    validation tail)."""
    from threadpoolctl import threadpool_limits

    own = expert_params(expert)
    study = create_study(name, storage, settings, pruner)
    seen = rows_seen(X, y)
    for key, value in seen.items():
        study.set_user_attr(key, value)
    study.enqueue_trial(in_space(own))
    with threadpool_limits(limits=1):
        study.optimize(objective(expert, X, y), n_trials=settings.trials, timeout=settings.timeout_s)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return PooledTuningResult(own, float("nan"), len(study.trials), pruned, name, storage, seen)
    best = study.best_trial
    rows = {**seen, "fit_rows": best.user_attrs["fit_rows"], "tail_rows": best.user_attrs["tail_rows"],
            "best_epoch": best.user_attrs["best_epoch"]}
    value = math.nan if best.value is None else float(best.value)
    return PooledTuningResult(dict(best.params), value, len(study.trials), pruned, name, storage, rows)


def fit_tuned_pooled(expert: Any, X: pd.DataFrame, y: np.ndarray, *, settings: PooledTuningSettings,
                     name: str = "trend_pooled", storage: str | None = None) -> tuple[Any, PooledTuningResult]:
    """One tuned fit: :func:`tune_pooled_expert` on the fit's rows, then a copy of ``expert`` (its own class) with
    the chosen settings fitted on the same rows. ``expert`` itself is left unfitted."""
    result = tune_pooled_expert(expert, X, y, settings=settings, name=name, storage=storage)
    return clone(expert).set_params(**result.params).fit(X, y), result


class TunedPooledExpert(BaseEstimator):
    """A pooled expert that tunes its settings at every fit, on the rows it is fitted on (nested by construction:
    the pooled walk-forward, which fits a clone at each refit date on the rows known then, tunes inside that refit's
    training rows only). ``model_`` is the fitted expert with the chosen settings, ``tuning_`` the study's record."""

    def __init__(self, expert: Any = None, trials: int = 20, timeout_s: float | None = None, seed: int = 7,
                 startup_trials: int = 3, warmup_epochs: int = 2, study_name: str = "trend_pooled") -> None:
        self.expert = expert
        self.trials = trials
        self.timeout_s = timeout_s
        self.seed = seed
        self.startup_trials = startup_trials
        self.warmup_epochs = warmup_epochs
        self.study_name = study_name

    def settings(self) -> PooledTuningSettings:
        return PooledTuningSettings(trials=self.trials, startup_trials=self.startup_trials,
                                    warmup_epochs=self.warmup_epochs, seed=self.seed, timeout_s=self.timeout_s)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        name = f"{self.study_name}@{pd.Timestamp(X.index.max()).isoformat()}"
        self.model_, result = fit_tuned_pooled(self.expert, X, y, settings=self.settings(), name=name)
        self.tuning_ = {"tuned": result.tuned, **result.to_dict()}
        return self

    def context_bars(self) -> int | None:
        bars: int | None = self.expert.context_bars()
        return bars

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(X))
