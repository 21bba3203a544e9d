"""The walk-forward backtest on real prices: contracts of DESIGN.md, determinism, no look-ahead."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.config import load_config
from signal_engine.evaluation.backtest import SIGNAL_COLUMNS
from signal_engine.evaluation.expert_suite import SUITE_PROFILES
from signal_engine.pipeline import BacktestOutput, run_backtest
from signal_engine.serving.book_bundle import BookBundle
from signal_engine.serving.bundle import read_current

pytestmark = pytest.mark.slow

# A refit every 250 bars, several of them before TRUNCATE_AT: what these tests prove (the contracts, determinism,
# no look-ahead across refits) does not need a refit every 60 bars, which took twice as long.
SMALL = """walk_forward:
  initial_window: 300
  validation_bars: 150
  refit_every: 250
  min_test_bars: 100
trend:
  n_estimators: 40
suite:
  enabled: false
"""
# GOOG's first GOOG_BARS bars (2004-08-19 .. 2010-12-23, of 2,148): decisions from bar 450, five refits (450, 700,
# .., 1,450) and every timeframe model's horizon many times over; TRUNCATE_AT (2008-12-30) cuts inside the refit
# block that starts at bar 950.
GOOG_BARS = 1600
TRUNCATE_AT = 1100
# The tests of one MoE variant need no other timeframe model (the book then holds the MoE's own timeframe):
# one walk-forward instead of four. The orchestration of every timeframe is tested on `goog_run`.
MOE_TIMEFRAME_ONLY = {"timeframes": ("short",), "max_allocation": 1.0}


@pytest.fixture(scope="module")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(SMALL)
    return path


def head(prices: Path, bars: int, folder: Path) -> Path:
    """The first ``bars`` bars of the price file ``prices``, as a file of the same name in ``folder``."""
    lines = prices.read_text().splitlines(keepends=True)
    target = folder / prices.name
    target.write_text("".join(lines[: bars + 1]))
    return target


@pytest.fixture(scope="module")
def goog_head(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head(goog_csv, GOOG_BARS, tmp_path_factory.mktemp("goog-head"))


@pytest.fixture(scope="module")
def goog_run(goog_head: Path, small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> BacktestOutput:
    out = tmp_path_factory.mktemp("goog")
    return run_backtest([goog_head], out, load_config("quick", small_config), jobs=2)


@pytest.fixture(scope="module")
def cli_run(goog_head: Path, small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same backtest through the command line, in one process: its output folder (one run for two tests)."""
    out = tmp_path_factory.mktemp("goog-cli")
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "backtest", "--prices", str(goog_head), "--out", str(out),
         "--config", str(small_config), "--jobs", "1"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return out


def test_one_process_gives_the_bytes_of_two(goog_run: BacktestOutput, cli_run: Path) -> None:
    assert (cli_run / "signals.csv").read_bytes() == goog_run.signals_path.read_bytes()
    assert (cli_run / "events.csv").read_bytes() == (goog_run.signals_path.parent / "events.csv").read_bytes()
    assert _without_timings(json.loads((cli_run / "metrics.json").read_text())) == _without_timings(
        json.loads(goog_run.metrics_path.read_text()))


def _without_timings(document: object) -> object:
    if isinstance(document, dict):
        return {k: _without_timings(v) for k, v in document.items() if k != "seconds"}
    if isinstance(document, list):
        return [_without_timings(v) for v in document]
    return document


def test_signals_csv_follows_the_contract(goog_run: BacktestOutput) -> None:
    signals = pd.read_csv(goog_run.signals_path)
    assert tuple(signals.columns) == SIGNAL_COLUMNS
    assert len(signals) == GOOG_BARS - 450
    assert set(signals["signal"]) <= {"buy", "sell", "hold"}
    assert signals["score"].between(-1, 1).all()
    assert signals["confidence"].between(0, 1).all()
    assert signals["position"].between(-1, 1).all()
    np.testing.assert_allclose(signals[["p_up", "p_down", "p_neutral"]].sum(axis=1), 1.0, atol=1e-8)
    np.testing.assert_allclose(signals.filter(like="gate_").sum(axis=1), 1.0, atol=1e-8)
    assert (signals["support"] <= signals["resistance"]).all()
    assert (signals["vol_forecast"] > 0).all()
    assert pd.to_datetime(signals["timestamp"]).is_monotonic_increasing


def test_metrics_json_follows_the_contract(goog_run: BacktestOutput) -> None:
    metrics = json.loads(goog_run.metrics_path.read_text())
    assert metrics["schema_version"] == 1
    assert metrics["evaluation"]["scheme"] == "walk_forward"
    assert metrics["evaluation"]["cost_bps"] == 5.0
    assert {"accuracy", "balanced_accuracy", "log_loss"} <= set(metrics["trend"]["trend_lightgbm"])
    assert {"baseline_majority"} <= set(metrics["trend"])
    assert {"volatility_blend", "vol_har", "baseline_garch11", "baseline_ewma"} == set(metrics["volatility"])
    assert {"qlike", "mse"} <= set(metrics["volatility"]["baseline_garch11"])
    assert {"levels_swing", "baseline_pivot"} == set(metrics["levels"])
    strategies = metrics["strategies"]
    assert {"moe", "expert_trend", "baseline_buy_and_hold", "baseline_sma_crossover"} <= set(strategies)
    assert {"sharpe", "gross_sharpe", "cagr", "max_drawdown", "turnover", "cost_drag", "trades"} <= set(
        strategies["moe"])
    assert strategies["baseline_buy_and_hold"]["trades"] == 1
    confidence = metrics["confidence"]["moe"]
    assert 0 <= confidence["ece"] < 0.1
    assert sum(b["rows"] for b in metrics["per_symbol"]["GOOG"]["confidence"]["moe"]["bins"]) == confidence["rows"]


def test_report_has_the_figures_and_tables(goog_run: BacktestOutput) -> None:
    report = goog_run.report_path.read_text()
    figures = ("GOOG equity curves", "GOOG drawdown", "GOOG gate weights", "GOOG volatility", "GOOG reliability",
               "daily book synergy", "daily book allocation history", "daily book correlation heatmap",
               "daily book risk-limit scales")
    for alt in figures:
        assert f'alt="{alt}" src="data:image/png;base64,' in report
    for name in ("moe", "baseline_buy_and_hold", "baseline_garch11", "trend_lightgbm", "levels_swing"):
        assert name in report


def test_same_input_gives_byte_identical_signals_through_the_cli(goog_run: BacktestOutput, cli_run: Path) -> None:
    assert (cli_run / "signals.csv").read_bytes() == goog_run.signals_path.read_bytes()


def test_truncating_the_data_after_t_changes_no_row_at_or_before_t(
    goog_run: BacktestOutput, goog_csv: Path, small_config: Path, tmp_path: Path
) -> None:
    short = run_backtest([head(goog_csv, TRUNCATE_AT, tmp_path)], tmp_path / "out", load_config("quick", small_config))
    full_rows = goog_run.signals_path.read_text().splitlines()
    short_rows = short.signals_path.read_text().splitlines()
    assert len(short_rows) == TRUNCATE_AT - 450 + 1
    assert short_rows == full_rows[: len(short_rows)]


def test_demo_runs_every_shipped_series_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "few-refits.yaml"
    # what this checks (every series end to end, every file, outputs under --out) does not depend on how often
    # the models refit, nor on how many timeframe models a book holds: two fits per walk-forward of 5,000 bars,
    # books of two models (the MoE's own and one more: every book still trains a model of its own)
    config.write_text(SMALL.replace("refit_every: 250", "refit_every: 2500")
                      + "orchestration:\n  timeframes: [short, medium]\n")
    workdir = tmp_path / "cwd"  # where `out/models` would land if the demo ignored --out
    workdir.mkdir()
    environment = {k: v for k, v in os.environ.items() if k != "SIGNAL_ENGINE_MODEL_REGISTRY"}
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "demo", "--out", str(tmp_path), "--config", str(config)],
        capture_output=True, text=True, check=False, cwd=workdir, env=environment,
    )
    assert completed.returncode == 0, completed.stderr
    assert not (workdir / "out").exists(), "the demo wrote outside --out"
    assert LocalModelRegistry(tmp_path / "models").versions(), "the demo's bundle is not under --out/models"
    signals = pd.read_csv(tmp_path / "signals.csv")
    assert list(dict.fromkeys(signals["symbol"])) == ["SPX", "IXIC", "GOOG", "EURUSD"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_symbol"]) == {"SPX", "IXIC", "GOOG", "EURUSD"}
    assert metrics["evaluation"]["summary"] == "mean over 4 symbols"
    assert "Walk-forward, out of sample" in completed.stderr
    results = (tmp_path / "results.md").read_text(encoding="utf-8")  # the README's results table
    assert results.startswith("| book / symbol | strategy | Sharpe |") and results.endswith("|\n")
    assert "| EURUSD (1h) | unmanaged MoE |" in results and "quality gate" in results.splitlines()[0]
    database = SqlDatabase.connect(f"sqlite:///{tmp_path / 'store.db'}")  # the live books start where the run ended
    try:
        for book, symbols in (("daily", ["SPX", "IXIC", "GOOG"]), ("1h", ["EURUSD"])):
            latest = database.books.latest(book)
            assert latest is not None and list(latest[1].symbols) == symbols
            held = {p.symbol: p.position for p in database.books.positions(book)}
            last = signals.groupby("symbol").tail(1).set_index("symbol")
            for symbol in symbols:
                assert held[symbol] == pytest.approx(last.loc[symbol, "position"], abs=1e-9)
            bundle = BookBundle.load(read_current(tmp_path / "models"))  # the version's seed is that same state
            assert bundle.seed_state(bundle.book(book)).to_json() == latest[1].to_json()  # type: ignore[union-attr]
    finally:
        database.close()
    assert "stored live book 'daily'" in completed.stderr


# Where the suite's tables land does not depend on which experts it runs: one of each kind (the baselines always
# run). Every catalogue expert, the Keras ones included, runs in tests/integration/test_expert_suite.py.
SUITE_EXPERTS = ("trend_lightgbm", "vol_har", "levels_swing")


def test_expert_suite_lands_in_metrics_and_report(goog_csv: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "with-suite.yaml"
    config.write_text(SMALL.replace("enabled: false", "enabled: true"))
    monkeypatch.setitem(SUITE_PROFILES, "quick", replace(SUITE_PROFILES["quick"], experts=SUITE_EXPERTS))
    prices = head(goog_csv, TRUNCATE_AT, tmp_path)  # three fits of every expert of the suite (450, 702 and 954)
    output = run_backtest([prices], tmp_path / "out", load_config("quick", config),
                          orchestration=MOE_TIMEFRAME_ONLY, jobs=1)  # in this process, which reads the profile
    experts = json.loads(output.metrics_path.read_text())["experts"]
    assert {"trend", "volatility", "levels", "baselines", "archetypes"} <= set(experts)
    assert "baseline_garch11" in experts["volatility"]
    assert experts["baselines"]["vol_har"] == "baseline_garch11"
    assert {"trend_lightgbm", "baseline_majority"} <= set(experts["trend"])
    assert experts["archetypes"] == {"GOOG": "equity_daily"}
    report = output.report_path.read_text()
    assert "Experts against their baselines" in report
    assert "vol_har (vs baseline_garch11)" in report


def test_explanations_carry_expert_contributions_and_top_features(goog_run: BacktestOutput) -> None:
    signals = pd.read_csv(goog_run.signals_path)
    explanations = pd.read_csv(goog_run.signals_path.parent / "explanations.csv")
    assert len(explanations) == len(signals)
    contributions = explanations[["contrib_trend", "contrib_levels", "contrib_volatility", "contrib_prior"]].sum(axis=1)
    np.testing.assert_allclose(contributions.clip(-1, 1), signals["score"], atol=1e-8)
    assert explanations["top_features"].str.count(":").eq(3).all()
    assert "latest signals, explained" in goog_run.report_path.read_text()


def test_multistage_engine_reports_each_stage_in_metrics_and_report(goog_run: BacktestOutput) -> None:
    metrics = json.loads(goog_run.metrics_path.read_text())
    stages = metrics["per_symbol"]["GOOG"]["stages"]
    assert [s["stage"] for s in stages] == ["raw", "stage1_filters", "stage2_sequence", "stage3_stacking"]
    for before, after in itertools.pairwise(stages):
        assert after["candidates_in"] == before["passed"]
        assert after["passed"] + after["false_positives_removed"] + after["true_positives_lost"] == before["passed"]
    assert stages[1]["false_positives_removed"] > 0
    assert all(s["sharpe"] is not None for s in stages)
    assert "multistage" in metrics["strategies"]
    assert 0 <= metrics["per_symbol"]["GOOG"]["confidence"]["multistage"]["ece"] <= 1
    report = goog_run.report_path.read_text()
    assert "multi-stage engine" in report and "true_positives_lost" in report


VARIANT = SMALL + """moe:
  gate: rule
  k: 2
  combiner: meta
  multistage: false
  experts: {trend: trend_calibrated, levels: levels_regression, volatility: vol_har}
"""


def test_configured_moe_keeps_the_contract_and_looks_nothing_ahead(goog_csv: Path, tmp_path: Path) -> None:
    config_path = tmp_path / "variant.yaml"
    config_path.write_text(VARIANT)
    config = load_config("quick", config_path)
    output = run_backtest([goog_csv], tmp_path / "full", config, orchestration=MOE_TIMEFRAME_ONLY)
    signals = pd.read_csv(output.signals_path)
    gates = signals.filter(like="gate_").to_numpy()
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-8)
    assert ((gates > 0).sum(axis=1) <= 2).all()
    assert signals["score"].between(-1, 1).all() and signals["confidence"].between(0, 1).all()
    metrics = json.loads(output.metrics_path.read_text())
    assert {"trend_calibrated", "trend_lightgbm", "baseline_majority"} <= set(metrics["trend"])
    assert {"vol_har", "volatility_blend", "baseline_garch11", "baseline_ewma"} == set(metrics["volatility"])
    assert {"levels_regression", "baseline_pivot"} == set(metrics["levels"])
    assert "stages" not in metrics["per_symbol"]["GOOG"]
    moe = metrics["per_symbol"]["GOOG"]["diagnostics"]["moe"]
    assert (moe["gate"], moe["k"], moe["combiner"]) == ("rule", 2, "meta")
    assert max(moe["meta_training_rows"]) > 1000
    explanations = pd.read_csv(output.signals_path.parent / "explanations.csv")
    parts = explanations.filter(like="contrib_").sum(axis=1)
    np.testing.assert_allclose(parts.clip(-1, 1), signals["score"], atol=1e-8)
    assert (explanations["contrib_prior"] != 0).mean() > 0.5
    short = run_backtest([head(goog_csv, TRUNCATE_AT, tmp_path)], tmp_path / "short", config,
                         orchestration=MOE_TIMEFRAME_ONLY).signals_path.read_text().splitlines()
    assert short == output.signals_path.read_text().splitlines()[: len(short)]


@pytest.mark.tensorflow  # the single expert is a Keras network: this test joins the worker that imports TensorFlow
def test_moe_disabled_trades_the_single_equity_daily_expert(goog_csv: Path, tmp_path: Path) -> None:
    config_path = tmp_path / "single.yaml"
    config_path.write_text(SMALL + "moe:\n  enabled: false\n  multistage: false\n")
    output = run_backtest([goog_csv], tmp_path / "out", load_config("quick", config_path),
                          orchestration=MOE_TIMEFRAME_ONLY)
    signals = pd.read_csv(output.signals_path)
    np.testing.assert_array_equal(signals[["gate_trend", "gate_levels", "gate_volatility"]].to_numpy()[0], [1, 0, 0])
    metrics = json.loads(output.metrics_path.read_text())
    assert "archetype_equity_daily" in metrics["trend"]
    diagnostics = metrics["per_symbol"]["GOOG"]["diagnostics"]["moe"]
    assert diagnostics["single_expert"] == "equity_daily" and diagnostics["single_expert_fits"] == 2
    explanations = pd.read_csv(output.signals_path.parent / "explanations.csv")
    np.testing.assert_allclose(explanations["contrib_trend"], signals["score"], atol=1e-8)
