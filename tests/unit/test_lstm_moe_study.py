"""The MoE-level study of the pooled LSTM: each series gets its own pooled probabilities, the right returns are
paired, and the rule. Stand-ins replace the pooled walk-forward and the backtest (no network is fitted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import RunConfig, load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation import lstm_moe_study as study

CONFIG = load_config("quick")  # 1,008 bars at least for the backtest
STEP = np.tile([0.03, -0.01], 20)  # mean 0.01, std 0.02 sqrt(40/39): Sharpe 0.5 sqrt(39/40) a bar


def _series(symbol: str, bars: int) -> PriceSeries:
    index = pd.date_range("2000-01-01", periods=bars, freq="D", name="timestamp")  # 365.25 bars a year
    close = np.linspace(100.0, 120.0, bars)
    return PriceSeries(symbol, f"{symbol}.csv", pd.DataFrame({"open": close, "high": close, "low": close,
                                                              "close": close}, index=index))


SERIES = [_series("AAA", 1100), _series("BBB", 1200), _series("SHORT", 900)]
# what each arm's stand-in backtest earns on each series' last 40 bars
EARNED = {("lstm", "AAA"): STEP, ("lightgbm", "AAA"): STEP, ("lstm", "BBB"): STEP, ("lightgbm", "BBB"): -STEP}


def _own_proba(series: Sequence[PriceSeries], config: RunConfig, cache: Path | None) -> dict[str, np.ndarray]:
    """Each series' stand-in pooled probabilities: every row (n, n, n) for the series' bar count n."""
    return {s.symbol: np.full((len(s), 3), float(len(s))) for s in series}


class Backtest:
    """Records each call (symbol, trend expert, trend probabilities) and earns ``EARNED``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, series: PriceSeries, config: RunConfig, trend_proba: np.ndarray | None) -> Any:
        arm = "lstm" if config.moe.experts.trend == "trend_pooled_lstm" else "lightgbm"
        self.calls.append((series.symbol, config.moe.experts.trend, trend_proba))
        returns = pd.Series(EARNED[(arm, series.symbol)], index=series.bars.index[-40:])
        metrics = {"sharpe": len(self.calls), "max_drawdown": -0.1, "turnover": 2.0}
        return SimpleNamespace(returns={"moe": returns}, metrics={"strategies": {"moe": metrics}})


def test_each_series_gets_its_own_pooled_probabilities_and_the_default_none() -> None:
    backtest = Backtest()
    document = study.study_of(SERIES, CONFIG, None, reps=50, run=backtest, proba=_own_proba)
    assert document["left_out"] == ["SHORT"]
    assert [(symbol, trend) for symbol, trend, _ in backtest.calls] == [
        ("AAA", "trend_pooled_lstm"), ("BBB", "trend_pooled_lstm"), ("AAA", "trend_calibrated"),
        ("BBB", "trend_calibrated")]
    lstm_aaa, lstm_bbb, lightgbm_aaa, lightgbm_bbb = (proba for _, _, proba in backtest.calls)
    assert lstm_aaa.shape == (1100, 3) and (lstm_aaa == 1100.0).all()
    assert lstm_bbb.shape == (1200, 3) and (lstm_bbb == 1200.0).all()
    assert lightgbm_aaa is None and lightgbm_bbb is None


def test_the_right_returns_are_paired() -> None:
    """AAA: both arms earn STEP, difference 0. BBB: the LSTM earns STEP, LightGBM -STEP: difference twice STEP's
    Sharpe, sqrt(39/40) a bar x sqrt(365.25). Pairing AAA's LSTM with BBB's LightGBM would give a non-zero AAA."""
    document = study.study_of(SERIES, CONFIG, None, reps=50, run=Backtest(), proba=_own_proba)
    per_bar = np.sqrt(39 / 40) * np.sqrt(365.25)
    assert document["series"]["AAA"]["difference"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert document["series"]["BBB"]["difference"]["difference"] == pytest.approx(per_bar)
    assert document["pooled"]["difference"]["difference"] == pytest.approx(per_bar / 2)
    assert document["series"]["BBB"]["bars"] == 40 and document["pooled"]["bars"] == 80
    # the backtest's own metrics per arm: calls 1, 2 (LSTM: AAA, BBB) and 3, 4 (LightGBM)
    assert document["series"]["AAA"]["lstm"]["sharpe"] == 1 and document["series"]["AAA"]["lightgbm"]["sharpe"] == 3
    assert document["pooled"]["lightgbm"]["sharpe"] == pytest.approx(3.5)
    assert document["pooled"]["lstm_wins"] == 1


def test_a_cached_walk_forward_is_read_back_not_run_again(tmp_path: Path) -> None:
    first = study.study_of(SERIES, CONFIG, tmp_path, reps=50, run=Backtest(), proba=_own_proba)
    again = Backtest()
    second = study.study_of(SERIES, CONFIG, tmp_path, reps=50, run=again, proba=_own_proba)
    assert again.calls == []
    assert second["series"] == first["series"] and second["pooled"] == first["pooled"]


@pytest.mark.parametrize(("low", "decision"), [(0.01, "pooled LSTM qualifies"), (0.0, "LightGBM stays"),
                                                (-0.2, "LightGBM stays")])
def test_the_rule_needs_the_whole_interval_above_zero(low: float, decision: str) -> None:
    assert study.decide({"difference": {"difference": 0.3, "low": low, "high": 0.5}}) == decision
