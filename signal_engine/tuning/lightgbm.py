"""Optuna tuning of the LightGBM trend expert on one training window, nested: the study never sees the bars the
tuned model will decide.

Given a training window's rows (features, known trend labels, each row's bar and the bar at whose close its label is
known), :func:`inner_split` holds out the last ``validation_fraction`` of the rows as an inner validation fold and
keeps as inner training rows only those whose label is known by the fold's first bar less ``embargo`` bars (the
label horizon is purged, as the outer walk-forward does at its refit bar). Each trial fits LightGBM on the inner
training rows and scores the multiclass log loss on the fold; boosting stops early on the fold and a
:class:`optuna.pruners.MedianPruner` stops trials whose log loss at a boosting step is worse than the median of the
earlier trials at that step. The best trial's parameters (its number of trees: the early-stopped best iteration) are
then set on the expert, which the caller fits on the whole window as usual (calibration included).

Everything runs in one process on one thread, with a seeded TPE sampler, so the same window and seed give the same
trials and the same choice. The study can be kept in an Optuna RDB storage (``sqlite:///PATH``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone

from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.tuning.studies import fresh_study

N_CLASSES = 3
MIN_INNER_ROWS = 100


@dataclass(frozen=True)
class TuningSettings:
    """The study's budget and search.

    ``trials``: Optuna trials per study (the first is the expert's own parameters); ``max_estimators`` and
    ``early_stopping_rounds``: each trial's boosting cap and patience on the inner fold; ``report_every``: boosting
    steps between reports to the pruner; ``startup_trials`` / ``warmup_steps``: the median pruner prunes nothing
    before that many finished trials or boosting steps; ``timeout_s``: no trial starts after this many seconds of the
    study (None: no limit; a study cut short by it chooses among fewer trials, so it is reproducible only when the
    limit is not reached).
    """

    trials: int = 20
    validation_fraction: float = 0.25
    embargo: int = 0
    max_estimators: int = 400
    early_stopping_rounds: int = 30
    report_every: int = 20
    startup_trials: int = 5
    warmup_steps: int = 40
    seed: int = 7
    timeout_s: float | None = None


@dataclass(frozen=True)
class InnerSplit:
    """Positions (into the window's rows) of the inner training rows and of the inner validation fold."""

    train: np.ndarray
    validation: np.ndarray


@dataclass(frozen=True)
class TuningResult:
    """The chosen parameters (to ``set_params`` on the expert), the study's figures and where it is stored."""

    params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int
    study_name: str
    storage: str | None
    split: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "best_value": self.best_value, "trials": self.trials, "pruned": self.pruned,
                "study_name": self.study_name, "storage": self.storage, "split": self.split}


def inner_split(bars: np.ndarray, known_at: np.ndarray, fraction: float, embargo: int) -> InnerSplit:
    """The last ``ceil(fraction x rows)`` rows form the fold; a row trains when its label is known by the fold's first
    bar less ``embargo`` (``known_at <= bars[first] - embargo``). ``bars`` must increase."""
    bars, known_at = np.asarray(bars), np.asarray(known_at)
    if len(bars) != len(known_at):
        raise ValueError("bars and known_at differ in length")
    if np.any(np.diff(bars) <= 0):
        raise ValueError("bars must increase")
    size = math.ceil(fraction * len(bars))
    if not 0 < size < len(bars):
        raise ValueError(f"a validation fraction of {fraction} leaves no fold or no training rows")
    validation = np.arange(len(bars) - size, len(bars))
    first = bars[validation[0]]
    train = np.flatnonzero((known_at <= first - embargo) & (np.arange(len(bars)) < validation[0]))
    return InnerSplit(train, validation)


def split_leaks(bars: np.ndarray, known_at: np.ndarray, split: InnerSplit, fit_bar: int, decide_start: int,
                embargo: int) -> list[str]:
    """What an inner split used that it should not have (empty when clean): a row after the outer fit bar or in the
    decided block, a row whose label is not known by the fit bar less the embargo, or an inner training label not
    known by the fold's first bar less the embargo."""
    found = []
    used = np.concatenate([split.train, split.validation])
    if len(used) and bars[used].max() > fit_bar:
        found.append(f"a row after the fit bar {fit_bar}")
    if len(used) and bars[used].max() >= decide_start:
        found.append(f"a row in the decided block (from bar {decide_start})")
    if len(used) and known_at[used].max() > fit_bar - embargo:
        found.append(f"a label known after the fit bar {fit_bar} less {embargo}")
    if len(split.train) and len(split.validation):
        first = bars[split.validation].min()
        if known_at[split.train].max() > first - embargo:
            found.append(f"an inner training label known after the fold's first bar {first} less {embargo}")
        if bars[split.train].max() >= first:
            found.append("an inner training row inside the fold")
    return found


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space (the trend expert's LightGBM settings; the number of trees comes from early stopping)."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 3, 31, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.2, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 300, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def expert_params(expert: GradientBoostedTrendExpert) -> dict[str, Any]:
    """The expert's own values of the searched settings (the study's first trial)."""
    return {name: getattr(expert, name) for name in ("num_leaves", "learning_rate", "min_child_samples",
                                                      "subsample", "colsample_bytree", "reg_lambda")}


def _pruning_callback(trial: optuna.Trial, every: int) -> Any:
    def report(env: Any) -> None:
        step = env.iteration + 1
        if step % every:
            return
        value = float(env.evaluation_result_list[0][2])
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"log loss {value:.4f} at {step} trees")

    return report


def _classifier(params: Mapping[str, Any], n_estimators: int, seed: int) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=n_estimators, subsample_freq=1, random_state=seed, n_jobs=1,
                              deterministic=True, force_row_wise=True, verbose=-1, **params)


def objective(matrix: np.ndarray, labels: np.ndarray, split: InnerSplit, settings: TuningSettings) -> Any:
    """The trial's value: the early-stopped LightGBM's multiclass log loss on the inner fold."""
    x_fit, y_fit = matrix[split.train], labels[split.train]
    x_val, y_val = matrix[split.validation], labels[split.validation]

    def run(trial: optuna.Trial) -> float:
        model = _classifier(suggest(trial), settings.max_estimators, settings.seed)
        model.fit(x_fit, y_fit, eval_X=(x_val,), eval_y=(y_val,), eval_metric="multi_logloss",
                  callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False),
                             _pruning_callback(trial, settings.report_every)])
        best = int(model.best_iteration_ or settings.max_estimators)
        trial.set_user_attr("n_estimators", best)
        return float(model.best_score_["valid_0"]["multi_logloss"])

    return run


def create_study(name: str, storage: str | None, settings: TuningSettings) -> optuna.Study:
    """A fresh minimising study (one of the same name in ``storage`` is replaced): seeded TPE, median pruner."""
    return fresh_study(name, storage, seed=settings.seed, startup_trials=settings.startup_trials,
                       warmup_steps=settings.warmup_steps)


def tune_trend_expert(expert: GradientBoostedTrendExpert, X: pd.DataFrame, y: np.ndarray, bars: np.ndarray,
                      known_at: np.ndarray, *, settings: TuningSettings, name: str = "trend",
                      storage: str | None = None) -> TuningResult:
    """Tune ``expert``'s LightGBM settings on one training window and return the parameters to set on it.

    ``X`` and ``y`` are the window's rows with a known label, ``bars`` each row's bar and ``known_at`` the bar at
    whose close its label is known (time-ordered). Returns the expert's own parameters (nothing tuned, 0 trials)
    when the inner split leaves fewer than 100 training rows or a class is missing from them.
    """
    labels = np.asarray(y, dtype=np.int64)
    split = inner_split(bars, known_at, settings.validation_fraction, settings.embargo)
    described = {"rows": len(labels), "inner_train": len(split.train), "validation": len(split.validation),
                 "validation_first_bar": int(bars[split.validation[0]]),
                 "inner_train_last_known_bar": int(known_at[split.train].max()) if len(split.train) else -1}
    if len(split.train) < MIN_INNER_ROWS or len(np.unique(labels[split.train])) < N_CLASSES:
        own = {**expert_params(expert), "n_estimators": expert.n_estimators}
        return TuningResult(own, float("nan"), 0, 0, name, storage, described)
    matrix = X.loc[:, list(expert.features)].to_numpy(dtype=float)
    study = create_study(name, storage, settings)
    for key, figure in described.items():
        study.set_user_attr(key, figure)
    study.enqueue_trial(expert_params(expert))
    study.optimize(objective(matrix, labels, split, settings), n_trials=settings.trials, timeout=settings.timeout_s)
    best = study.best_trial
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    params = {**best.params, "n_estimators": int(best.user_attrs["n_estimators"])}
    best_value = float("nan") if best.value is None else float(best.value)
    return TuningResult(params, best_value, len(study.trials), pruned, name, storage, described)


def tuned_expert(expert: GradientBoostedTrendExpert, result: TuningResult) -> GradientBoostedTrendExpert:
    """An unfitted copy of ``expert`` with the study's parameters."""
    tuned: GradientBoostedTrendExpert = clone(expert).set_params(**result.params)
    return tuned


def fit_tuned(expert: GradientBoostedTrendExpert, X: pd.DataFrame, y: np.ndarray, bars: np.ndarray,
              known_at: np.ndarray, *, settings: TuningSettings, name: str = "trend",
              storage: str | None = None) -> tuple[GradientBoostedTrendExpert, TuningResult]:
    """One refit, tuned: :func:`tune_trend_expert` on the training window's rows, then a copy of ``expert`` with the
    chosen parameters fitted on all of them (what the tuning study, ``train --tune``'s final fit and the training
    walk-forward's refits do). ``expert`` itself is left unfitted."""
    result = tune_trend_expert(expert, X, y, bars, known_at, settings=settings, name=name, storage=storage)
    return tuned_expert(expert, result).fit(X, y), result
