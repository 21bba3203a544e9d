"""`signal-engine train --tune` on real data (Alphabet daily bars): the trend expert's LightGBM settings chosen by an
Optuna study on that fit's training rows only (never a bar of the block the served model decides), recorded in the
bundle and the manifest, the study kept in the registry's SQLite file or a MariaDB storage, the same choice for the
same seed, and a clear error when Optuna is not installed."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from signal_engine.cli import main
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import ConfigError
from signal_engine.registry import load_experts, pack_artefact
from signal_engine.tuning import lightgbm
from signal_engine.tuning.lightgbm import inner_split, split_leaks
from signal_engine.workflow.sagemaker_env import JobEnvironment
from signal_engine.workflow.settings import training_settings
from signal_engine.workflow.training import train_expert
from signal_engine.workflow.tuning import TuningRun, sqlite_storage, tuning_section
from tests.fixtures.servers import mysql_url_or_skip
from tests.sagemaker_jobs_support import run_entry_point

FAST = {"walk_forward": {"refit_every": 504}}
LENIENT = {"max_sharpe_shortfall": 100.0, "max_confidence_ece": 1.0, "max_log_loss_excess": 100.0,
           "max_qlike_excess": 100.0}
TRIALS = 4
GOOG_BARS = 2148  # tests/conftest.py: goog_csv
SEARCHED = ("num_leaves", "learning_rate", "min_child_samples", "subsample", "colsample_bytree", "reg_lambda",
            "n_estimators")


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> PriceSeries:
    return load_prices(goog_csv, "GOOG")


@pytest.fixture(scope="module")
def tuned_train(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> tuple[int, Path, str]:
    """`train --tune` with a few trials, into a fresh registry."""
    root = tmp_path_factory.mktemp("tuned")
    config = root / "tuned.json"
    config.write_text(json.dumps({**FAST, "quality": LENIENT, "tuning": {"trials": TRIALS}}))
    code = main(["train", "--no-book", "--tune", "--prices", str(goog_csv), "--config", str(config),
                 "--registry", str(root / "models")])
    return code, root / "models", (root / "models" / "CURRENT").read_text().strip()


def test_a_tuned_train_serves_and_records_the_settings_it_chose(tuned_train: tuple[int, Path, str]) -> None:
    code, registry, version = tuned_train
    assert code == 0
    bundle = json.loads((registry / version / "bundle.json").read_text())
    record = bundle["tuning"]["trend"]["GOOG"]
    assert record["tuned"] and record["trials"] == TRIALS
    assert record["study_name"] == "trend/GOOG@2013-03-01T00:00:00"
    # the served expert was fitted with the chosen settings, and the manifest says so
    served = load_experts(registry / version / "experts")["trend/GOOG"]
    manifest = json.loads((registry / version / "experts" / "manifest.json").read_text())
    for name in SEARCHED:
        assert getattr(served, name) == record["params"][name] == manifest["experts"]["trend/GOOG"]["kwargs"][name]
    # the config's own settings are the study's first trial, and were recorded as the defaults
    assert record["defaults"] == {"num_leaves": 7, "learning_rate": 0.03, "min_child_samples": 100,
                                  "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "n_estimators": 100}


def test_the_study_is_kept_in_the_registry(tuned_train: tuple[int, Path, str]) -> None:
    _, registry, version = tuned_train
    record = json.loads((registry / version / "bundle.json").read_text())["tuning"]["trend"]["GOOG"]
    storage = f"sqlite:///{(registry / 'tuning' / 'optuna.db').resolve()}"
    assert record["storage"] == storage
    study = optuna.load_study(study_name=record["study_name"], storage=storage)
    assert len(study.trials) == TRIALS
    assert study.trials[0].params["num_leaves"] == 7  # the config's settings first
    best = {**study.best_trial.params, "n_estimators": study.best_trial.user_attrs["n_estimators"]}
    assert best == record["params"]
    from signal_engine.adapters.model_registry import LocalModelRegistry

    assert LocalModelRegistry(registry).versions() == [version], "the tuning folder is not a version"


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = lightgbm.tune_trend_expert

    def spy(expert: Any, X: Any, y: Any, bars: np.ndarray, known_at: np.ndarray, **kwargs: Any) -> Any:
        calls.append({"bars": np.asarray(bars), "known_at": np.asarray(known_at), "X": X, **kwargs})
        return real(expert, X, y, bars, known_at, **kwargs)

    monkeypatch.setattr(lightgbm, "tune_trend_expert", spy)
    return calls


def test_the_study_never_sees_the_block_the_tuned_expert_decides(goog: PriceSeries, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch)
    config, _ = training_settings("quick", {"walk_forward": {"embargo": 3}})
    train_expert("trend", [goog], config, tmp_path, tuning=TuningRun(enabled=True, trials=TRIALS))
    (call,) = calls
    bars, known_at, settings = call["bars"], call["known_at"], call["settings"]
    # fit at the last bar (2147) with an embargo of 3: a 5-bar label trains when known by bar 2144, so the last
    # training row is bar 2139; the served model decides from bar 2148 on
    assert bars.max() == GOOG_BARS - 9 and known_at.max() == GOOG_BARS - 4
    assert str(call["X"].index[-1]) == str(goog.bars.index[GOOG_BARS - 9])
    assert settings.embargo == 3 and settings.trials == TRIALS and settings.seed == config.seed
    split = inner_split(bars, known_at, settings.validation_fraction, settings.embargo)
    assert split_leaks(bars, known_at, split, fit_bar=GOOG_BARS - 1, decide_start=GOOG_BARS, embargo=3) == []
    # and the check would catch a study on the whole series (the decided bars' labels included)
    everything = np.arange(GOOG_BARS)
    leaky = inner_split(everything, everything + 5, settings.validation_fraction, 3)
    assert split_leaks(everything, everything + 5, leaky, fit_bar=GOOG_BARS - 1, decide_start=GOOG_BARS - 100,
                       embargo=3)


def test_a_tuned_train_is_reproducible_with_a_fixed_seed(goog: PriceSeries, tmp_path: Path) -> None:
    config, _ = training_settings("quick")
    tuning = TuningRun(enabled=True, trials=TRIALS)
    for name in ("a", "b"):
        train_expert("trend", [goog], config, tmp_path / name, tuning=tuning)
    manifests = [json.loads((tmp_path / n / "manifest.json").read_text())["experts"]["trend/GOOG"] for n in "ab"]
    assert manifests[0]["sha256"] == manifests[1]["sha256"], "the same model, bit for bit"
    records = [json.loads((tmp_path / n / "tuning.json").read_text())["trend"]["GOOG"] for n in "ab"]
    assert records[0]["params"] == records[1]["params"] and records[0]["best_value"] == records[1]["best_value"]
    assert records[0]["storage"] == sqlite_storage(tmp_path / "a"), "by default beside the experts (the job's model)"


def test_a_mariadb_storage_keeps_the_study_and_the_bundle_hides_its_password(goog: PriceSeries,
                                                                             tmp_path: Path) -> None:
    url = optuna_database(mysql_url_or_skip())
    config, _ = training_settings("quick")
    train_expert("trend", [goog], config, tmp_path, tuning=TuningRun(enabled=True, trials=TRIALS, storage=url))
    record = json.loads((tmp_path / "tuning.json").read_text())["trend"]["GOOG"]
    assert len(optuna.load_study(study_name=record["study_name"], storage=url).trials) == TRIALS
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    assert record["storage"] == (f"{parts.drivername}://{parts.username}:***@{parts.host}:{parts.port}/"
                                 f"{parts.database}")


def optuna_database(server: str) -> str:
    """A database of its own for Optuna's tables (``<test database>_optuna``), so the store tests that empty every
    table of theirs never meet them."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(server)
    name = f"{url.database}_optuna"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def test_without_optuna_tune_fails_before_any_work_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed: `import optuna` raises ImportError
    code = main(["train", "--dataset", "GOOG", "--tune", "--registry", str(tmp_path / "models")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--tune needs Optuna" in err and "pip install 'signal-engine[tune]'" in err
    assert not (tmp_path / "models").exists(), "nothing was trained or written"


def test_tune_storage_needs_tune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--dataset", "GOOG", "--tune-storage", "sqlite:///x.db", "--registry", str(tmp_path)])
    assert code == 2 and "--tune-storage" in capsys.readouterr().err


@pytest.mark.parametrize(("section", "problem"), [
    ({"trials": 0}, "'tuning.trials' is 0"),
    ({"timeout_s": -1}, "'tuning.timeout_s' is -1"),
    ({"storage": "mysql+pymysql://u:p@h/db"}, "unknown key(s) ['storage']"),
    ("yes", "'tuning' must be a mapping"),
])
def test_a_bad_tuning_section_is_named(section: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=None) as raised:
        tuning_section({"tuning": section}, "cfg.yaml")
    assert problem in str(raised.value) and str(raised.value).startswith("cfg.yaml: ")


def test_the_tuning_section_sets_trials_and_timeout() -> None:
    assert tuning_section({"tuning": {"enabled": True, "trials": 7, "timeout_s": None}}, "x") == TuningRun(
        enabled=True, trials=7, timeout_s=None)
    assert tuning_section({}, "x") == TuningRun(enabled=False, trials=20, timeout_s=300.0)


@pytest.mark.parametrize(("hps", "enabled", "trials"), [
    ({"tune": True}, True, 20),
    ({"tune": False}, False, 20),
    ({}, False, 20),
    ({"tune": "false", "config": {"tuning": {"enabled": True, "trials": 3}}}, True, 3),
    ({"tune": True, "config": {"tuning": {"trials": 3}}}, True, 3),
])
def test_the_job_tunes_when_the_workflow_sends_tune_true(tmp_path: Path, hps: dict[str, Any], enabled: bool,
                                                         trials: int) -> None:
    """SM_HPS as the toolkit sets it: the workflow's "true" json-decoded to true, the config object decoded."""
    env = {"SM_MODEL_DIR": str(tmp_path), "SM_HPS": json.dumps({"profile": "quick", **hps})}
    tuning = JobEnvironment.from_env(env, argv=[]).tuning()
    assert (tuning.enabled, tuning.trials, tuning.storage) == (enabled, trials, None)


def test_a_job_with_a_bad_tune_value_names_it(tmp_path: Path) -> None:
    env = {"SM_MODEL_DIR": str(tmp_path), "SM_HPS": json.dumps({"tune": "yes"})}
    with pytest.raises(ConfigError, match="hyperparameter 'tune' is 'yes'; expected true or false"):
        JobEnvironment.from_env(env, argv=[]).tuning()


def test_a_linear_trend_expert_is_fitted_untuned_and_says_why(goog: PriceSeries, tmp_path: Path) -> None:
    config, _ = training_settings("quick", {"moe": {"experts": {"trend": "trend_linear"}}})
    train_expert("trend", [goog], config, tmp_path, tuning=replace(TuningRun(), enabled=True, trials=TRIALS))
    record = json.loads((tmp_path / "tuning.json").read_text())["trend"]["GOOG"]
    assert record == {"tuned": False, "reason": "LogisticTrendExpert has no LightGBM settings to tune"}


def test_a_tuned_trend_job_without_optuna_fails_naming_the_extra(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before it reads its channels: an image built without the tune extra fails the job in a second."""
    from sagemaker_jobs import train_expert as job

    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("SM_HPS", json.dumps({"expert": "trend", "tune": True, "profile": "quick"}))
    with pytest.raises(ConfigError, match=r"hyperparameter 'tune' needs Optuna, which is not installed: "
                                          r"pip install 'signal-engine\[tune\]'"):
        job.main([])


# -- the walk-forward whose metrics the quality gate reads, tuned at every refit --------------------------------

# FAST on GOOG's 2,148 bars: refits at bars 504, 1008, 1512 and 2016 (initial_window 504, every 504 bars)
REFITS = (504, 1008, 1512, 2016)
TEST_START = 756  # initial_window 504 + validation_bars 252
HORIZON = 5


@dataclass(frozen=True)
class TunedWalkForward:
    result: Any  # SymbolResult
    studies: list[dict[str, Any]]  # what each tune_trend_expert call was given and returned
    splits: list[Any]  # the inner split each objective scored trials on


@pytest.fixture(scope="module")
def tuned_walk_forward(goog: PriceSeries) -> TunedWalkForward:
    """The MoE's walk-forward of GOOG with tuning on (FAST, 4 trials a refit), every study and objective spied on."""
    from signal_engine.evaluation.backtest import run_symbol

    studies: list[dict[str, Any]] = []
    splits: list[Any] = []
    real_tune, real_objective = lightgbm.tune_trend_expert, lightgbm.objective

    def tune(expert: Any, X: Any, y: Any, bars: np.ndarray, known_at: np.ndarray, **kwargs: Any) -> Any:
        result = real_tune(expert, X, y, bars, known_at, **kwargs)
        studies.append({"bars": np.asarray(bars), "known_at": np.asarray(known_at), "X": X, "result": result,
                        **kwargs})
        return result

    def objective(matrix: np.ndarray, labels: np.ndarray, split: Any, settings: Any) -> Any:
        splits.append(split)
        return real_objective(matrix, labels, split, settings)

    config, _ = training_settings("quick", FAST)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lightgbm, "tune_trend_expert", tune)
        mp.setattr(lightgbm, "objective", objective)
        result = run_symbol(goog, config, tuning=TuningRun(enabled=True, trials=TRIALS))
    return TunedWalkForward(result, studies, splits)


def test_every_refit_of_the_walk_forward_is_tuned_on_rows_before_it_only(tuned_walk_forward: TunedWalkForward,
                                                                         goog: PriceSeries) -> None:
    studies, splits = tuned_walk_forward.studies, tuned_walk_forward.splits
    assert len(studies) == len(splits) == len(REFITS), "one study, and one objective, per refit"
    for refit, study, split in zip(REFITS, studies, splits, strict=True):
        bars, known_at = study["bars"], study["known_at"]
        # fit at bar `refit` (embargo 0): a 5-bar label trains when known by that bar, so the last row is refit - 5
        assert bars.max() == refit - HORIZON and known_at.max() == refit
        assert str(study["X"].index[-1]) == str(goog.bars.index[refit - HORIZON])
        assert study["name"] == f"trend/GOOG@{goog.bars.index[refit].isoformat()}" and study["storage"] is None
        assert study["settings"].trials == TRIALS and study["settings"].embargo == 0
        seen = bars[np.concatenate([split.train, split.validation])]
        assert seen.max() < refit, "the objective scored no row of the block the refit decides"
        assert known_at[split.train].max() <= bars[split.validation].min(), "inner training labels known by the fold"
        assert split_leaks(bars, known_at, split, fit_bar=refit, decide_start=refit, embargo=0) == []


def test_each_refit_decides_its_block_with_the_settings_its_own_study_chose(tuned_walk_forward: TunedWalkForward,
                                                                            goog: PriceSeries) -> None:
    """Refitted here by hand with each study's best settings on the rows known at that refit, the expert gives the
    walk-forward's probabilities of its block's test bars; with the config's settings it would not."""
    from signal_engine import components
    from signal_engine.evaluation.backtest import series_frame
    from signal_engine.labels import make_labels

    config, _ = training_settings("quick", FAST)
    frame = series_frame(goog)
    labels = make_labels(goog.bars, frame["vol30"].to_numpy(), horizon=HORIZON, threshold=config.labels.threshold)
    signals = tuned_walk_forward.result.signals
    records = tuned_walk_forward.result.diagnostics["tuning"]
    assert len(records) == len(REFITS)
    differs = []
    for refit, stop, study, record in zip(REFITS, (*REFITS[1:], GOOG_BARS), tuned_walk_forward.studies, records,
                                          strict=True):
        assert record["tuned"] and record["trials"] == TRIALS
        assert record["params"] == study["result"].params, "the walk-forward kept what its own study chose"
        rows = np.flatnonzero((np.arange(GOOG_BARS) + HORIZON <= refit) & (labels.trend >= 0))
        start = max(refit, TEST_START)
        served = signals[["p_down", "p_neutral", "p_up"]].to_numpy()[start - TEST_START: stop - TEST_START]
        tuned = components.trend_expert(config).set_params(**record["params"]).fit(frame.iloc[rows],
                                                                                 labels.trend[rows])
        np.testing.assert_allclose(tuned.predict_proba(frame.iloc[start:stop]), served, rtol=0, atol=1e-12)
        default = components.trend_expert(config).fit(frame.iloc[rows], labels.trend[rows])
        differs.append(not np.allclose(default.predict_proba(frame.iloc[start:stop]), served))
    assert any(differs), "some refit's study chose other settings than the config's"


def test_the_quality_gate_of_a_tuned_train_reads_the_tuned_walk_forward(
        tuned_train: tuple[int, Path, str], tuned_walk_forward: TunedWalkForward) -> None:
    """`train --tune`: the metrics the quality gate judged are the tuned walk-forward's, and say so with the budget
    each refit had (bundle.json too)."""
    _, registry, version = tuned_train
    metrics = json.loads((registry / version / "metrics.json").read_text())
    walked = tuned_walk_forward.result.metrics
    assert metrics["per_symbol"]["GOOG"]["trend"] == json.loads(json.dumps(walked["trend"]))
    expected = {"expert": "trend", "every_refit": True, "trials": TRIALS, "timeout_s": 300.0,
                "refits": {"GOOG": {"refits": 4, "tuned": 4, "trials": 16}}}
    assert metrics["tuning"] == expected
    assert len(metrics["per_symbol"]["GOOG"]["diagnostics"]["tuning"]) == 4
    check = {c["name"]: c for c in metrics["quality"]["symbols"]["GOOG"]["checks"]}["trend_log_loss_vs_prior"]
    assert check["value"] == pytest.approx(walked["trend"]["trend_calibrated"]["log_loss"]
                                           - walked["trend"]["baseline_majority"]["log_loss"])
    bundle = json.loads((registry / version / "bundle.json").read_text())
    assert bundle["tuning"]["walk_forward"] == expected and "GOOG" in bundle["tuning"]["trend"]


def test_a_train_without_tuning_leaves_no_tuning_trace(goog: PriceSeries) -> None:
    """Tuning off: the walk-forward's diagnostics have no tuning record (its outputs are the untuned ones)."""
    from signal_engine.evaluation import backtest

    config, _ = training_settings("quick", {"walk_forward": {"refit_every": 2016}})
    result = backtest.run_symbol(goog, config, tuning=TuningRun(enabled=False, trials=TRIALS))
    assert "tuning" not in result.diagnostics


# -- the SageMaker jobs: train_gate walks forward tuned, evaluate judges it and refuses a mismatch ---------------

@dataclass(frozen=True)
class TunedJobs:
    dataset: Path
    experts: Path
    gate: Path
    bundle: Path
    report: dict[str, Any]
    log: str


def _hyperparameters(**extra: str) -> dict[str, str]:
    config = {**FAST, "quality": LENIENT, "tuning": {"trials": TRIALS}}
    return {"symbols": json.dumps(["GOOG"]), "profile": "quick", "config": json.dumps(config), "start": "", "end": "",
            "book": "false", "jobs": "1", **extra}


@pytest.fixture(scope="module")
def tuned_jobs(tmp_path_factory: pytest.TempPathFactory, goog_csv: Path) -> TunedJobs:
    """prepare -> train_expert (each sent tune=true) -> train_gate (tune=true) -> evaluate, as the workflow chains
    them for an execution input with "tune": true."""
    from sagemaker_jobs import evaluate, prepare, train_expert, train_gate

    root = tmp_path_factory.mktemp("tuned-jobs")
    raw = root / "raw"
    raw.mkdir()
    (raw / "GOOG.csv").write_bytes(goog_csv.read_bytes())
    report = root / "report.json"
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(log):
        dataset = run_entry_point(prepare, mp, root / "prepare" / "model", {"raw": raw}, _hyperparameters())
        for expert in ("trend", "levels", "volatility"):  # each packed as the workflow stores it in S3
            model = run_entry_point(train_expert, mp, root / "jobs" / expert / "model", {"dataset": dataset},
                                    _hyperparameters(expert=expert, tune="true"))
            (root / "experts" / expert).mkdir(parents=True)
            pack_artefact(model, root / "experts" / expert / "model.tar.gz")
        gate = run_entry_point(train_gate, mp, root / "gate" / "model", {"dataset": dataset},
                               _hyperparameters(tune="true"))
        bundle = run_entry_point(evaluate, mp, root / "evaluate" / "model",
                                 {"dataset": dataset, "gate": gate, "experts": root / "experts"},
                                 _hyperparameters(registry=str(root / "registry"), report=str(report)))
    return TunedJobs(dataset, root / "experts", gate, bundle, json.loads(report.read_text()), log.getvalue())


def test_the_tuned_gate_job_walks_forward_tuned_and_the_evaluate_job_judges_that(
        tuned_jobs: TunedJobs, tuned_walk_forward: TunedWalkForward) -> None:
    assert "walk-forward tuned at every refit: trials=4 timeout_s=300.0 refits=4" in tuned_jobs.log
    gate_metrics = json.loads((tuned_jobs.gate / "metrics.json").read_text())
    expected = {"expert": "trend", "every_refit": True, "trials": TRIALS, "timeout_s": 300.0,
                "refits": {"GOOG": {"refits": 4, "tuned": 4, "trials": 16}}}
    assert gate_metrics["tuning"] == expected
    # the same walk-forward as run_symbol's with tuning on, so the quality gate's checks are the tuned procedure's
    walked = tuned_walk_forward.result.metrics
    metrics = json.loads((tuned_jobs.bundle / "metrics.json").read_text())
    assert metrics["per_symbol"]["GOOG"]["trend"] == json.loads(json.dumps(walked["trend"]))
    check = {c["name"]: c for c in tuned_jobs.report["checks"]}["trend_log_loss_vs_prior"]
    assert check["value"] == pytest.approx(walked["trend"]["trend_calibrated"]["log_loss"]
                                           - walked["trend"]["baseline_majority"]["log_loss"])
    bundle = json.loads((tuned_jobs.bundle / "bundle.json").read_text())
    assert bundle["tuning"]["walk_forward"] == expected and bundle["tuning"]["trend"]["GOOG"]["tuned"]


def test_the_evaluate_job_refuses_a_tuned_expert_judged_by_an_untuned_walk_forward(
        tuned_jobs: TunedJobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate artefact walked forward without tuning (here: its metrics without the tuning section) and a tuned trend
    artefact: the quality gate would judge another procedure than the one served."""
    from sagemaker_jobs import evaluate

    gate = tmp_path / "gate"
    shutil.copytree(tuned_jobs.gate, gate)
    metrics = json.loads((gate / "metrics.json").read_text())
    del metrics["tuning"]
    (gate / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ConfigError, match=r"the trend expert was tuned .* but the walk-forward whose metrics "
                                          r"the quality gate reads was not"):
        run_entry_point(evaluate, monkeypatch, tmp_path / "evaluate" / "model",
                        {"dataset": tuned_jobs.dataset, "gate": gate, "experts": tuned_jobs.experts},
                        _hyperparameters(registry=str(tmp_path / "registry"), report=str(tmp_path / "report.json")))


def test_the_tuned_gate_job_refuses_an_untuned_backtest_fan_out(tuned_jobs: TunedJobs, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sagemaker_jobs import train_gate

    with pytest.raises(ConfigError, match="hyperparameter 'tune' is true, but the walkforward channel's batches"):
        run_entry_point(train_gate, monkeypatch, tmp_path / "gate" / "model",
                        {"dataset": tuned_jobs.dataset, "walkforward": tuned_jobs.gate / "walkforward"},
                        _hyperparameters(tune="true"))
