"""`train --tune` with ``moe.experts.trend: trend_pooled``: the pooled network's settings chosen by an Optuna study on
the final fit's rows (the study kept in the artefact's SQLite file, the choice in ``tuning.json`` and the bundle),
every refit of the pooled walk-forward tuned the same way, and the quality gate's metrics saying so."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from rich.console import Console

from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.config import apply_overrides, load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.registry import load_experts, pack_artefact
from signal_engine.tuning.keras import SEARCHED
from signal_engine.workflow import training
from signal_engine.workflow.local import LocalRunner, TrainingRun
from signal_engine.workflow.steps import TrainingInputs
from signal_engine.workflow.tuning import TuningRun
from tests.sagemaker_jobs_support import run_entry_point
from tests.unit.test_pooled_training import synthetic_series

pytestmark = pytest.mark.tensorflow

# two refits of the pooled walk-forward (bars 300 and 500), one short epoch each
OVERRIDES: dict[str, Any] = {
    "walk_forward": {"initial_window": 300, "validation_bars": 100, "refit_every": 200, "min_test_bars": 100,
                     "embargo": 2},
    "moe": {"experts": {"trend": "trend_pooled"}},
    "pooled_trend": {"window": 16, "samples_per_series": 64, "max_epochs": 1, "batch_size": 64},
}
CONFIG = apply_overrides(load_config("quick"), OVERRIDES)
TRIALS = 2
TUNING = TuningRun(enabled=True, trials=TRIALS, timeout_s=None)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[PriceSeries], TrainingRun, Path]:
    """The local runner's every step with tuning on over two series; the series, the run and its work folder."""
    series = [synthetic_series("AAA", 1), synthetic_series("BBB", 2)]
    root = tmp_path_factory.mktemp("pooled-tuned")
    runner = LocalRunner(LocalModelRegistry(root / "registry"), CONFIG, console=Console(file=io.StringIO()),
                         tuning=TUNING)
    done = runner.run(TrainingInputs(("AAA", "BBB")), series, work_dir=root / "work")
    return series, done, root / "work"


def test_the_served_network_has_the_settings_its_study_chose_and_the_study_is_kept(
        run: tuple[list[PriceSeries], TrainingRun, Path]) -> None:
    series, _, work = run
    trend = work / "experts" / "trend"
    records = json.loads((trend / "tuning.json").read_text())["trend"]
    assert sorted(records) == ["AAA", "BBB"] and records["AAA"] == records["BBB"]
    record = records["AAA"]
    last = series[0].bars.index[-1].isoformat()
    assert record["network"] == "trend_pooled" and record["study_name"] == f"trend_pooled@{last}"
    assert record["trials"] == TRIALS and record["tuned"] is True
    study = optuna.load_study(study_name=record["study_name"], storage=f"sqlite:///{trend / 'tuning' / 'optuna.db'}")
    assert len(study.trials) == TRIALS and study.best_trial.params == record["params"]
    # the final fit's rows: every label known at the last bar (699) less the embargo (2), horizon 5: rows up to 692,
    # from row 30, the first with a 30-bar volatility (the labels' unit): 663 a series
    assert study.user_attrs["labelled"] == 2 * (692 - 30 + 1)
    network = load_experts(trend)["trend"]
    assert {k: network.get_params()[k] for k in SEARCHED} == record["params"]


def test_every_refit_of_the_pooled_walk_forward_is_tuned_and_the_gate_judges_it(
        run: tuple[list[PriceSeries], TrainingRun, Path]) -> None:
    _, done, work = run
    refits = json.loads((work / "experts" / "trend" / "pooled_tuning.json").read_text())["refits"]
    dates = [synthetic_series("AAA", 1).bars.index[bar].isoformat() for bar in (300, 500)]
    assert [r["fit_date"] for r in refits] == dates
    assert [r["study_name"] for r in refits] == [f"trend_pooled@{d}" for d in dates]
    assert all(r["trials"] == TRIALS and r["decide"] == ["AAA", "BBB"] for r in refits)
    assert done.evaluation is not None
    bundle = json.loads((done.evaluation.root / "bundle.json").read_text())
    judged = bundle["tuning"]["walk_forward"]
    assert judged["refits"] == {s: {"refits": 2, "tuned": sum(r["tuned"] for r in refits), "trials": 2 * TRIALS}
                                for s in ("AAA", "BBB")}
    served = json.loads((work / "experts" / "trend" / "tuning.json").read_text())["trend"]
    assert {s: bundle["tuning"]["trend"][s]["params"] for s in ("AAA", "BBB")} == {s: served[s]["params"]
                                                                                   for s in ("AAA", "BBB")}
    assert done.metrics is not None and done.metrics["tuning"] == judged


def test_a_pooled_walk_forward_that_was_not_tuned_is_refused_when_tuning(
        run: tuple[list[PriceSeries], TrainingRun, Path]) -> None:
    _, done, _ = run
    with pytest.raises(ConfigError, match="walk-forward of AAA, BBB was run with the config's trend settings"):
        training.tuned_walk_forward(done.walk_forward, TUNING, None)


def test_the_tuned_trend_job_and_the_gate_job_judge_the_tuned_pooled_walk_forward(tmp_path: Path) -> None:
    """prepare -> train_expert trend (tune=true, the GPU job with trend_pooled) -> train_gate (tune=true) reading the
    trend job's packed artefact from its experts channel, as the workflow chains them. One refit of the pooled
    walk-forward (bar 300, refit_every 400 reaches past the 700th bar): that every refit is tuned is shown above."""
    from sagemaker_jobs import prepare, train_expert, train_gate

    raw = tmp_path / "raw"
    raw.mkdir()
    for symbol, seed in (("AAA", 1), ("BBB", 2)):
        training.write_series(synthetic_series(symbol, seed), raw / f"{symbol}.csv")
    one_refit = {**OVERRIDES, "walk_forward": {**OVERRIDES["walk_forward"], "refit_every": 400}}
    hyperparameters = {"symbols": json.dumps(["AAA", "BBB"]), "profile": "quick", "start": "", "end": "",
                       "config": json.dumps({**one_refit, "tuning": {"trials": TRIALS, "timeout_s": None}}),
                       "jobs": "1", "tune": "true"}
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(log):
        dataset = run_entry_point(prepare, mp, tmp_path / "prepare" / "model", {"raw": raw}, hyperparameters)
        trend = run_entry_point(train_expert, mp, tmp_path / "trend" / "model", {"dataset": dataset},
                                {**hyperparameters, "expert": "trend"})
        (tmp_path / "experts" / "trend").mkdir(parents=True)
        pack_artefact(trend, tmp_path / "experts" / "trend" / "model.tar.gz")
        gate = run_entry_point(train_gate, mp, tmp_path / "gate" / "model",
                               {"dataset": dataset, "experts": tmp_path / "experts"}, hyperparameters)
    assert (trend / "tuning" / "optuna.db").is_file() and (trend / "pooled_tuning.json").is_file()
    assert "tuned trend/AAA: trials=2" in log.getvalue()
    assert "walk-forward tuned at every refit: trials=2 timeout_s=None refits=2" in log.getvalue()
    judged = json.loads((gate / "metrics.json").read_text())["tuning"]["refits"]
    assert {s: v["refits"] for s, v in judged.items()} == {"AAA": 1, "BBB": 1}
    assert all(v["trials"] == TRIALS for v in judged.values())


def test_the_studies_are_named_after_the_pooled_network_the_config_picks() -> None:
    from signal_engine.workflow.tuning import pooled_network, pooled_study_name

    lstm = apply_overrides(load_config("quick"), {"moe": {"experts": {"trend": "trend_pooled_lstm"}}})
    intraday = apply_overrides(load_config("quick"), {"moe": {"experts": {"intraday_trend": "trend_pooled"}}})
    assert pooled_network(CONFIG) == "trend_pooled"
    assert pooled_network(lstm) == "trend_pooled_lstm"
    assert pooled_network(intraday) == "trend_pooled"
    assert pooled_study_name(lstm, "2020-01-02") == "trend_pooled_lstm@2020-01-02T00:00:00"
