"""The training workflow's domain parts: the step list, the quality gate, settings, the local model registry,
the SageMaker job environment and the hand launcher (with the SDK absent and with fake SDK classes)."""

from __future__ import annotations

import builtins
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.cli import main
from signal_engine.config import PROFILES
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError, InputError
from signal_engine.workflow.local import LocalRunner
from signal_engine.workflow.quality import QualityConfig, decide
from signal_engine.workflow.sagemaker_env import JobEnvironment, failure_file, run_job
from signal_engine.workflow.sagemaker_launch import (
    INSTALL_HINT,
    JobRequest,
    SageMakerSDKMissing,
    sagemaker_sdk,
    start_training_job,
)
from signal_engine.workflow.settings import training_settings
from signal_engine.workflow.steps import STEPS, step
from signal_engine.workflow.training import check_exportable, rule_conditions, select_window, timeframe_of

ROOT = Path(__file__).resolve().parents[2]


def test_step_list_is_ordered_unique_and_runnable_everywhere(tmp_path: Path) -> None:
    assert [s.name for s in STEPS] == ["prepare_dataset", "train_experts", "train_gate", "evaluate", "decide",
                                       "publish"]
    assert len({s.state for s in STEPS}) == len(STEPS)
    produced = {"TrainingInputs"}
    for s in STEPS:
        assert set(s.inputs) <= produced, f"{s.name} consumes {set(s.inputs) - produced} before it exists"
        produced |= set(s.outputs)
        if s.entry:
            assert (ROOT / "sagemaker_jobs" / f"{s.entry}.py").is_file()
    LocalRunner(LocalModelRegistry(tmp_path), PROFILES["quick"])  # has a handler for every step
    with pytest.raises(KeyError, match="no workflow step 'deploy'"):
        step("deploy")


def metrics(sharpe: float = 0.5, hold: float = 0.6, ece: float = 0.03, log_loss: float = 1.08,
            prior: float = 1.09, qlike: float = -7.1, garch: float = -7.1) -> dict[str, Any]:
    """One symbol's walk-forward sections (what metrics.json holds under per_symbol[SYMBOL])."""
    return {
        "strategies": {"moe": {"sharpe": sharpe}, "baseline_buy_and_hold": {"sharpe": hold}},
        "confidence": {"moe": {"ece": ece}},
        "trend": {"trend_lightgbm": {"log_loss": log_loss}, "baseline_majority": {"log_loss": prior}},
        "volatility": {"volatility_blend": {"qlike": qlike}, "baseline_garch11": {"qlike": garch}},
    }


def document(**per_symbol: dict[str, Any]) -> dict[str, Any]:
    """A metrics.json document: the mean over symbols at the top (here: of nothing useful) and each symbol's own."""
    return {**metrics(sharpe=9.0, hold=0.0, ece=0.0), "per_symbol": per_symbol}


def test_quality_gate_passes_when_every_check_does() -> None:
    decision = decide(document(GOOG=metrics()), QualityConfig())
    assert decision.passed and decision.served_symbols == ("GOOG",) and decision.withheld == {}
    verdict = decision.symbol("GOOG")
    assert [c.name for c in verdict.checks] == [
        "moe_sharpe_vs_buy_and_hold", "confidence_ece", "trend_log_loss_vs_prior", "volatility_qlike_vs_garch"]
    assert verdict.checks[0].value == pytest.approx(-0.1)


@pytest.mark.parametrize(("change", "failing"), [
    ({"sharpe": -0.2, "hold": 0.6}, "moe_sharpe_vs_buy_and_hold"),
    ({"ece": 0.2}, "confidence_ece"),
    ({"log_loss": 1.2}, "trend_log_loss_vs_prior"),
    ({"qlike": -6.0}, "volatility_qlike_vs_garch"),
    ({"ece": float("nan")}, "confidence_ece"),
])
def test_quality_gate_fails_on_the_check_that_fails(change: dict[str, float], failing: str) -> None:
    """A single-symbol run: the bundle fails exactly when its one symbol does (as before per-symbol gating)."""
    decision = decide(document(GOOG=metrics(**change)), QualityConfig())
    assert not decision.passed and decision.served_symbols == ()
    assert [c.name for c in decision.symbol("GOOG").failed()] == [failing]
    assert list(decision.withheld) == ["GOOG"] and failing in decision.withheld["GOOG"]


@pytest.mark.parametrize(("sizing", "value", "passed"), [("vol_har", -0.1, True), ("volatility_blend", 1.1, False)])
def test_the_volatility_check_judges_the_forecast_that_sizes_the_positions(sizing: str, value: float,
                                                                           passed: bool) -> None:
    """The blend scores the gate while HAR sizes the positions and is what users see: the check reads the one the
    diagnostics name as sizing_volatility (-7.2 - -7.1 = -0.1 for HAR; -6.0 - -7.1 = 1.1 for the blend)."""
    section = metrics(qlike=-6.0)
    section["volatility"]["vol_har"] = {"qlike": -7.2}
    section["diagnostics"] = {"moe": {"experts": {"volatility": "volatility_blend", "sizing_volatility": sizing}}}
    check = decide(document(SPX=section), QualityConfig()).symbol("SPX").checks[3]
    assert check.name == "volatility_qlike_vs_garch" and check.passed is passed
    assert check.value == pytest.approx(value)
    assert sizing in check.rule


def test_metrics_without_a_sizing_forecast_judge_their_first_volatility_model() -> None:
    """Older metrics.json files name no sizing forecast: the first non-baseline model is judged, as before."""
    section = metrics(qlike=-6.0)
    section["volatility"]["vol_har"] = {"qlike": -7.2}
    check = decide(document(SPX=section), QualityConfig()).symbol("SPX").checks[3]
    assert check.value == pytest.approx(1.1) and "volatility_blend" in check.rule


def test_each_symbol_is_judged_on_its_own_metrics_not_the_mean() -> None:
    """EURUSD trails buy & hold by far more than the shortfall allowed; the mean at the top would pass; only the
    symbols that pass are served, the other is withheld with the failed check, its value and its threshold."""
    decision = decide(document(SPX=metrics(), EURUSD=metrics(sharpe=-4.4, hold=1.9), GOOG=metrics(ece=0.05)),
                      QualityConfig())
    assert decision.passed
    assert decision.served_symbols == ("SPX", "GOOG")
    assert decision.withheld == {"EURUSD": "failed moe_sharpe_vs_buy_and_hold -6.3 (needs >= -0.5)"}
    body = decision.to_dict()
    assert list(body) == ["passed", "served_symbols", "withheld", "symbols"]
    assert list(body["symbols"]) == ["SPX", "EURUSD", "GOOG"]
    assert body["symbols"]["EURUSD"]["passed"] is False and body["symbols"]["SPX"]["passed"] is True
    assert [c["passed"] for c in body["symbols"]["EURUSD"]["checks"]] == [False, True, True, True]
    flat = decision.flat_checks()
    assert len(flat) == 12 and {c["symbol"] for c in flat} == {"SPX", "EURUSD", "GOOG"}


def test_no_symbol_passing_fails_the_bundle() -> None:
    decision = decide(document(SPX=metrics(ece=0.3), EURUSD=metrics(sharpe=-4.4, hold=1.9)), QualityConfig())
    assert not decision.passed and decision.served_symbols == ()
    assert decision.withheld == {"SPX": "failed confidence_ece 0.3 (needs <= 0.1)",
                                 "EURUSD": "failed moe_sharpe_vs_buy_and_hold -6.3 (needs >= -0.5)"}


def test_a_missing_metric_fails_its_check_without_a_value() -> None:
    section = metrics()
    del section["confidence"]
    (check,) = decide(document(GOOG=section), QualityConfig()).symbol("GOOG").failed()
    assert check.name == "confidence_ece" and check.value is None


def test_a_symbol_without_metrics_fails_every_check() -> None:
    decision = decide(document(SPX=metrics()), QualityConfig(), symbols=("SPX", "IXIC"))
    assert decision.served_symbols == ("SPX",)
    assert [c.value for c in decision.symbol("IXIC").checks] == [None] * 4
    assert decision.withheld["IXIC"].startswith("failed moe_sharpe_vs_buy_and_hold missing (needs >= -0.5)")
    with pytest.raises(ConfigError, match="per_symbol"):
        decide(metrics(), QualityConfig())


def test_settings_split_the_quality_section_and_name_bad_fields() -> None:
    config, quality = training_settings("quick", {"trend": {"n_estimators": 20},
                                                  "quality": {"max_confidence_ece": 0.05},
                                                  "orchestration": {"anything": 1}})
    assert config.trend.n_estimators == 20 and quality.max_confidence_ece == 0.05
    with pytest.raises(ConfigError, match=re.escape("quality.max_ece")):
        training_settings("quick", {"quality": {"max_ece": 0.1}})
    with pytest.raises(ConfigError, match=re.escape("'quality.max_sharpe_shortfall' must be a number >= 0")):
        training_settings("quick", {"quality": {"max_sharpe_shortfall": -1}})
    with pytest.raises(ConfigError, match=re.escape("trend.depth")):
        training_settings("quick", {"trend": {"depth": 3}})
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        training_settings("fast")


def test_parts_the_bundle_cannot_carry_are_refused_up_front() -> None:
    config, _ = training_settings("quick", {})
    with pytest.raises(ConfigError, match=re.escape("moe.gate 'vote': the bundle carries a softmax or MLP gate")):
        check_exportable(replace(config, moe=replace(config.moe, gate="vote")))
    for gate in ("softmax", "mlp", "rule"):
        check_exportable(training_settings("quick", {"moe": {"gate": gate}})[0])
    config, _ = training_settings("quick", {"moe": {"enabled": False}})
    with pytest.raises(ConfigError, match=re.escape("moe.enabled is false")):
        check_exportable(config)
    for combiner in ("weighted", "meta", "rule"):
        check_exportable(training_settings("quick", {"moe": {"combiner": combiner}})[0])
    check_exportable(PROFILES["quick"])
    check_exportable(training_settings("quick", {"moe": {"experts": {"volatility": "vol_har_implied"}}})[0])


def test_a_dataset_for_the_implied_volatility_slot_needs_the_column(goog_csv: Path, tmp_path: Path) -> None:
    """``vol_har_implied`` trains (the bundle serves it from the bars' ``implied_vol``), but a price file without
    that column is refused when the dataset is prepared, before any expert is fitted."""
    from signal_engine.data.loader import load_prices
    from signal_engine.errors import InputError
    from signal_engine.workflow.training import prepare_dataset

    config, _ = training_settings("quick", {"moe": {"experts": {"volatility": "vol_har_implied"}}})
    with pytest.raises(InputError, match=re.escape("has no 'implied_vol' column, which moe.experts.volatility "
                                                   "'vol_har_implied' reads")):
        prepare_dataset([load_prices(goog_csv)], tmp_path / "data", config)
    assert not (tmp_path / "data" / "GOOG.csv").exists()


def test_a_gate_artefacts_rule_parameters_become_the_bundles(tmp_path: Path) -> None:
    from signal_engine.moe.numpy_gate import RuleGateParams
    from signal_engine.workflow.training import _rule_params

    params = RuleGateParams(2.0, 0.6, 0.55, 0.45, 0.3, 0.0123, 2)
    written = json.loads(json.dumps({"kind": "rule", "rule": {**params.__dict__, "experts": list(params.experts)}}))
    assert _rule_params(written, tmp_path) == params
    assert _rule_params({"kind": "softmax"}, tmp_path) is None
    for broken in ({"kind": "rule"}, {"kind": "rule", "rule": {"k": 2, "experts": []}}):
        with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'gate.json'}: field 'rule' is")):
            _rule_params(broken, tmp_path)


def test_rule_conditions_round_trip_through_the_serving_parser() -> None:
    from signal_engine.moe.rules import DEFAULT_RULES, Condition
    from signal_engine.serving.combine import _parse_rules

    config, _ = training_settings("quick", {"moe": {"combiner": "rule"}})
    conditions = rule_conditions(config)
    assert {k: [Condition.parse(t, rule=k) for t in v] for k, v in conditions.items()} == {
        k: [Condition.parse(t, rule=k) for t in v] for k, v in DEFAULT_RULES.items()}
    assert _parse_rules(conditions)["buy"] == (("p_up", ">", 0.6), ("support_distance", "<", 0.01),
                                               ("vol_forecast", "<", 0.03))


def bundle_folder(root: Path, name: str = "b") -> Path:
    folder = root / name
    (folder / "experts").mkdir(parents=True)
    (folder / "bundle.json").write_text("{}")
    (folder / "experts" / "manifest.json").write_text("{}")
    return folder


def test_local_registry_publishes_whole_versions_and_moves_current_atomically(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "models")
    assert registry.current() is None and registry.versions() == []
    path = registry.publish(bundle_folder(tmp_path), "20261123T150102Z-3f9a1c2e")
    assert (Path(path) / "experts" / "manifest.json").is_file()
    assert registry.current() is None, "publishing does not promote"
    registry.promote("20261123T150102Z-3f9a1c2e")
    assert (tmp_path / "models" / "CURRENT").read_text() == "20261123T150102Z-3f9a1c2e\n"
    with pytest.raises(ConfigError, match="already published"):
        registry.publish(bundle_folder(tmp_path, "c"), "20261123T150102Z-3f9a1c2e")
    with pytest.raises(ConfigError, match="publish it before promoting"):
        registry.promote("20261124T000000Z-00000000")
    with pytest.raises(ConfigError, match="not a plain folder name"):
        registry.publish(bundle_folder(tmp_path, "d"), "../escape")
    (tmp_path / "half").mkdir()
    with pytest.raises(ConfigError, match=re.escape("no bundle.json")):
        registry.publish(tmp_path / "half", "20261124T000000Z-00000001")
    assert registry.versions() == ["20261123T150102Z-3f9a1c2e"]
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".tmp")]


def series(index: pd.DatetimeIndex) -> PriceSeries:
    close = np.linspace(100, 110, len(index))
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close}, index=index)
    return PriceSeries("TEST", "test.csv", bars)


def test_date_window_is_inclusive_and_names_a_bad_date() -> None:
    daily = series(pd.date_range("2020-01-01", periods=10, freq="D"))
    cut = select_window(daily, "2020-01-03", "2020-01-05")
    assert [str(t.date()) for t in cut.bars.index] == ["2020-01-03", "2020-01-04", "2020-01-05"]
    with pytest.raises(InputError, match="'20-01-2020x' is not a date"):
        select_window(daily, "20-01-2020x", None)


def test_timeframe_is_the_median_bar_spacing() -> None:
    assert timeframe_of(series(pd.date_range("2020-01-01", periods=10, freq="D"))) == "1d"
    assert timeframe_of(series(pd.date_range("2020-01-01", periods=10, freq="h"))) == "1h"
    assert timeframe_of(series(pd.date_range("2020-01-01", periods=10, freq="15min"))) == "15m"


def toolkit_environment(tmp_path: Path, decoded: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """SM_* and argv as the training toolkit renders them (its own mapping module) from hyperparameter values it
    already json-decoded (hyperparameters.json's '["SPX"]' is a list by then)."""
    from sagemaker_training import mapping

    env = mapping.to_env_vars({"model_dir": str(tmp_path / "model"), "channels": ["dataset"],
                               "channel_dataset": str(tmp_path / "data"), "hps": decoded})
    return env, mapping.to_cmd_args(decoded)


def test_job_environment_reads_sm_hps_not_the_toolkits_arguments(tmp_path: Path) -> None:
    decoded = {"symbols": ["SPX", "ixic"], "profile": "quick", "config": {"trend": {"num_leaves": 5}},
               "expert": "trend", "start": "", "end": 2018}
    env, argv = toolkit_environment(tmp_path, decoded)
    assert argv[argv.index("--symbols") + 1] == "['SPX', 'ixic']", "the toolkit's argv is not JSON"
    assert argv[argv.index("--config") + 1] == "trend={'num_leaves': 5}"
    job = JobEnvironment.from_env(env, argv)
    assert job.channel("dataset") == tmp_path / "data" and job.require("expert") == "trend"
    assert job.symbols() == ["SPX", "IXIC"]
    assert job.get("start") == "" and job.get("end") == "2018"
    config, _ = job.settings()
    assert config.trend.num_leaves == 5
    with pytest.raises(ConfigError, match="SM_CHANNEL_GATE is not set"):
        job.channel("gate")
    with pytest.raises(ConfigError, match="SM_MODEL_DIR is not set"):
        JobEnvironment.from_env({})
    with pytest.raises(ConfigError, match="hyperparameter 'symbols'"):
        JobEnvironment.from_env({"SM_MODEL_DIR": "m", "SM_HPS": '{"symbols": 3}'}).symbols()


def test_job_environment_takes_arguments_only_for_names_sm_hps_lacks(tmp_path: Path) -> None:
    local = JobEnvironment.from_env({"SM_MODEL_DIR": "m"}, ["--symbols", '["SPX"]', "--expert", "levels"])
    assert local.symbols() == ["SPX"] and local.require("expert") == "levels"
    env, argv = toolkit_environment(tmp_path, {"expert": "trend", "config": {}})
    job = JobEnvironment.from_env(env, [*argv, "--registry", "out/registry"])
    assert job.require("expert") == "trend" and job.get("config") == "{}" and job.get("registry") == "out/registry"


def test_job_processes_default_to_the_suites_setting_where_it_is_set_else_every_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hyperparameter ``jobs`` the walk-forwards take $SIGNAL_ENGINE_JOBS, as the command line does (SageMaker
    sets no such variable: every core of the instance); ``jobs`` given wins, 0 meaning every core."""
    from signal_engine.evaluation.jobs import available_cores, resolve_jobs

    def jobs(hyperparameters: dict[str, str]) -> int | None:
        return JobEnvironment.from_env({"SM_MODEL_DIR": "m", "SM_HPS": json.dumps(hyperparameters)}).jobs()

    assert jobs({}) is None and jobs({"jobs": ""}) is None
    assert (jobs({"jobs": "2"}), jobs({"jobs": "0"})) == (2, 0)
    monkeypatch.setenv("SIGNAL_ENGINE_JOBS", "3")
    assert resolve_jobs(jobs({})) == 3 and resolve_jobs(jobs({"jobs": "0"})) == available_cores()
    monkeypatch.delenv("SIGNAL_ENGINE_JOBS")
    assert resolve_jobs(jobs({})) == available_cores()
    for bad, message in (("two", "hyperparameter 'jobs' is 'two'"), ("-1", "hyperparameter 'jobs' is -1")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            jobs({"jobs": bad})


@pytest.mark.parametrize(("decoded", "message"), [
    ({"config": [1, 2]}, "hyperparameter 'config' must be a JSON object"),
    ({"config": "walk_forward: 252"}, "hyperparameter 'config' is not JSON"),
    ({"profile": "huge"}, "hyperparameter 'profile' is 'huge'; expected one of quick, full"),
], ids=["config-list", "config-yaml", "profile"])
def test_job_settings_name_the_bad_hyperparameter(tmp_path: Path, decoded: dict[str, Any], message: str) -> None:
    env, argv = toolkit_environment(tmp_path, decoded)
    with pytest.raises(ConfigError, match=re.escape(message)):
        JobEnvironment.from_env(env, argv).settings()


def test_run_job_writes_the_reason_to_the_failure_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SM_OUTPUT_DIR": str(tmp_path / "output")}

    def bad_config() -> int:
        raise ConfigError("hyperparameter 'config' is not JSON")

    def broken() -> int:
        counts: dict[str, int] = {}
        return counts["missing"]

    assert run_job("prepare", lambda: 0, env) == 0 and not (tmp_path / "output").exists()
    assert run_job("prepare", bad_config, env) == 2
    assert (tmp_path / "output" / "failure").read_text() == "prepare: hyperparameter 'config' is not JSON\n"
    assert "error: prepare: hyperparameter 'config' is not JSON" in capsys.readouterr().err
    (tmp_path / "output" / "failure").unlink()
    assert run_job("train_gate", broken, env) == 1
    reason = (tmp_path / "output" / "failure").read_text()
    assert reason.startswith("train_gate: unexpected KeyError: 'missing' (at test_workflow.py:")
    assert "Traceback" in capsys.readouterr().err
    assert failure_file({"SM_OUTPUT_DIR": "/x/output"}) == Path("/x/output/failure")


def request(**changes: Any) -> JobRequest:
    values: dict[str, Any] = {"entry": "train_expert", "image_uri": "1.dkr.ecr.us-east-1.amazonaws.com/t:1",
                              "role_arn": "arn:aws:iam::1:role/r", "output_path": "s3://b/runs",
                              "channels": {"dataset": "s3://b/runs/x/model.tar.gz"},
                              "hyperparameters": {"expert": "trend"}}
    return JobRequest(**{**values, **changes})


def test_job_request_names_the_bad_flag() -> None:
    for changes, flag in (({"entry": "serve"}, "--entry"), ({"output_path": "/tmp/x"}, "--output"),
                          ({"channels": {"d": "/tmp"}}, "--channel"), ({"role_arn": "admin"}, "--role"),
                          ({"instance_type": "g5.xlarge"}, "--instance-type")):
        with pytest.raises(ConfigError, match=flag):
            request(**changes)


def test_without_the_sdk_the_launcher_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_sagemaker(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sagemaker" or name.startswith("sagemaker."):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sagemaker)
    monkeypatch.delitem(sys.modules, "sagemaker", raising=False)
    with pytest.raises(SageMakerSDKMissing, match=r"pip install 'signal-engine\[sagemaker\]'"):
        sagemaker_sdk()
    assert main(["train", "--on", "sagemaker", "--image", "i", "--role", "arn:aws:iam::1:role/r",
                 "--output", "s3://b/o"]) == 2


def test_launcher_builds_one_model_trainer_job() -> None:
    made: dict[str, Any] = {}

    class Config:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class FakeTrainer:
        def __init__(self, **kwargs: Any) -> None:
            made["trainer"] = kwargs
            self.base_job_name = kwargs["base_job_name"]

        def train(self, input_data_config: list[Config], wait: bool, logs: bool) -> None:
            made["inputs"] = [c.kwargs for c in input_data_config]
            made["wait"] = wait

    sdk = {"ModelTrainer": FakeTrainer, "Compute": Config, "InputData": Config, "OutputDataConfig": Config,
           "StoppingCondition": Config}
    assert start_training_job(request(), sdk=sdk) == "se-train-expert"
    trainer = made["trainer"]
    assert trainer["training_image"].endswith("/t:1") and trainer["role"] == "arn:aws:iam::1:role/r"
    assert trainer["hyperparameters"] == {"sagemaker_program": "train_expert.py",
                                          "sagemaker_submit_directory": "/opt/ml/code", "expert": "trend"}
    assert trainer["compute"].kwargs == {"instance_type": "ml.g5.xlarge", "instance_count": 1,
                                         "volume_size_in_gb": 30}
    assert trainer["output_data_config"].kwargs == {"s3_output_path": "s3://b/runs"}
    assert made["inputs"] == [{"channel_name": "dataset", "data_source": "s3://b/runs/x/model.tar.gz"}]
    assert made["wait"] is False
    assert INSTALL_HINT == "pip install 'signal-engine[sagemaker]'"
