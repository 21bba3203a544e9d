"""The training plan: an expert trains on a GPU (TensorFlow image) only when its configured model is a Keras
model, and the gate and evaluate jobs only when they fit one (an MLP gate; evaluate only with the whole book); the
prepare job writes the plan the Step Functions workflow reads."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sagemaker_jobs import prepare
from signal_engine import components
from signal_engine.archetypes.pooled_expert import PooledKernelTrendExpert
from signal_engine.archetypes.pooled_sequence import PooledLSTMTrendExpert
from signal_engine.config import (
    LEVELS_EXPERTS,
    POOLED_TRENDS,
    PROFILES,
    TREND_EXPERTS,
    VOLATILITY_EXPERTS,
    RunConfig,
    apply_overrides,
)
from signal_engine.errors import ConfigError
from signal_engine.registry import build, load_catalogue
from signal_engine.workflow.plan import (
    EXPERTS,
    expert_accelerator,
    expert_model,
    model_accelerator,
    step_accelerators,
    training_plan,
)

QUICK = PROFILES["quick"]


def with_experts(config: RunConfig, **experts: str) -> RunConfig:
    return replace(config, moe=replace(config.moe, experts=replace(config.moe.experts, **experts)))


def with_gate(config: RunConfig, gate: str) -> RunConfig:
    return replace(config, moe=replace(config.moe, gate=gate))


def test_the_catalogues_tensorflow_experts_are_the_gpu_ones() -> None:
    """Keras models (schedule: tensorflow in the catalogue) need the GPU; every other model does not."""
    catalogue = load_catalogue()
    for name, spec in catalogue.items():
        if spec.inputs != "bars" or spec.is_baseline or "members" in spec.kwargs:
            continue
        expected = "gpu" if spec.schedule == "tensorflow" else "cpu"
        assert model_accelerator(build(name, catalogue)) == expected, name


def test_every_model_the_config_can_pick_but_the_pooled_trend_expert_trains_on_cpu() -> None:
    classical = [t for t in TREND_EXPERTS if t not in POOLED_TRENDS]
    for trend, levels, volatility in itertools.product(classical, LEVELS_EXPERTS, VOLATILITY_EXPERTS):
        config = with_experts(QUICK, trend=trend, intraday_trend=trend, levels=levels, volatility=volatility)
        for expert in EXPERTS:
            assert expert_accelerator(expert, config) == "cpu", (expert, trend, levels, volatility)
    assert training_plan(EXPERTS, PROFILES["full"], [False, True])["experts"] == [
        {"expert": e, "accelerator": "cpu"} for e in EXPERTS]


def test_the_pooled_trend_expert_trains_on_the_gpu_and_nothing_else_does() -> None:
    """``moe.experts.trend: trend_pooled`` (a Keras network over every series): the trend job on the GPU, the other
    jobs on CPU; for intraday series the trend role is intraday_trend (trend_linear), so an intraday-only run is
    all CPU."""
    pooled = with_experts(QUICK, trend="trend_pooled")
    assert training_plan(EXPERTS, pooled, [False])["experts"] == [
        {"expert": "trend", "accelerator": "gpu"}, {"expert": "levels", "accelerator": "cpu"},
        {"expert": "volatility", "accelerator": "cpu"}]
    assert training_plan(EXPERTS, pooled, [True])["experts"][0] == {"expert": "trend", "accelerator": "cpu"}
    assert training_plan(EXPERTS, QUICK, [False])["experts"][0] == {"expert": "trend", "accelerator": "cpu"}


def test_the_pooled_lstm_is_chosen_by_name_and_trains_on_the_gpu() -> None:
    """``moe.experts.trend: trend_pooled_lstm``: the pooled LSTM with the ``pooled_trend`` settings, on the GPU step
    as ``trend_pooled`` is; the config document keeps the settings it reads."""
    config = apply_overrides(QUICK, {"moe": {"experts": {"trend": "trend_pooled_lstm"}},
                                     "pooled_trend": {"window": 32, "max_epochs": 5}})
    model = components.trend_expert(config)
    assert type(model) is PooledLSTMTrendExpert
    assert (model.window, model.max_epochs, model.purge, model.random_state) == (32, 5, QUICK.labels.horizon,
                                                                                 QUICK.seed)
    assert type(components.trend_expert(with_experts(QUICK, trend="trend_pooled"))) is PooledKernelTrendExpert
    assert training_plan(EXPERTS, config, [False])["experts"][0] == {"expert": "trend", "accelerator": "gpu"}
    assert config.to_dict()["pooled_trend"]["window"] == 32 and "pooled_trend" not in QUICK.to_dict()


@pytest.fixture()
def keras_intraday_trend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trend role whose intraday model (moe.experts.intraday_trend, trend_linear by default) is the catalogue's
    LSTM: what the plan sees if a Keras trend expert becomes a config choice."""
    real = components.trend_expert

    def trend_expert(config: RunConfig) -> Any:
        return build("trend_lstm") if config.moe.experts.trend == "trend_linear" else real(config)

    monkeypatch.setattr(components, "trend_expert", trend_expert)


@pytest.mark.usefixtures("keras_intraday_trend")
def test_a_keras_trend_model_sends_only_the_trend_expert_to_the_gpu() -> None:
    keras = with_experts(QUICK, trend="trend_linear")
    assert type(expert_model("trend", keras)).__name__ == "LSTMTrendExpert"
    assert [expert_accelerator(e, keras) for e in EXPERTS] == ["gpu", "cpu", "cpu"]
    assert expert_accelerator("trend", QUICK) == "cpu"
    assert expert_accelerator("trend", QUICK, intraday=True) == "gpu"  # for_bars picks intraday_trend
    assert training_plan(EXPERTS, QUICK, [False])["experts"][0] == {"expert": "trend", "accelerator": "cpu"}
    assert training_plan(EXPERTS, QUICK, [False, True])["experts"] == [
        {"expert": "trend", "accelerator": "gpu"}, {"expert": "levels", "accelerator": "cpu"},
        {"expert": "volatility", "accelerator": "cpu"}]


def test_the_gate_and_evaluate_jobs_run_on_cpu_unless_they_fit_a_keras_model() -> None:
    """Every config choice but the MLP gate: neither job fits a Keras model. The pooled trend network is trained
    by the trend job only (the gate's walk-forward reads its probabilities; evaluate packs the pickled network)."""
    for gate in ("softmax", "rule"):
        for trend in TREND_EXPERTS:
            config = with_gate(with_experts(QUICK, trend=trend), gate)
            for book in (True, False):
                assert step_accelerators(config, [False, True], book=book) == {
                    "train_gate": "cpu", "evaluate": "cpu"}, (gate, trend, book)


def test_an_mlp_gate_puts_the_gate_job_on_the_gpu_and_evaluate_only_for_the_book() -> None:
    mlp = with_gate(PROFILES["full"], "mlp")
    assert step_accelerators(mlp, [False], book=True) == {"train_gate": "gpu", "evaluate": "gpu"}
    assert step_accelerators(mlp, [False], book=False) == {"train_gate": "gpu", "evaluate": "cpu"}
    pooled = with_experts(mlp, trend="trend_pooled")  # trained without the book (its default for trend_pooled)
    assert training_plan(EXPERTS, pooled, [False], book=False)["steps"] == {
        "train_gate": {"accelerator": "gpu"}, "evaluate": {"accelerator": "cpu"}}


@pytest.mark.usefixtures("keras_intraday_trend")
def test_a_keras_trend_model_the_walk_forward_refits_puts_the_gate_job_on_the_gpu() -> None:
    """A Keras model as a series' per-symbol trend expert (here the intraday one): the gate job refits it at every
    refit of the walk-forward, and evaluate fits it for each timeframe model of the book; daily series only: CPU."""
    assert step_accelerators(QUICK, [True], book=True) == {"train_gate": "gpu", "evaluate": "gpu"}
    assert step_accelerators(QUICK, [False, True], book=False) == {"train_gate": "gpu", "evaluate": "cpu"}
    assert step_accelerators(QUICK, [False], book=True) == {"train_gate": "cpu", "evaluate": "cpu"}


@pytest.mark.parametrize("experts", [[], ["trend", "trend", "levels"], ["trend", "sentiment"]])
def test_bad_expert_lists_are_refused_naming_the_field(experts: list[str]) -> None:
    with pytest.raises(ConfigError, match="experts"):
        training_plan(experts, QUICK, [False])


def test_the_prepare_job_writes_the_plan(tmp_path: Path, goog_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, model, plan = tmp_path / "raw", tmp_path / "model", tmp_path / "runs" / "x" / "plan.json"
    raw.mkdir()
    (raw / "GOOG.csv").write_bytes(goog_csv.read_bytes())
    monkeypatch.setenv("SM_MODEL_DIR", str(model))
    monkeypatch.setenv("SM_CHANNELS", json.dumps(["raw"]))
    monkeypatch.setenv("SM_CHANNEL_RAW", str(raw))
    monkeypatch.setenv("SM_HPS", json.dumps({"symbols": "[\"GOOG\"]", "profile": "quick", "config": "{}",
                                             "experts": "[\"volatility\", \"trend\"]", "plan": str(plan)}))
    assert prepare.main([]) == 0
    assert json.loads(plan.read_text()) == {"schema_version": 2, "experts": [
        {"expert": "volatility", "accelerator": "cpu"}, {"expert": "trend", "accelerator": "cpu"}],
        "steps": {"train_gate": {"accelerator": "cpu"}, "evaluate": {"accelerator": "cpu"}}}


def test_the_prepare_job_plans_the_gate_and_evaluate_jobs_for_the_book_it_is_sent(
        tmp_path: Path, goog_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MLP gate: the gate job fits it (GPU); evaluate fits it again for the book's timeframe models, unless the
    hyperparameter ``book`` (sent to every job alike) is false."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "GOOG.csv").write_bytes(goog_csv.read_bytes())
    monkeypatch.setenv("SM_CHANNELS", json.dumps(["raw"]))
    monkeypatch.setenv("SM_CHANNEL_RAW", str(raw))
    for book, evaluate in (("", "gpu"), ("false", "cpu")):
        plan = tmp_path / f"plan-{book}.json"
        monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / f"model-{book}"))
        monkeypatch.setenv("SM_HPS", json.dumps({"symbols": "[\"GOOG\"]", "profile": "quick", "book": book,
                                                 "config": "{\"moe\": {\"gate\": \"mlp\"}}", "plan": str(plan)}))
        assert prepare.main([]) == 0
        assert json.loads(plan.read_text())["steps"] == {"train_gate": {"accelerator": "gpu"},
                                                          "evaluate": {"accelerator": evaluate}}


def test_the_workflows_experts_are_the_configs_price_experts() -> None:
    from signal_engine.config import PRICE_EXPERTS
    from signal_engine.workflow import steps, training

    assert steps.EXPERTS == training.EXPERTS == PRICE_EXPERTS == ("trend", "levels", "volatility")
