"""The backtest sizes by ``moe.experts.sizing_volatility`` and scores by ``moe.experts.volatility``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from signal_engine.config import RunConfig, load_config
from signal_engine.data import load_prices
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SCORE_VOL_COLUMN, SymbolResult, run_symbol, series_frame
from signal_engine.evaluation.sizing_vol_study import walk_forecasts
from signal_engine.labels import make_labels

pytestmark = pytest.mark.slow

SMALL = """walk_forward: {initial_window: 300, validation_bars: 150, refit_every: 150, min_test_bars: 100}
trend: {n_estimators: 20}
suite: {enabled: false}
moe: {multistage: false}
"""
BARS = 900


def _config(tmp_path: Path, sizing: str) -> RunConfig:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    config = load_config("quick", path)
    experts = replace(config.moe.experts, volatility="volatility_blend", sizing_volatility=sizing)
    return replace(config, moe=replace(config.moe, experts=experts))


@pytest.fixture(scope="module")
def goog_head(goog_csv: Path) -> PriceSeries:
    series = load_prices(goog_csv)
    return PriceSeries(series.symbol, series.source, series.bars.iloc[:BARS])


@pytest.fixture(scope="module")
def runs(goog_head: PriceSeries, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SymbolResult]:
    folder = tmp_path_factory.mktemp("sizing")
    return {sizing: run_symbol(goog_head, _config(folder, sizing)) for sizing in ("volatility_blend", "vol_har")}


def test_the_moes_decisions_do_not_depend_on_the_sizing_forecast(runs: dict[str, SymbolResult]) -> None:
    blend, har = runs["volatility_blend"].signals, runs["vol_har"].signals
    for column in ("signal", "score", "confidence", "p_up", "p_down", "gate_trend", "gate_levels", "gate_volatility",
                   SCORE_VOL_COLUMN):
        assert blend[column].equals(har[column]), column
    np.testing.assert_array_equal(blend[SCORE_VOL_COLUMN], blend["vol_forecast"])  # one model for both
    assert not np.allclose(har["vol_forecast"], har[SCORE_VOL_COLUMN])


def test_vol_forecast_is_the_har_walk_forward_and_positions_are_sized_by_it(
        goog_head: PriceSeries, runs: dict[str, SymbolResult], tmp_path: Path) -> None:
    config = _config(tmp_path, "vol_har")
    frame = series_frame(goog_head)
    labels = make_labels(goog_head.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    har = walk_forecasts(frame, labels, config, candidates=("vol_har",))["vol_har"]  # the study's own walk-forward
    result = runs["vol_har"]
    signals = result.signals
    np.testing.assert_allclose(signals["vol_forecast"], np.sqrt(har[config.walk_forward.test_start:]), rtol=1e-12)

    target = config.trading.target_vol_annual / np.sqrt(result.data["periods_per_year"])
    held = signals["position"].to_numpy() != 0
    expected = np.minimum(target / signals["vol_forecast"].to_numpy(), config.trading.max_leverage)
    assert held.sum() > 50
    np.testing.assert_allclose(np.abs(signals["position"].to_numpy()[held]), expected[held], rtol=1e-12)

    assert {"vol_har", "volatility_blend", "baseline_garch11", "baseline_ewma"} == set(result.metrics["volatility"])
    experts = result.diagnostics["moe"]["experts"]
    assert (experts["volatility"], experts["sizing_volatility"]) == ("volatility_blend", "vol_har")
