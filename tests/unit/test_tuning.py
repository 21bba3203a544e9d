"""Optuna tuning of the LightGBM trend expert: the inner split by hand, no study reaching the block it is applied
to (planted leaks caught), determinism for a seed, the trials in the SQLite storage, pruning on, lazy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.tuning.lightgbm import (
    InnerSplit,
    TuningSettings,
    inner_split,
    split_leaks,
    tune_trend_expert,
    tuned_expert,
)

FEATURES = ("a", "b", "c")
FAST = TuningSettings(trials=6, max_estimators=60, early_stopping_rounds=10, report_every=5, startup_trials=2,
                      warmup_steps=5, seed=3)


def _window(rows: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A time-ordered window: the class is ``a`` plus noise cut in three; each label known 5 bars on."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=list(FEATURES))
    y = np.digitize(X["a"].to_numpy() + rng.normal(size=rows), [-0.5, 0.5])
    bars = np.arange(rows)
    return X, y, bars, bars + 5


def _expert() -> GradientBoostedTrendExpert:
    return GradientBoostedTrendExpert(features=FEATURES, calibration="platt", min_child_samples=20)


def test_inner_split_by_hand() -> None:
    # 10 rows on bars 0..9, labels known 2 bars on; fold = last ceil(0.3 x 10) = 3 rows (bars 7, 8, 9); with an
    # embargo of 1 a row trains when its label is known by bar 7 - 1 = 6: bars 0..4 (known at 2..6).
    bars = np.arange(10)
    split = inner_split(bars, bars + 2, 0.3, 1)
    assert split.validation.tolist() == [7, 8, 9]
    assert split.train.tolist() == [0, 1, 2, 3, 4]


def test_inner_split_reads_bars_not_positions() -> None:
    # rows on bars 0, 1, 2, 10, 11, 12, 13, 14; fold = last 2 rows (bars 13, 14); labels known 3 bars on, embargo 0:
    # a row trains when known by bar 13: bars 0, 1, 2, 10 (known at 3, 4, 5, 13), not 11 (14) or 12 (15).
    bars = np.array([0, 1, 2, 10, 11, 12, 13, 14])
    split = inner_split(bars, bars + 3, 0.25, 0)
    assert split.validation.tolist() == [6, 7]
    assert split.train.tolist() == [0, 1, 2, 3]


def test_the_inner_split_of_a_walk_forward_window_never_reaches_the_block() -> None:
    # the outer walk-forward at fit bar 599 with embargo 2 trains on rows known by bar 597: bars 0..592; the block
    # decided is bars 599 on
    bars = np.arange(800)
    known_at = bars + 5
    window = bars[known_at <= 599 - 2]
    split = inner_split(window, known_at[window], 0.25, 2)
    assert split_leaks(window, known_at[window], split, fit_bar=599, decide_start=599, embargo=2) == []


@pytest.mark.parametrize(("planted", "message"), [
    ("fold reaches the block", "decided block"),
    ("label known after the fit bar", "after the fit bar"),
    ("unpurged inner training row", "fold's first bar"),
])
def test_planted_leaks_are_caught(planted: str, message: str) -> None:
    bars = np.arange(800)
    known_at = bars + 5
    window = bars[known_at <= 597]
    clean = inner_split(window, known_at[window], 0.25, 2)
    if planted == "fold reaches the block":
        # the split made on the whole series, block included
        split = inner_split(bars, known_at, 0.25, 2)
        rows_bars, rows_known = bars, known_at
    elif planted == "label known after the fit bar":
        # the window's last labels are those of bars up to 596 (known at 601 > 599 - 2)
        rows_bars = bars[known_at <= 601]
        rows_known = known_at[known_at <= 601]
        split = inner_split(rows_bars, rows_known, 0.25, 2)
    else:
        # the inner training rows run up to the fold with no purge
        split = InnerSplit(np.arange(clean.validation[0]), clean.validation)
        rows_bars, rows_known = window, known_at[window]
    found = split_leaks(rows_bars, rows_known, split, fit_bar=599, decide_start=599, embargo=2)
    assert any(message in line for line in found), found


def test_same_seed_same_study_and_choice(tmp_path: Path) -> None:
    X, y, bars, known_at = _window()
    first = tune_trend_expert(_expert(), X, y, bars, known_at, settings=FAST, name="one")
    second = tune_trend_expert(_expert(), X, y, bars, known_at, settings=FAST, name="two",
                               storage=f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert first.params == second.params
    assert first.best_value == second.best_value
    model_a = tuned_expert(_expert(), first).fit(X, y)
    model_b = tuned_expert(_expert(), second).fit(X, y)
    np.testing.assert_array_equal(model_a.predict_proba(X), model_b.predict_proba(X))


def test_storage_holds_every_trial_and_the_split(tmp_path: Path) -> None:
    X, y, bars, known_at = _window()
    storage = f"sqlite:///{tmp_path / 'studies.sqlite3'}"
    result = tune_trend_expert(_expert(), X, y, bars, known_at, settings=FAST, name="MSFT@1990-01-02",
                               storage=storage)
    study = optuna.load_study(study_name="MSFT@1990-01-02", storage=storage)
    assert len(study.trials) == FAST.trials == result.trials
    # the first trial is the expert's own settings
    assert study.trials[0].params["num_leaves"] == 7
    assert study.trials[0].params["learning_rate"] == 0.03
    # 600 rows: fold = the last 150 (bars 450..599); inner training rows known by bar 450: bars 0..445
    assert study.user_attrs["validation"] == 150
    assert study.user_attrs["validation_first_bar"] == 450
    assert study.user_attrs["inner_train"] == 446
    assert study.user_attrs["inner_train_last_known_bar"] == 450
    # a second run of the same name replaces the study instead of adding to it
    tune_trend_expert(_expert(), X, y, bars, known_at, settings=FAST, name="MSFT@1990-01-02", storage=storage)
    assert len(optuna.load_study(study_name="MSFT@1990-01-02", storage=storage).trials) == FAST.trials


def test_pruning_is_on() -> None:
    X, y, bars, known_at = _window(seed=1)
    eager = TuningSettings(trials=12, max_estimators=60, early_stopping_rounds=60, report_every=5, startup_trials=1,
                           warmup_steps=0, seed=3)
    result = tune_trend_expert(_expert(), X, y, bars, known_at, settings=eager)
    assert result.pruned > 0


def test_too_few_inner_rows_keep_the_defaults() -> None:
    # 120 rows: fold 30, inner training rows 85 < 100
    X, y, bars, known_at = _window(rows=120)
    result = tune_trend_expert(_expert(), X, y, bars, known_at, settings=FAST)
    assert result.trials == 0
    assert result.params == {"num_leaves": 7, "learning_rate": 0.03, "min_child_samples": 20, "subsample": 0.8,
                             "colsample_bytree": 0.8, "reg_lambda": 1.0, "n_estimators": 100}


def test_serving_and_the_cli_do_not_import_optuna() -> None:
    code = ("import sys, signal_engine.cli, signal_engine.serving.service, signal_engine.evaluation.tuning_study; "
            "print('optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_self_tuning_expert_tunes_on_what_it_is_fitted_on(tmp_path: Path) -> None:
    import pickle

    from signal_engine.tuning.trend_expert import TunedTrendExpert

    X, y, bars, known_at = _window()
    X.index = pd.bdate_range("2020-01-01", periods=len(X))
    storage = f"sqlite:///{tmp_path / 'trend.sqlite3'}"
    expert = TunedTrendExpert(features=FEATURES, calibration="platt", min_child_samples=20, tune_trials=4,
                              random_state=3, tune_storage=storage).fit(X, y)
    # the same study as tuning the plain expert on the same rows (labels known 5 bars on: the expert's purge)
    direct = tune_trend_expert(_expert().set_params(random_state=3), X, y, bars, known_at,
                               settings=TuningSettings(trials=4, seed=3))
    assert expert.tuning_["params"] == direct.params
    assert expert.num_leaves == 7  # the constructor's settings are kept; the chosen ones are in tuning_
    proba = pickle.loads(pickle.dumps(expert)).predict_proba(X.iloc[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert optuna.get_all_study_names(storage) == [f"trend@{X.index[-1]}"]
