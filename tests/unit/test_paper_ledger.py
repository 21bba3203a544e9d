"""The paper ledger (orders, fills at a close with costs, P&L) by hand, against the backtest's accounting, and
the band of what the backtest expected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.evaluation.metrics import trading_costs
from signal_engine.evaluation.portfolio import book_returns
from signal_engine.paper.band import expectation_band, stationary_indices
from signal_engine.paper.ledger import paper_ledger

TIMELINE = pd.date_range("2024-01-01", periods=4, freq="D")
CLOSES = np.array([[100.0], [110.0], [99.0], [99.0]])
RETURNS = np.array([[np.nan], [0.1], [-0.1], [0.0]])
TARGETS = np.array([[1.0], [1.0], [0.0], [0.0]])
BAR = np.ones((4, 1), dtype=bool)


def test_next_close_fills_each_order_at_the_following_close_and_pays_the_cost_there() -> None:
    ledger = paper_ledger("daily", ["X"], TIMELINE, BAR, CLOSES, RETURNS, TARGETS, [10.0])
    assert ledger.orders[["decided_at", "from_position", "to_position"]].values.tolist() == [
        [TIMELINE[0], 0.0, 1.0], [TIMELINE[2], 1.0, 0.0]]
    fills = ledger.fills
    assert fills["filled_at"].tolist() == [TIMELINE[1], TIMELINE[3]]
    assert fills["price"].tolist() == [110.0, 99.0]
    np.testing.assert_allclose(fills["shares"], [1.0 / 110.0, -0.8991 / 99.0], rtol=1e-12)
    np.testing.assert_allclose(fills["cost"], [0.001, 0.001 * 0.8991], rtol=1e-12)
    np.testing.assert_allclose(ledger.account["net_return"], [0.0, -0.001, -0.1, -0.001], atol=1e-15)
    np.testing.assert_allclose(ledger.account["equity"], [1.0, 0.999, 0.8991, 0.8991 * 0.999], rtol=1e-12)


def test_same_close_fills_earn_what_the_backtest_books_with_the_cost_one_bar_earlier() -> None:
    ledger = paper_ledger("daily", ["X"], TIMELINE, BAR, CLOSES, RETURNS, TARGETS, [10.0], fill="same_close")
    np.testing.assert_allclose(ledger.account["net_return"], [-0.001, 0.1, -0.101, 0.0], atol=1e-15)
    backtest = book_returns(pd.DataFrame(TARGETS), pd.DataFrame(RETURNS), np.array([10.0]))
    np.testing.assert_allclose(backtest, [0.0, 0.099, -0.1, -0.001], atol=1e-15)


def test_same_close_ledger_matches_the_backtests_returns_on_random_books() -> None:
    rng = np.random.default_rng(3)
    n, k = 300, 3
    has_bar = rng.random((n, k)) > 0.1
    has_bar[0] = True
    returns = np.where(has_bar, rng.normal(0, 0.01, (n, k)), np.nan)
    closes = np.where(has_bar, 100 * np.exp(np.nancumsum(np.nan_to_num(returns), axis=0)), np.nan)
    raw = np.round(rng.uniform(-0.4, 0.4, (n, k)), 2)
    targets = raw.copy()
    for i in range(1, n):  # a symbol without a bar keeps its position (the book's rule)
        targets[i] = np.where(has_bar[i], raw[i], targets[i - 1])
    cost = np.array([5.0, 1.0, 2.0])
    timeline = pd.date_range("2020-01-01", periods=n, freq="D")
    ledger = paper_ledger("b", ["A", "B", "C"], timeline, has_bar, closes, returns, targets, cost, fill="same_close")
    gross = ledger.account["gross_return"].to_numpy()
    expected_gross = np.zeros(n)
    expected_gross[1:] = (targets[:-1] * np.nan_to_num(returns[1:])).sum(axis=1)
    np.testing.assert_allclose(gross, expected_gross, atol=1e-15)
    np.testing.assert_allclose(ledger.account["cost"], trading_costs(targets, cost), atol=1e-15)
    backtest = book_returns(pd.DataFrame(targets), pd.DataFrame(returns), cost)
    np.testing.assert_allclose(backtest[1:], gross[1:] - ledger.account["cost"].to_numpy()[:-1], atol=1e-15)


def test_a_symbol_without_a_bar_waits_for_its_next_bar_to_fill() -> None:
    has_bar = np.array([[True], [False], [True], [True]])
    returns = np.where(has_bar, RETURNS, np.nan)
    ledger = paper_ledger("daily", ["X"], TIMELINE, has_bar, CLOSES, returns, TARGETS, [0.0])
    assert ledger.fills["filled_at"].tolist() == [TIMELINE[2], TIMELINE[3]]


def test_the_account_starts_flat_at_from() -> None:
    ledger = paper_ledger("daily", ["X"], TIMELINE, BAR, CLOSES, RETURNS, TARGETS, [0.0], start=TIMELINE[1])
    assert ledger.account["timestamp"].tolist() == list(TIMELINE[1:])
    assert ledger.orders["decided_at"].tolist() == [TIMELINE[1], TIMELINE[2]]


def test_an_unknown_fill_rule_is_refused() -> None:
    with pytest.raises(ConfigError, match="fill 'open'"):
        paper_ledger("daily", ["X"], TIMELINE, BAR, CLOSES, RETURNS, TARGETS, [0.0], fill="open")  # type: ignore[arg-type]


def test_stationary_indices_follow_on_within_a_block_and_wrap_around() -> None:
    indices = stationary_indices(50, 400, 10.0, 200, seed=1)
    steps = np.diff(indices, axis=1)
    follow = (steps == 1) | (steps == -49)
    assert 0.85 < follow.mean() < 0.95  # a new block starts with probability 1/10
    assert indices.min() >= 0 and indices.max() < 50


def test_live_returns_like_the_backtests_stay_in_the_band_and_a_loss_raises_an_alarm() -> None:
    rng = np.random.default_rng(0)
    expected = rng.normal(0.0005, 0.01, 1000)
    index = pd.date_range("2021-01-01", periods=250, freq="D")
    alike = expectation_band(expected, pd.Series(rng.normal(0.0005, 0.01, 250), index=index), seed=1)
    assert alike.outside_share < 0.2
    crash = np.zeros(250)
    crash[100] = -0.4
    alarmed = expectation_band(expected, pd.Series(crash, index=index), seed=1)
    assert alarmed.alarms().index[0] == index[100]
    assert alarmed.frame["outside"].iloc[100:].mean() > 0.9
    assert (alarmed.frame["band_low"] < alarmed.frame["expected"]).all()


def test_a_band_needs_enough_backtest_returns() -> None:
    with pytest.raises(SignalEngineError, match="at least 60"):
        expectation_band(np.zeros(10), pd.Series(np.zeros(5), index=pd.date_range("2021-01-01", periods=5)))
