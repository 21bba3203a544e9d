"""The pooled trend expert in the training workflow (``moe.experts.trend: trend_pooled``): one network for every
symbol of the run, its walk-forward read by the gate step, and each symbol answered with its own series code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.model_registry import LocalModelRegistry
from signal_engine.archetypes.pooled_expert import SERIES_COLUMN, PooledKernelTrendExpert
from signal_engine.archetypes.pooled_sequence import PooledLSTMTrendExpert
from signal_engine.config import apply_overrides, load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.evaluation.backtest import run_symbol
from signal_engine.registry import load_experts
from signal_engine.serving.experts import answer, market_frame
from signal_engine.serving.messages import ExpertQuery
from signal_engine.workflow import training
from signal_engine.workflow.local import LocalRunner, TrainingRun
from signal_engine.workflow.steps import TrainingInputs

pytestmark = pytest.mark.tensorflow

# cheap settings: two refits of the pooled walk-forward, one short epoch each
CONFIG = apply_overrides(load_config("quick"), {
    "walk_forward": {"initial_window": 300, "validation_bars": 100, "refit_every": 200, "min_test_bars": 100,
                     "embargo": 2},
    "moe": {"experts": {"trend": "trend_pooled"}},
    "pooled_trend": {"window": 16, "samples_per_series": 64, "max_epochs": 1, "batch_size": 64},
})
BARS = 700


def synthetic_series(symbol: str, seed: int) -> PriceSeries:
    """A random walk of BARS business days from 2018 (open, high, low, close, volume); synthetic: unit tests only."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2018-01-01", periods=BARS, name="timestamp")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, BARS)))
    opening = close * np.exp(rng.normal(0.0, 0.004, BARS))
    bars = pd.DataFrame({"open": opening, "high": np.maximum(opening, close) * 1.006,
                         "low": np.minimum(opening, close) * 0.994, "close": close,
                         "volume": rng.uniform(1e6, 2e6, BARS)}, index=index)
    return PriceSeries(symbol, f"{symbol}.csv", bars)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[PriceSeries], TrainingRun, Path]:
    """The local runner's every step (no book) over two series; returns them, the run and its work folder."""
    series = [synthetic_series("AAA", 1), synthetic_series("BBB", 2)]
    root = tmp_path_factory.mktemp("pooled")
    runner = LocalRunner(LocalModelRegistry(root / "registry"), CONFIG, console=Console(file=io.StringIO()))
    done = runner.run(TrainingInputs(("AAA", "BBB")), series, work_dir=root / "work")
    return series, done, root / "work"


@pytest.fixture(scope="module")
def trained(run: tuple[list[PriceSeries], TrainingRun, Path]) -> tuple[list[PriceSeries], Path]:
    """The run's series and its trend step's artefact folder."""
    series, _, work = run
    return series, work / "experts" / "trend"


def test_the_trend_artefact_carries_one_pooled_network_for_every_symbol(
        trained: tuple[list[PriceSeries], Path]) -> None:
    _, out = trained
    experts = load_experts(out)
    assert list(experts) == ["trend"]
    model = experts["trend"]
    assert isinstance(model, PooledKernelTrendExpert) and model.series_ == ("AAA", "BBB")
    assert (model.window, model.samples_per_series, model.max_epochs) == (16, 64, 1)


def _rows(bars: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"timestamp": str(t), **{c: float(v) for c, v in row.items()}} for t, row in bars.iterrows()]


def test_a_served_answer_is_the_pooled_prediction_for_the_symbols_series(
        trained: tuple[list[PriceSeries], Path]) -> None:
    """The same bars asked about as AAA and as BBB: each answer is the network's probability of the last bar with
    that symbol's series code, and the two differ (the series embedding)."""
    series, out = trained
    model = load_experts(out)["trend"]
    bars = series[0].bars.iloc[-200:]
    frame = market_frame(bars)
    client = InProcessExperts(out)
    try:
        served = {}
        for symbol in ("AAA", "BBB"):
            query = ExpertQuery(symbol, "1d", _rows(bars))
            served[symbol] = client.ask(query, ["trend"], 60.0)["trend"].answer
            expected = model.predict_proba(frame.assign(**{SERIES_COLUMN: symbol}))[-1]
            assert [served[symbol][k] for k in ("p_down", "p_neutral", "p_up")] == pytest.approx(expected, abs=1e-6)
            assert answer("trend", model.for_series(symbol), bars) == pytest.approx(served[symbol], abs=1e-9)
    finally:
        client.close()
    assert served["AAA"] != served["BBB"]


def test_the_gate_steps_walk_forward_reads_the_pooled_walk_forwards_probabilities(
        run: tuple[list[PriceSeries], TrainingRun, Path]) -> None:
    series, done, work = run
    proba = training.pooled_trend_proba([work / "experts" / "trend"], series)
    assert proba is not None and sorted(proba) == ["AAA", "BBB"]
    first = CONFIG.walk_forward.initial_window
    for values in proba.values():
        assert np.isnan(values[:first]).all() and np.isfinite(values[first:]).all()
        assert np.allclose(values[first:].sum(axis=1), 1.0)
    test = slice(CONFIG.walk_forward.test_start, BARS)
    assert [r.symbol for r in done.walk_forward] == ["AAA", "BBB"]
    for result in done.walk_forward:
        assert np.array_equal(result.signals["p_up"].to_numpy(), proba[result.symbol][test, 2])
        assert np.array_equal(result.signals["p_down"].to_numpy(), proba[result.symbol][test, 0])
        assert "trend_pooled" in result.metrics["trend"]


def test_the_bundle_carries_the_pooled_network_once(run: tuple[list[PriceSeries], TrainingRun, Path]) -> None:
    _, done, _ = run
    assert done.evaluation is not None
    assert sorted(load_experts(done.evaluation.root / "experts")) == [
        "levels/AAA", "levels/BBB", "trend", "volatility/AAA", "volatility/BBB"]


def test_the_per_symbol_backtest_refuses_the_pooled_expert_without_its_probabilities() -> None:
    with pytest.raises(ConfigError, match="trend_pooled"):
        run_symbol(synthetic_series("AAA", 1), CONFIG)


def test_the_whole_book_is_refused_with_the_pooled_expert() -> None:
    with pytest.raises(ConfigError, match="--no-book"):
        training.check_exportable(CONFIG, book=True)
    training.check_exportable(CONFIG, book=False)


def test_the_pooled_settings_are_validated_and_kept_out_of_other_configs_documents() -> None:
    with pytest.raises(ConfigError, match=r"pooled_trend\.archetype"):
        apply_overrides(CONFIG, {"pooled_trend": {"archetype": "options_skew"}})  # reads IV surfaces, not bars
    with pytest.raises(ConfigError, match=r"pooled_trend\.max_epochs"):
        apply_overrides(CONFIG, {"pooled_trend": {"max_epochs": 0}})
    assert CONFIG.to_dict()["pooled_trend"]["window"] == 16
    assert "pooled_trend" not in load_config("quick").to_dict()  # documents and run hashes as before


LSTM_CONFIG = apply_overrides(CONFIG, {"moe": {"experts": {"trend": "trend_pooled_lstm"}}})


def test_the_pooled_lstm_is_trained_by_the_trend_step_as_the_kernel_bank_network_is(tmp_path: Path) -> None:
    """``moe.experts.trend: trend_pooled_lstm``: one pooled LSTM for both symbols, with the pooled_trend settings,
    and its pooled walk-forward's probabilities for the gate step; refused where ``trend_pooled`` is."""
    series = [synthetic_series("AAA", 1), synthetic_series("BBB", 2)]
    training.train_expert("trend", series, LSTM_CONFIG, tmp_path)
    model = load_experts(tmp_path)["trend"]
    assert type(model) is PooledLSTMTrendExpert and model.series_ == ("AAA", "BBB")
    assert (model.window, model.samples_per_series, model.max_epochs) == (16, 64, 1)
    proba = training.pooled_trend_proba([tmp_path], series)
    first = CONFIG.walk_forward.initial_window
    assert proba is not None and all(np.isfinite(v[first:]).all() and np.isnan(v[:first]).all()
                                     for v in proba.values())
    with pytest.raises(ConfigError, match="trend_pooled_lstm"):
        run_symbol(series[0], LSTM_CONFIG)
    with pytest.raises(ConfigError, match="--no-book"):
        training.check_exportable(LSTM_CONFIG, book=True)
