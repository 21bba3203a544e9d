"""Optuna tuning of the pooled trend network (``signal_engine.tuning.keras``): the study's objective sees only the
fit's own rows (none of the block a refit decides), it scores the validation tails the expert holds out, trials are
pruned per epoch, the chosen settings are the final fit's, and nothing on the CLI's import path imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import numpy as np
import optuna
import pandas as pd
import pytest

from signal_engine.archetypes.pooled_expert import PooledKernelTrendExpert
from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation.pooled_walkforward import (
    PanelSeries,
    PooledBlock,
    leaks,
    panel_series,
    pooled_out_of_sample,
)
from signal_engine.tuning.keras import (
    SEARCHED,
    PooledTuningSettings,
    TunedPooledExpert,
    fit_tuned_pooled,
    tune_pooled_expert,
)

pytestmark = pytest.mark.tensorflow

HORIZON, EMBARGO = 5, 2
SMALL = {"window": 16, "samples_per_series": 64, "max_epochs": 2, "patience": 2, "batch_size": 32,
         "min_series_rows": 50, "purge": HORIZON}
DEFAULTS = {"learning_rate": 3e-3, "hidden": 16, "dropout": 0.1, "embedding_dim": 4}
Fit = tuple[pd.DataFrame, np.ndarray, dict[str, Any]]  # the rows, labels and settings a fit was given
FITS: list[Fit] = []


class Recording(PooledKernelTrendExpert):
    """The pooled expert, keeping every fit's rows and settings in ``FITS``."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        FITS.append((X, np.asarray(y), self.get_params()))
        return super().fit(X, y)


def _series(name: str, n: int, seed: int) -> PanelSeries:
    """A random walk whose label is the sign class of the next ``HORIZON`` bars' return (-1 for the last ones)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    frame = pd.DataFrame({"open": close, "high": close * 1.005, "low": close * 0.995, "close": close,
                          "volume": rng.uniform(1e6, 2e6, n)}, index=pd.bdate_range("2001-01-01", periods=n))
    forward = np.log(close[HORIZON:] / close[:-HORIZON]) / (0.01 * np.sqrt(HORIZON))
    labels = np.concatenate((np.digitize(forward, [-0.5, 0.5]), np.full(HORIZON, -1)))
    return panel_series(name, frame, labels, np.arange(n) + HORIZON)


def _rows(panel: dict[str, PanelSeries]) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([s.frame for s in panel.values()]), np.concatenate([s.trend for s in panel.values()])


@pytest.fixture(scope="module")
def panel() -> dict[str, PanelSeries]:
    return {"A": _series("A", 300, 1), "B": _series("B", 260, 2)}


@pytest.fixture(scope="module")
def final(panel: dict[str, PanelSeries],
          tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Recording, Any, str, list[Fit]]:
    """``fit_tuned_pooled`` on every row of the panel, a two-trial study kept in SQLite: the expert given, the fitted
    one, the result, the storage and the recorded fits (the two trials', then the final fit's)."""
    X, y = _rows(panel)
    storage = f"sqlite:///{tmp_path_factory.mktemp('final') / 'optuna.db'}"
    expert = Recording(**SMALL)
    FITS.clear()
    fitted, result = fit_tuned_pooled(expert, X, y, settings=PooledTuningSettings(trials=2, seed=11), name="final",
                                      storage=storage)
    return expert, fitted, result, storage, list(FITS)


def test_the_study_scores_the_validation_tails_of_the_fit_rows(panel: dict[str, PanelSeries], final: Any) -> None:
    X, y = _rows(panel)
    _, _, result, _, fits = final
    # A: labels at rows 0..294, a full 16-bar window from row 15: 280 rows; the tail is the last ceil(0.25 x 280) = 70
    # (rows 225..294), the trial trains on rows before 225 - 5 (purge): 15..219, 205 rows. B: 240 rows, tail 60
    # (195..254), training rows 15..189: 175
    assert result.rows["tail_rows"] == {"A": 70, "B": 60}
    assert result.rows["fit_rows"] == {"A": 205, "B": 175}
    assert result.rows["labelled"] == 295 + 255
    assert len(fits) == result.trials + 1 == 3  # two trials, then the final fit
    for seen, labels, _ in fits:  # every trial and the final fit were given exactly the fit's rows
        pd.testing.assert_frame_equal(seen, X)
        np.testing.assert_array_equal(labels, y)


def test_each_refit_of_the_pooled_walk_forward_is_tuned_on_its_own_training_rows_only(
        panel: dict[str, PanelSeries]) -> None:
    config = WalkForwardConfig(initial_window=200, validation_bars=0, refit_every=50, min_test_bars=0,
                               embargo=EMBARGO)
    expert = TunedPooledExpert(Recording(**{**SMALL, "max_epochs": 1}), trials=2, seed=1)
    refits: list[tuple[PooledBlock, Any, list[Fit]]] = []

    def keep(block: PooledBlock, model: Any) -> None:
        refits.append((block, model, list(FITS)))
        FITS.clear()

    FITS.clear()
    pooled_out_of_sample(panel, expert, config, on_fit=keep)
    assert len(refits) == 2  # refit dates at the 201st and the 251st date of the calendar
    for block, model, fits in refits:
        assert len(fits) == 3  # two trials, then the final fit
        for X, y, _ in fits:
            assert leaks(panel, block, X, y, EMBARGO) == []
            for name, (start, _) in block.decide.items():
                # inputs end at the first decided bar (decided at its close); no label of a decided bar, or known
                # after that bar less the embargo, reached a study: the last labelled row is start - 5 - 2
                mine = X["series"].to_numpy() == name
                assert X.index[mine].max() == panel[name].frame.index[start]
                labelled = panel[name].frame.index.get_indexer(X.index[mine & (y >= 0)])
                assert labelled.max() == start - HORIZON - EMBARGO
            pd.testing.assert_frame_equal(X, fits[0][0])
        chosen = model.tuning_["params"]
        assert {k: fits[-1][2][k] for k in SEARCHED} == chosen  # the final fit has the study's settings
        assert {k: model.model_.get_params()[k] for k in SEARCHED} == chosen
        assert model.tuning_["study_name"] == f"trend_pooled@{block.fit_date.isoformat()}"
    assert any(model.tuning_["params"] != DEFAULTS for _, model, _ in refits)  # a choice that is not the first trial's


def test_trials_worse_than_the_median_are_pruned_after_an_epoch(panel: dict[str, PanelSeries],
                                                                 tmp_path: Path) -> None:
    X, y = _rows(panel)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    expert = PooledKernelTrendExpert(**{**SMALL, "max_epochs": 3, "patience": 3})
    settings = PooledTuningSettings(trials=2, startup_trials=1, warmup_epochs=0, seed=0)
    result = tune_pooled_expert(expert, X, y, settings=settings, name="pruning", storage=storage)
    trials = optuna.load_study(study_name="pruning", storage=storage).trials
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert result.pruned == len(pruned) >= 1
    # a trial is judged as the next epoch begins: a pruned one reported epoch 1 or 2 and never trained the 3rd
    assert all(max(t.intermediate_values) in (1, 2) for t in pruned)
    assert trials[0].state == optuna.trial.TrialState.COMPLETE and trials[0].params == DEFAULTS


def test_when_every_trial_is_pruned_the_expert_keeps_its_own_settings(panel: dict[str, PanelSeries]) -> None:
    X, y = _rows(panel)
    expert = PooledKernelTrendExpert(**SMALL)
    result = tune_pooled_expert(expert, X, y, settings=PooledTuningSettings(trials=2),
                                pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    assert (result.trials, result.pruned, result.tuned) == (2, 2, False)
    assert result.params == DEFAULTS and result.to_dict()["best_value"] is None


def test_the_final_fit_takes_the_best_trials_settings(panel: dict[str, PanelSeries], final: Any) -> None:
    X, _ = _rows(panel)
    expert, fitted, result, storage, fits = final
    best = optuna.load_study(study_name="final", storage=storage).best_trial
    assert result.params == best.params and result.best_value == pytest.approx(best.value)
    assert {k: fitted.get_params()[k] for k in SEARCHED} == best.params != DEFAULTS  # not the first trial's
    assert {k: fits[-1][2][k] for k in SEARCHED} == best.params  # the recorded final fit, after the trials
    assert type(fitted) is Recording and fitted is not expert and not hasattr(expert, "weights_")
    assert fitted.predict_proba(X).shape == (len(X), 3)


def test_the_cli_and_the_workflow_do_not_import_optuna_or_tensorflow_nor_does_the_keras_tuner() -> None:
    code = ("import sys, signal_engine.cli, signal_engine.workflow.training, signal_engine.workflow.tuning; "
            "print('optuna' in sys.modules, 'tensorflow' in sys.modules); "
            "import signal_engine.tuning.keras; print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["False", "False", "False"]
