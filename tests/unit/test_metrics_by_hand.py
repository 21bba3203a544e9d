"""The backtest's metric and cost formulas against values worked out by hand (issue 25's mutation pass).

Inputs are small arrays of binary fractions wherever a value sits on a bin edge or a comparison's boundary, so
"exactly at the level" and "exactly on the edge" are exact in floating point. NumPy and scikit-learn warnings are
errors here: a formula that divides by zero or feeds unnormalised probabilities fails instead of warning.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from signal_engine.evaluation.metrics import (
    annualised_sharpe,
    expected_calibration_error,
    level_respect_metrics,
    levels_metrics,
    periods_per_year,
    reliability,
    strategy_metrics,
    strategy_returns,
    trading_costs,
    trend_metrics,
    volatility_metrics,
)

pytestmark = pytest.mark.filterwarnings("error")
NAN = float("nan")
EXACT = 1e-12  # relative tolerance where only the last bits of a division may differ


def _assert_metrics(actual: dict[str, float], expected: dict[str, float]) -> None:
    """The same keys, and each value equal to the hand-worked one (NaN where NaN is expected)."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(actual[key]), key
        else:
            assert actual[key] == pytest.approx(value, rel=EXACT, abs=1e-15), key


# --- trend classes ------------------------------------------------------------------------------------------------


def test_trend_metrics_accuracy_three_of_four_balanced_five_sixths_log_loss_five_quarters_ln2() -> None:
    y_true = np.array([0, 1, 2, 2])
    proba = np.array([[0.5, 0.25, 0.25],  # down, right, p = 1/2
                      [0.25, 0.5, 0.25],  # neutral, right, p = 1/2
                      [0.25, 0.5, 0.25],  # up called neutral, p = 1/4
                      [0.25, 0.25, 0.5]])  # up, right, p = 1/2
    # recall per class: 1, 1, 1/2 -> balanced 5/6; log loss -(3 ln 1/2 + ln 1/4) / 4 = 5 ln 2 / 4
    _assert_metrics(trend_metrics(y_true, proba),
                    {"accuracy": 0.75, "balanced_accuracy": 5 / 6, "log_loss": 5 * math.log(2) / 4, "rows": 4})


def test_trend_metrics_normalises_each_row_before_the_log_loss() -> None:
    y_true = np.array([0, 1, 2, 2])
    halved = np.array([[0.25, 0.125, 0.125],  # the first row above at half scale: normalised back to 1/2, 1/4, 1/4
                       [0.25, 0.5, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    assert trend_metrics(y_true, halved)["log_loss"] == pytest.approx(5 * math.log(2) / 4, rel=EXACT)


def test_trend_metrics_clips_a_zero_probability_at_1e_minus_12() -> None:
    y_true = np.array([0, 1])
    proba = np.array([[0.0, 0.5, 0.5],  # true class at 0 -> 1e-12 / (1 + 1e-12): loss 12 ln 10 (+ 1e-12)
                      [0.0, 1.0, 0.0]])  # true class at 1 -> 1 / (1 + 2e-12): loss 2e-12
    scores = trend_metrics(y_true, proba)
    assert scores["log_loss"] == pytest.approx(12 * math.log(10) / 2, rel=1e-9)
    assert scores["accuracy"] == 0.5  # both called neutral (the first of the tied maxima)
    assert scores["balanced_accuracy"] == 0.5  # recall: down 0, neutral 1


# --- calibration --------------------------------------------------------------------------------------------------


def test_expected_calibration_error_uses_fifteen_bins_by_default() -> None:
    y_true = np.array([0, 1])
    proba = np.array([[15 / 32, 14 / 32, 3 / 32],  # right at confidence 15/32: bin 7 of 15 (7.03), bin 7 of 16 (7.5)
                      [0.5, 0.25, 0.25]])  # wrong at 1/2: bin 7 of 15 (7.5), bin 8 of 16
    # one bin: |1 right - 31/32 confidence| / 2 rows = 1/64 (in 16 bins it would be (17/32 + 1/2) / 2 = 33/64)
    assert expected_calibration_error(y_true, proba) == 1 / 64


def test_expected_calibration_error_puts_confidence_one_in_the_top_bin() -> None:
    y_true = np.array([1, 1, 0])
    proba = np.array([[1.0, 0.0, 0.0],  # wrong at confidence 1: clamped into bin 1 of 2
                      [0.25, 0.75, 0.0],  # right at 3/4: bin 1
                      [0.375, 0.3125, 0.3125]])  # right at 3/8: bin 0
    # bin 0: |1 - 3/8| = 5/8; bin 1: |1 - 7/4| = 3/4; sum 11/8 over 3 rows
    assert expected_calibration_error(y_true, proba, n_bins=2) == pytest.approx(11 / 24, rel=EXACT)


def test_expected_calibration_error_of_no_rows_is_nan() -> None:
    assert math.isnan(expected_calibration_error(np.array([], dtype=int), np.empty((0, 3))))


def test_expected_calibration_error_of_one_row() -> None:
    assert expected_calibration_error(np.array([2]), np.array([[0.25, 0.25, 0.5]])) == 0.5  # right at 1/2


CONFIDENCE = np.array([0.5, 0.5625, 0.8125, 0.9375, 1.0])
CORRECT = np.array([1.0, 0.0, 1.0, 0.0, 1.0])


def test_reliability_bins_ece_brier_and_hit_rate_by_hand() -> None:
    # ten bins: 0.5 and 0.5625 in bin 5 (5.625), 0.8125 in bin 8, 0.9375 and 1.0 (clamped) in bin 9
    # (in eleven bins 0.5625 would leave 0.5: 6.19 against 5.5)
    result = reliability(CONFIDENCE, CORRECT)
    # ECE: (|1 - 17/16| + |1 - 13/16| + |1 - 31/16|) / 5 = (1/16 + 3/16 + 15/16) / 5 = 19/80
    # Brier: (1/4 + 81/256 + 9/256 + 225/256 + 0) / 5 = (379/256) / 5
    assert result == {
        "ece": pytest.approx(19 / 80, rel=EXACT),
        "brier": pytest.approx(379 / 256 / 5, rel=EXACT),
        "hit_rate": pytest.approx(0.6, rel=EXACT),
        "rows": 5,
        "bins": [{"confidence": 17 / 32, "hit_rate": 0.5, "rows": 2},
                 {"confidence": 13 / 16, "hit_rate": 1.0, "rows": 1},
                 {"confidence": 31 / 32, "hit_rate": 0.5, "rows": 2}],
    }


def test_reliability_in_two_bins_keeps_confidence_one_with_the_upper_half() -> None:
    result = reliability(np.array([0.25, 0.75, 1.0]), np.array([0.0, 1.0, 0.0]), n_bins=2)
    assert result["bins"] == [{"confidence": 0.25, "hit_rate": 0.0, "rows": 1},
                              {"confidence": 0.875, "hit_rate": 0.5, "rows": 2}]
    assert result["ece"] == pytest.approx((0.25 + 0.75) / 3, rel=EXACT)  # |0 - 1/4| + |1 - 7/4|


def test_reliability_of_no_rows_is_nan_with_no_bins() -> None:
    result = reliability(np.array([]), np.array([]))
    _assert_metrics({k: v for k, v in result.items() if k != "bins"},
                    {"ece": NAN, "brier": NAN, "hit_rate": NAN, "rows": 0})
    assert result["bins"] == []


# --- volatility ---------------------------------------------------------------------------------------------------


def test_volatility_metrics_skip_rows_where_either_side_is_not_finite() -> None:
    forecast = np.array([1.0, 2.0, NAN, 4.0, 0.5, np.inf])
    realised = np.array([0.5, 2.0, 1.0, NAN, 0.5, 1.0])
    # kept rows 0, 1, 4: QLIKE (0 + 1/2) + (ln 2 + 1) + (-ln 2 + 1) = 5/2 over 3; MSE (1/4 + 0 + 0) / 3
    _assert_metrics(volatility_metrics(forecast, realised), {"qlike": 5 / 6, "mse": 1 / 12, "rows": 3})


# --- levels -------------------------------------------------------------------------------------------------------

# support, resistance, close, future low, future high, close at the horizon
LEVEL_ROWS = np.array([
    [90.0, 110.0, 100.0, 90.0, 105.0, 90.0],  # support touched exactly, held exactly (later == support)
    [45.0, 55.0, 50.0, 46.0, 55.0, 55.0],  # resistance touched exactly, held exactly (later == resistance)
    [90.0, 110.0, 100.0, 80.0, 120.0, 85.0],  # both touched: support broken, resistance held
    [90.0, 110.0, 100.0, 95.0, 100.0, 100.0],  # neither touched
    [90.0, 110.0, 100.0, 100.0, 115.0, 112.0],  # resistance touched and broken
    [90.0, 110.0, 100.0, NAN, 120.0, 100.0],  # no future low: skipped
    [90.0, 110.0, 100.0, 80.0, NAN, 100.0],  # no future high: skipped
    [90.0, 110.0, 100.0, 80.0, 120.0, NAN],  # no close at the horizon: skipped
])


def _levels_args(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    return rows[:, :2], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]


def test_levels_metrics_errors_touches_and_holds_by_hand() -> None:
    # |support - low| / close: 0, 1/50, 10/100, 5/100, 10/100; |resistance - high| / close: 5/100, 0, 10/100,
    # 10/100, 5/100. Support touched in rows 0, 2 (held in 0); resistance in 1, 2, 4 (held in 1, 2)
    _assert_metrics(levels_metrics(*_levels_args(LEVEL_ROWS)), {
        "support_error": 0.27 / 5, "resistance_error": 0.30 / 5,
        "support_touch_rate": 2 / 5, "resistance_touch_rate": 3 / 5,
        "support_hold_rate": 1 / 2, "resistance_hold_rate": 2 / 3, "rows": 5,
    })


def test_levels_metrics_hold_rate_without_touches_is_nan() -> None:
    scores = levels_metrics(*_levels_args(LEVEL_ROWS[[3]]))
    assert scores["support_touch_rate"] == 0.0 and scores["resistance_touch_rate"] == 0.0
    assert math.isnan(scores["support_hold_rate"]) and math.isnan(scores["resistance_hold_rate"])


# support, resistance, close, future low, future high, close at the horizon, band
RESPECT_ROWS = np.array([
    [96.0, 104.0, 100.0, 98.0, 101.0, 96.0, 2.0],  # support: low == support + band, later == support; resistance not
    [96.0, 104.0, 100.0, 99.0, 102.0, 104.0, 2.0],  # resistance: high == resistance - band, later == resistance
    [96.0, 104.0, 100.0, 90.0, 110.0, 100.0, 2.0],  # both respected
    [96.0, 104.0, 100.0, 90.0, 110.0, 95.0, 2.0],  # support broken (later below it), resistance respected
    [48.0, 56.0, 50.0, 52.0, 53.0, 52.0, 1.0],  # neither approached
    # each respected on both sides but for one missing value: skipped
    [96.0, 104.0, 100.0, NAN, 110.0, 100.0, 2.0],
    [96.0, 104.0, 100.0, 90.0, NAN, 100.0, 2.0],
    [96.0, 104.0, 100.0, 90.0, 110.0, NAN, 2.0],
    [96.0, 104.0, 100.0, 90.0, 110.0, 100.0, NAN],
    [NAN, 104.0, 100.0, 90.0, 110.0, 100.0, 2.0],
    [96.0, NAN, 100.0, 90.0, 110.0, 100.0, 2.0],
])


def _respect_args(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    return rows[:, :2], rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]


def test_level_respect_metrics_by_hand() -> None:
    # support respected in rows 0, 2; resistance in 1, 2, 3; width (104 - 96) / 100 four times, (56 - 48) / 50
    _assert_metrics(level_respect_metrics(*_respect_args(RESPECT_ROWS)), {
        "support_respect_rate": 2 / 5, "resistance_respect_rate": 3 / 5, "respect_rate": 5 / 10,
        "mean_band_width": (4 * 0.08 + 0.16) / 5,
    })


def test_level_respect_metrics_without_a_complete_row_are_nan() -> None:
    _assert_metrics(level_respect_metrics(*_respect_args(RESPECT_ROWS[5:])), {
        "support_respect_rate": NAN, "resistance_respect_rate": NAN, "respect_rate": NAN, "mean_band_width": NAN,
    })


# --- costs and returns --------------------------------------------------------------------------------------------


def test_trading_costs_are_bps_of_the_traded_exposure_from_flat() -> None:
    position = np.array([0.5, -0.5, -0.5, 0.25])
    # traded 1/2 (from flat), 1, 0, 3/4 at 10 bps = 0.001 of the traded exposure
    np.testing.assert_allclose(trading_costs(position, 10.0), [0.0005, 0.001, 0.0, 0.00075], rtol=EXACT, atol=0)


def test_trading_costs_of_integer_positions_and_costs() -> None:
    np.testing.assert_allclose(trading_costs(np.array([2, 0, 1]), 5), [0.001, 0.001, 0.0005], rtol=EXACT, atol=0)


def test_trading_costs_of_a_book_sum_each_symbols_own_cost() -> None:
    position = np.array([[1.0, 0.0],
                         [0.5, -1.0],
                         [0.5, -1.0]])
    # traded [1, 0], [1/2, 1], [0, 0] at 10 and 20 bps: 0.001, 0.0005 + 0.002, 0
    np.testing.assert_allclose(trading_costs(position, np.array([10.0, 20.0])), [0.001, 0.0025, 0.0],
                               rtol=EXACT, atol=0)


def test_trading_costs_of_one_bar_of_a_book_trade_every_leg_from_flat() -> None:
    np.testing.assert_allclose(trading_costs(np.array([[0.5, -0.25]]), np.array([10.0, 40.0])), [0.0015],
                               rtol=EXACT, atol=0)


def test_strategy_returns_hold_the_position_over_the_next_bar_less_costs() -> None:
    position = np.array([1.0, 1.0, -1.0, 0.0])
    next_return = np.array([0.25, -0.5, 0.125, 0.5])
    # gross 1/4, -1/2, -1/8, 0; traded 1, 0, 2, 1 at 100 bps: 0.01, 0, 0.02, 0.01
    np.testing.assert_allclose(strategy_returns(position, next_return, 100.0), [0.24, -0.5, -0.145, -0.01],
                               rtol=EXACT, atol=0)


# --- Sharpe and the strategy summary ------------------------------------------------------------------------------


def test_annualised_sharpe_mean_over_sample_std_times_root_periods() -> None:
    # mean 1, std (ddof 1) sqrt((4 + 0 + 4) / 2) = 2: 1/2 x sqrt(16) = 2
    assert annualised_sharpe(np.array([-1.0, 1.0, 3.0]), 16.0) == 2.0


def test_annualised_sharpe_of_two_returns() -> None:
    # mean 2, std (ddof 1) sqrt(2): sqrt(2) x sqrt(2) = 2
    assert annualised_sharpe(np.array([1.0, 3.0]), 2.0) == pytest.approx(2.0, rel=EXACT)


@pytest.mark.parametrize("returns", [[], [0.5], [0.25, 0.25, 0.25]], ids=["none", "one", "constant"])
def test_annualised_sharpe_without_dispersion_is_zero(returns: list[float]) -> None:
    assert annualised_sharpe(np.array(returns), 252.0) == 0.0


POSITION = np.array([1.0, 0.5, -0.5, 0.0])
NET = np.array([-0.5, 1.0, 0.5, 0.5])  # equity 1/2, 1, 3/2, 9/4


def test_strategy_metrics_by_hand() -> None:
    # two years of two bars: CAGR sqrt(9/4) - 1 = 1/2; drawdown from the starting 1 to 1/2; traded 1, 1/2, 1, 1/2
    # = 3 over 2 years; signs 1, 1, -1, 0: three trades; mean |position| 1/2
    # Sharpe: mean 3/8, squared deviations 49/64 + 25/64 + 1/64 + 1/64 = 76/64 over 3, times sqrt(2)
    _assert_metrics(strategy_metrics(POSITION, NET, 2.0), {
        "sharpe": 0.375 / math.sqrt(76 / 64 / 3) * math.sqrt(2), "cagr": 0.5, "max_drawdown": -0.5,
        "turnover": 1.5, "trades": 3, "total_return": 1.25, "exposure": 0.5,
    })


def test_strategy_metrics_drawdown_is_from_the_running_peak() -> None:
    net = np.array([0.5, -0.5, 1.0, -0.25])  # equity 3/2, 3/4, 3/2, 9/8: down 1/2 from the peak of 3/2
    scores = strategy_metrics(np.ones(4), net, 8.0)
    assert scores["max_drawdown"] == -0.5
    assert scores["total_return"] == 0.125
    assert scores["cagr"] == pytest.approx(1.125**2 - 1.0, rel=EXACT)  # half a year
    assert scores["turnover"] == 2.0  # the one entry, 1 over half a year
    assert scores["trades"] == 1


def test_strategy_metrics_of_a_loss_within_the_first_year() -> None:
    scores = strategy_metrics(np.array([0.5, 0.5]), np.array([-0.5, 0.5]), 4.0)  # equity 1/2, 3/4 in half a year
    assert scores["cagr"] == pytest.approx(0.75**2 - 1.0, rel=EXACT)
    assert scores["max_drawdown"] == -0.5
    assert scores["turnover"] == 1.0  # 1/2 traded over half a year


def test_strategy_metrics_of_a_wiped_out_account() -> None:
    scores = strategy_metrics(np.ones(2), np.array([-1.0, 0.5]), 2.0)  # equity 0, 0
    assert scores["cagr"] == -1.0
    assert scores["total_return"] == -1.0
    assert scores["max_drawdown"] == -1.0


def test_strategy_metrics_of_a_loss_beyond_the_capital() -> None:
    # leveraged: equity 3/2, 9/4, then 9/4 x (1 - 3) = -9/2; no growth rate of a negative equity: CAGR -1
    scores = strategy_metrics(np.full(3, 3.0), np.array([0.5, 0.5, -3.0]), 3.0)
    assert scores["cagr"] == -1.0
    assert scores["total_return"] == -5.5
    assert scores["max_drawdown"] == -3.0  # -9/2 against the peak of 9/4


def test_strategy_metrics_attribute_costs() -> None:
    costs = np.array([0.25, 0.0, 0.125, 0.0])
    scores = strategy_metrics(POSITION, NET, 2.0, costs=costs)
    # gross returns -1/4, 1, 5/8, 1/2: mean 15/32; deviations -23/32, 17/32, 5/32, 1/32 -> squares 844/1024
    assert scores["gross_sharpe"] == pytest.approx(15 / 32 / math.sqrt(844 / 1024 / 3) * math.sqrt(2), rel=EXACT)
    assert scores["cost_drag"] == 0.1875  # 3/8 over two years
    assert scores["sharpe"] == pytest.approx(0.375 / math.sqrt(76 / 64 / 3) * math.sqrt(2), rel=EXACT)


def test_strategy_metrics_cost_drag_within_the_first_year() -> None:
    scores = strategy_metrics(POSITION, NET, 8.0, costs=np.array([0.25, 0.0, 0.125, 0.0]))
    assert scores["cost_drag"] == 0.75  # 3/8 over half a year


def test_strategy_metrics_without_costs_attribute_nothing() -> None:
    assert "gross_sharpe" not in strategy_metrics(POSITION, NET, 2.0)
    assert "cost_drag" not in strategy_metrics(POSITION, NET, 2.0)


@pytest.mark.parametrize(("costs", "bars"), [(np.zeros(3), 3), (np.array(0.5), 0), (np.zeros((4, 1)), 4)])
def test_strategy_metrics_refuse_costs_of_other_bars(costs: np.ndarray, bars: int) -> None:
    message = (f"costs: {bars} bars for 4 net returns; pass the per-bar costs of the same bars")
    with pytest.raises(ValueError) as raised:
        strategy_metrics(POSITION, NET, 2.0, costs=costs)
    assert str(raised.value) == message


# --- calendar -----------------------------------------------------------------------------------------------------


def test_periods_per_year_three_bars_over_one_day() -> None:
    stamps = np.array(["2024-01-01T00", "2024-01-01T12", "2024-01-02T00"], dtype="datetime64[h]")
    assert periods_per_year(stamps) == pytest.approx(2 * 365.25, rel=EXACT)  # 2 intervals a day


def test_periods_per_year_of_daily_bars_over_two_years() -> None:
    stamps = np.array(["2000-01-01T00", "2001-01-01T00", "2001-12-31T12"], dtype="datetime64[h]")  # 730.5 days
    assert periods_per_year(stamps) == pytest.approx(1.0, rel=EXACT)  # 2 intervals over 2 years


@pytest.mark.parametrize("stamps", [["2024-01-01"], ["2024-01-02", "2024-01-01"], ["2024-01-01", "2024-01-01"]],
                         ids=["one", "backwards", "no span"])
def test_periods_per_year_without_a_span_falls_back_to_252(stamps: list[str]) -> None:
    assert periods_per_year(np.array(stamps, dtype="datetime64[D]")) == 252.0
