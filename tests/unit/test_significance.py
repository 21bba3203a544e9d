"""The paired stationary bootstrap of a Sharpe difference, on synthetic returns whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.metrics import annualised_sharpe, strategy_metrics
from signal_engine.evaluation.significance import (
    panel_mean_difference,
    panel_sharpe_difference,
    sharpe_difference,
)

PPY = 252.0


def returns(seed: int, n: int = 2000, mean: float = 0.0003, vol: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, vol, n)


def test_the_point_estimate_is_the_difference_of_the_reported_sharpes() -> None:
    a, b = returns(1), returns(2)
    result = sharpe_difference(a, b, PPY)
    expected = strategy_metrics(np.ones_like(a), a, PPY)["sharpe"] - strategy_metrics(np.ones_like(b), b, PPY)["sharpe"]
    assert result.difference == pytest.approx(expected, abs=1e-12)
    assert annualised_sharpe(a, PPY) == pytest.approx(strategy_metrics(np.ones_like(a), a, PPY)["sharpe"])


def test_a_strategy_against_itself_differs_by_nothing() -> None:
    a = returns(3)
    result = sharpe_difference(a, a.copy(), PPY, reps=200)
    assert result.difference == 0.0 and result.low == 0.0 and result.high == 0.0
    assert result.p_value == 1.0


def test_a_clearly_better_strategy_has_an_interval_above_zero() -> None:
    noise = returns(4, mean=0.0)
    better = noise + 0.002  # the same risk with 50% a year more return: Sharpe about 3 higher
    result = sharpe_difference(better, noise, PPY, reps=300)
    assert result.low > 0.0 and result.p_value < 0.01
    assert result.low <= result.difference <= result.high


def test_two_unrelated_noise_series_are_not_told_apart() -> None:
    result = sharpe_difference(returns(5, mean=0.0), returns(6, mean=0.0), PPY, reps=300)
    assert result.low < 0.0 < result.high and result.p_value > 0.05


def test_autocorrelated_returns_get_longer_blocks() -> None:
    rng = np.random.default_rng(7)
    shocks = rng.normal(0, 0.01, 3000)
    persistent = np.empty_like(shocks)
    persistent[0] = shocks[0]
    for t in range(1, len(shocks)):
        persistent[t] = 0.8 * persistent[t - 1] + shocks[t]
    independent = sharpe_difference(returns(8, 3000), returns(9, 3000), PPY, reps=50)
    dependent = sharpe_difference(persistent, returns(10, 3000), PPY, reps=50)
    assert dependent.block > independent.block


def test_same_seed_same_interval_and_the_level_widens_it() -> None:
    a, b = returns(11), returns(12)
    first, again = sharpe_difference(a, b, PPY, seed=3), sharpe_difference(a, b, PPY, seed=3)
    assert first == again
    wide = sharpe_difference(a, b, PPY, seed=3, level=0.99)
    assert wide.low <= first.low and wide.high >= first.high


@pytest.mark.parametrize(("a", "b", "message"), [
    (np.zeros(30), np.zeros(31), "one length"),
    (np.zeros(10), np.zeros(10), "at least 20"),
    (np.r_[np.zeros(29), np.nan], np.zeros(30), "NaN"),
])
def test_bad_series_are_named(a: np.ndarray, b: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sharpe_difference(a, b, PPY)


def _dated(values: np.ndarray, start: str) -> pd.Series:
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)))


def test_the_panel_difference_weighs_each_series_once_whatever_its_length() -> None:
    short, long = _dated(np.full(30, 1.0), "2001-01-01"), _dated(np.full(90, 3.0), "2010-01-01")
    pooled = panel_mean_difference({"short": short, "long": long}, reps=200)
    assert pooled.difference == pytest.approx(2.0)  # (1 + 3) / 2; weighting bars would give 2.5
    assert (pooled.low, pooled.high) == (pytest.approx(2.0), pytest.approx(2.0))  # constant series: no spread
    assert pooled.bars == 120


def test_series_on_shared_dates_are_resampled_together() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 1.0, 400)
    a, b = _dated(noise, "2001-01-01"), _dated(-noise, "2001-01-01")
    pooled = panel_mean_difference({"a": a, "b": b}, reps=300)
    assert pooled.difference == pytest.approx(0.0, abs=1e-12)
    assert pooled.high - pooled.low == pytest.approx(0.0, abs=1e-12)  # each draw takes a date for both
    alone = panel_mean_difference({"a": a, "b": _dated(-noise, "2005-01-03")}, reps=300)
    assert alone.high - alone.low > 0.05  # on different dates the two means vary independently


def test_a_panel_with_one_series_is_that_series_mean() -> None:
    values = np.random.default_rng(2).normal(0.3, 1.0, 300)
    pooled = panel_mean_difference({"only": _dated(values, "2001-01-01")}, reps=300)
    assert pooled.difference == pytest.approx(float(values.mean()))
    assert pooled.low < pooled.difference < pooled.high


def test_bad_panels_are_named() -> None:
    with pytest.raises(ValueError, match="at least one series"):
        panel_mean_difference({})
    with pytest.raises(ValueError, match="short: a mean difference needs at least 20"):
        panel_mean_difference({"short": _dated(np.ones(5), "2001-01-01")})
    with pytest.raises(ValueError, match="gap: the differences hold NaN"):
        panel_mean_difference({"gap": _dated(np.append(np.ones(30), np.nan), "2001-01-01")})


def _pair(a: np.ndarray, b: np.ndarray, start: str) -> pd.DataFrame:
    return pd.DataFrame({"a": a, "b": b}, index=pd.bdate_range(start, periods=len(a)))


def test_the_panel_sharpe_difference_by_hand() -> None:
    """Series X: a = (0.03, -0.01) x 20, mean 0.01, std 0.02 sqrt(40/39), Sharpe (1 a year) 0.5 sqrt(39/40); b = -a:
    difference sqrt(39/40). Series Y (other dates, 4 a year): a = b, difference 0. Pooled: sqrt(39/40) / 2; Y's
    periods a year do not enter."""
    x = np.tile([0.03, -0.01], 20)
    y = returns(4, n=60)
    pooled = panel_sharpe_difference({"X": _pair(x, -x, "2001-01-01"), "Y": _pair(y, y, "2010-01-01")},
                                     {"X": 1.0, "Y": 4.0}, reps=200)
    assert pooled.difference == pytest.approx(np.sqrt(39 / 40) / 2)
    assert pooled.bars == 100
    alone = panel_sharpe_difference({"X": _pair(x, -x, "2001-01-01")}, {"X": 252.0}, reps=300)
    assert alone.difference == pytest.approx(np.sqrt(39 / 40) * np.sqrt(252.0))
    assert alone.low <= alone.difference <= alone.high


def test_the_panel_sharpe_difference_of_one_series_matches_the_paired_one() -> None:
    """One series: the same point estimate as ``sharpe_difference`` and an interval of similar width."""
    a, b = returns(5, n=800), returns(6, n=800)
    pooled = panel_sharpe_difference({"only": _pair(a, b, "2001-01-01")}, {"only": PPY}, reps=400)
    paired = sharpe_difference(a, b, PPY, reps=400)
    assert pooled.difference == pytest.approx(paired.difference, abs=1e-12)
    assert pooled.high - pooled.low == pytest.approx(paired.high - paired.low, rel=0.35)


def test_bad_sharpe_panels_are_named() -> None:
    with pytest.raises(ValueError, match="at least one series"):
        panel_sharpe_difference({}, {})
    with pytest.raises(ValueError, match="Z: expected columns a and b"):
        panel_sharpe_difference({"Z": _pair(returns(1, n=30), returns(2, n=30), "2001-01-01")}, {})
