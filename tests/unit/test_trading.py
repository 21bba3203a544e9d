"""From score to position to net return: holding rule, volatility target, costs and metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation.metrics import (
    annualised_sharpe,
    periods_per_year,
    strategy_metrics,
    strategy_returns,
    trading_costs,
)
from signal_engine.evaluation.walkforward import schedule
from signal_engine.risk import held_direction, volatility_target_position


def test_holding_rule_enters_on_signals_and_exits_across_the_exit_level() -> None:
    score = np.array([0.0, 0.2, 0.05, -0.02, -0.05, -0.3, -0.05, 0.01, np.nan, 0.5])
    held = held_direction(score, enter_long=0.1, enter_short=-0.1, exit_level=0.0)
    assert held.tolist() == [0, 1, 1, 0, 0, -1, -1, 0, 0, 1]


def test_volatility_target_sizes_and_caps_exposure() -> None:
    direction = np.array([1, -1, 1, 0, 1])
    forecast = np.array([0.02, 0.005, np.nan, 0.01, 0.01])
    position = volatility_target_position(direction, forecast, target_vol_per_bar=0.01, max_leverage=1.0)
    np.testing.assert_allclose(position, [0.5, -1.0, 0.0, 0.0, 1.0])
    long_only = volatility_target_position(direction, forecast, target_vol_per_bar=0.01, allow_short=False)
    assert long_only[1] == 0.0


def test_costs_are_charged_on_every_change_of_exposure() -> None:
    position = np.array([1.0, 1.0, -1.0, 0.0])
    next_return = np.array([0.01, -0.02, 0.03, 0.01])
    net = strategy_returns(position, next_return, cost_bps=10)
    np.testing.assert_allclose(net, [0.01 - 0.001, -0.02, -0.03 - 0.002, -0.001])


def test_strategy_metrics_by_hand() -> None:
    net = np.array([0.1, -0.5, 0.2])
    position = np.array([1.0, 1.0, 0.0])
    metrics = strategy_metrics(position, net, periods_per_year=3)
    equity = np.cumprod(1 + net)
    assert metrics["max_drawdown"] == pytest.approx(equity[1] / equity[0] - 1)
    assert metrics["total_return"] == pytest.approx(equity[-1] - 1)
    assert metrics["cagr"] == pytest.approx(equity[-1] - 1)
    assert metrics["sharpe"] == pytest.approx(np.mean(net) / np.std(net, ddof=1) * np.sqrt(3))
    assert metrics["trades"] == 2
    assert metrics["turnover"] == pytest.approx(2.0)


def test_cost_attribution_splits_the_net_result_into_signal_and_costs() -> None:
    position = np.array([0.5, 1.0, -1.0, -1.0, 0.0, 0.0])
    next_return = np.array([0.01, -0.02, 0.015, -0.01, 0.02, 0.005])
    costs = trading_costs(position, 20.0)
    np.testing.assert_allclose(costs, np.array([0.5, 0.5, 2.0, 0.0, 1.0, 0.0]) * 20.0 / 1e4)
    net = strategy_returns(position, next_return, 20.0)
    metrics = strategy_metrics(position, net, periods_per_year=6, costs=costs)
    gross = position * next_return
    assert metrics["gross_sharpe"] == pytest.approx(np.mean(gross) / np.std(gross, ddof=1) * np.sqrt(6))
    assert metrics["gross_sharpe"] > metrics["sharpe"]
    assert metrics["cost_drag"] == pytest.approx(metrics["turnover"] * 20.0 / 1e4)  # one year of bars
    free = strategy_metrics(position, gross, periods_per_year=6, costs=np.zeros(6))
    assert free["gross_sharpe"] == pytest.approx(free["sharpe"]) and free["cost_drag"] == 0.0
    assert "gross_sharpe" not in strategy_metrics(position, net, periods_per_year=6)


def test_costs_of_a_book_are_charged_per_symbol() -> None:
    book = np.array([[0.5, -0.5], [0.5, 0.5], [0.0, 0.0]])
    np.testing.assert_allclose(trading_costs(book, np.array([10.0, 1.0])),
                               [(0.5 * 10 + 0.5 * 1) / 1e4, (1.0 * 1) / 1e4, (0.5 * 10 + 0.5 * 1) / 1e4])


def test_cost_attribution_refuses_costs_of_other_bars() -> None:
    with pytest.raises(ValueError, match="costs: 2 bars for 3 net returns"):
        strategy_metrics(np.ones(3), np.zeros(3), periods_per_year=3, costs=np.zeros(2))


def test_periods_per_year_from_timestamps() -> None:
    daily = np.arange("2020-01-01", "2021-01-01", dtype="datetime64[D]").astype("datetime64[ns]")
    assert periods_per_year(daily) == pytest.approx(365.25 * 365 / 365, rel=0.01)


def test_schedule_is_anchored_at_the_start_and_unchanged_by_later_data() -> None:
    config = WalkForwardConfig(initial_window=100, validation_bars=50, refit_every=40, min_test_bars=10)
    short, long = schedule(230, config), schedule(1000, config)
    assert [b.fit_at for b in short] == [100, 140, 180, 220]
    assert long[: len(short) - 1] == short[:-1]
    assert short[-1].stop == 230
    assert all(b.start == b.fit_at for b in long)


def test_sharpe_without_dispersion_is_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one return (ddof 1) or constant returns: no 0/0 on the way to 0
        assert annualised_sharpe(np.array([0.01]), 252.0) == 0.0
        assert annualised_sharpe(np.array([0.01, 0.01, 0.01]), 252.0) == 0.0
    # hand-computed: mean 0.01, std (ddof 1) 0.01 over [0, 0.01, 0.02]: Sharpe sqrt(252)
    assert annualised_sharpe(np.array([0.0, 0.01, 0.02]), 252.0) == pytest.approx(np.sqrt(252.0))
