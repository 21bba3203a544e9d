"""Implied-volatility experts on the S&P 500 and VIX that ship with `arch`: scale, abstention, no look-ahead."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.expert_suite import SuiteSettings, _skip_reason
from signal_engine.evaluation.implied_vol_study import sp500_and_vix
from signal_engine.evaluation.significance import mean_difference
from signal_engine.experts.har import HarVolatility
from signal_engine.experts.implied_volatility import HarImpliedVolatility, ImpliedVolatility
from signal_engine.experts.volatility import qlike
from signal_engine.registry import build, load_catalogue

FIT_AT = 300
BARS = 420
Market = tuple[pd.DataFrame, np.ndarray]


@pytest.fixture(scope="module")
def market() -> Market:
    """The first 420 S&P 500 bars of 2014 onwards with the VIX close of the same day; the realised target."""
    series, iv = sp500_and_vix(end="2015-12-31")
    frame = series.bars.assign(implied_vol=iv).iloc[:BARS].copy()
    realised = np.diff(np.log(frame["close"].to_numpy()), append=np.nan) ** 2
    return frame, realised


def _set(frame: pd.DataFrame, column: str, rows: np.ndarray, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace ``frame[column]`` at positions ``rows`` by ``change`` of its values there (in place)."""
    values = frame[column].to_numpy(dtype=float, copy=True)
    values[rows] = change(values[rows])
    frame[column] = values


def _known(realised: np.ndarray, fit_at: int = FIT_AT) -> np.ndarray:
    """Targets known at bar fit_at's close (the last one, fit_at -> fit_at + 1, is not)."""
    known = realised[: fit_at + 1].copy()
    known[-1] = np.nan
    return known


def test_the_vix_is_aligned_by_date_and_the_bar_before_it_starts_is_missing(market: Market) -> None:
    frame, _ = market
    # arch's VIX starts on 2014-01-03; the S&P 500 file has 2014-01-02 (no VIX value: the expert abstains there).
    assert str(frame.index[0].date()) == "2014-01-02" and np.isnan(frame["implied_vol"].iloc[0])
    assert frame["implied_vol"].iloc[1] == pytest.approx(13.76)  # arch.data.vix, 2014-01-03
    assert frame["implied_vol"].iloc[1:].notna().all()


def test_iv_alone_is_the_scaled_bar_variance_with_the_qlike_optimal_scale(market: Market) -> None:
    frame, realised = market
    train, target = frame.iloc[: FIT_AT + 1], _known(realised)
    model = ImpliedVolatility().fit(train, target)
    forecast = model.predict_variance(frame)
    # By hand, 2014-01-03: VIX 13.76 -> (0.1376^2 / 252) x scale.
    assert forecast[1] == pytest.approx(model.scale_ * 0.1376**2 / 252.0, rel=1e-12)
    fitted = model.predict_variance(train)
    best = qlike(fitted, target)
    assert best < qlike(1.02 * fitted, target) and best < qlike(0.98 * fitted, target)
    assert 0.2 < model.scale_ < 1.0  # VIX is above realised daily variance (the variance risk premium)


@pytest.mark.parametrize("expert", [ImpliedVolatility(), HarImpliedVolatility()], ids=["iv", "har_iv"])
def test_a_bar_without_an_implied_volatility_gets_no_forecast(
    market: Market, expert: ImpliedVolatility | HarImpliedVolatility
) -> None:
    frame, realised = market
    holes = frame.copy()
    missing = [40, 41, 250, FIT_AT + 20]
    _set(holes, "implied_vol", np.array(missing), lambda v: v * np.nan)
    model = expert.fit(holes.iloc[: FIT_AT + 1], _known(realised))
    forecast = model.predict_variance(holes)
    abstained = np.flatnonzero(np.isnan(forecast))
    assert abstained.tolist() == [0, *missing]  # bar 0 has no VIX value in arch's data either
    assert np.all(forecast[np.isfinite(forecast)] > 0)
    # A hole touches only its own bar: the other bars get what the same model gives without holes.
    ok = np.isfinite(forecast)
    np.testing.assert_array_equal(forecast[ok], model.predict_variance(frame)[ok])


@pytest.mark.parametrize("expert", [ImpliedVolatility(), HarImpliedVolatility()], ids=["iv", "har_iv"])
def test_truncating_or_changing_the_data_after_t_changes_no_forecast_at_or_before_t(
    market: Market, expert: ImpliedVolatility | HarImpliedVolatility
) -> None:
    frame, realised = market
    model = expert.fit(frame.iloc[: FIT_AT + 1], _known(realised))
    full = model.predict_variance(frame)
    for t in (FIT_AT, FIT_AT + 37, BARS - 2):
        np.testing.assert_array_equal(model.predict_variance(frame.iloc[: t + 1]), full[: t + 1])
        changed = frame.copy()
        after = np.arange(t + 1, BARS)
        _set(changed, "implied_vol", after, lambda v: v * 3.0)
        for column in ("open", "high", "low", "close"):
            _set(changed, column, after, lambda v: v * 0.5)
        np.testing.assert_array_equal(model.predict_variance(changed)[: t + 1], full[: t + 1])
    # Fitting at t: data after t (prices and IV) do not move the fit.
    later = frame.copy()
    _set(later, "implied_vol", np.arange(FIT_AT + 1, BARS), lambda v: v * 0.0 + 80.0)
    refit = expert.fit(later.iloc[: FIT_AT + 1], _known(realised)).predict_variance(frame.iloc[: FIT_AT + 1])
    np.testing.assert_array_equal(refit, full[: FIT_AT + 1])


def test_har_with_iv_adds_one_coefficient_to_har_and_it_is_positive(market: Market) -> None:
    frame, realised = market
    har = HarVolatility().fit(frame.iloc[: FIT_AT + 1], _known(realised))
    har_iv = HarImpliedVolatility().fit(frame.iloc[: FIT_AT + 1], _known(realised))
    assert len(har_iv.model_.coef_) == len(har.model_.coef_) + 1
    assert har_iv.model_.coef_[-1] > 0  # a higher VIX forecasts a higher next-day variance


def test_bad_implied_volatility_input_is_refused_with_the_column_named(market: Market) -> None:
    frame, realised = market
    with pytest.raises(ValueError, match="no column 'iv30'"):
        ImpliedVolatility(column="iv30").fit(frame, realised)
    negative = frame.copy()
    _set(negative, "implied_vol", np.array([5]), lambda v: v * 0.0 - 1.0)
    with pytest.raises(ValueError, match="'implied_vol' holds 1 value"):
        HarImpliedVolatility().fit(negative, realised)
    empty = frame.assign(implied_vol=np.nan)
    with pytest.raises(ValueError, match="no training row has both"):
        ImpliedVolatility().fit(empty, realised)
    with pytest.raises(ValueError, match="no training row has both"):
        HarImpliedVolatility().fit(empty, realised)


def test_the_catalogued_iv_experts_build_and_stay_out_of_price_only_runs() -> None:
    catalogue = load_catalogue()
    prices, with_iv = ["open", "high", "low", "close"], ["open", "high", "low", "close", "implied_vol"]
    for name in ("vol_implied", "vol_har_implied"):
        assert catalogue[name].inputs == "implied_vol"
        reason = _skip_reason(catalogue[name], SuiteSettings(), "equity_daily", prices)
        assert "needs implied_vol data" in (reason or "")
        assert _skip_reason(catalogue[name], SuiteSettings(), "equity_daily", with_iv) is None
        assert build(name, catalogue).column == "implied_vol"


def test_the_mean_difference_interval_covers_the_known_difference() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=600)
    shifted = mean_difference(a + 1.0, a + rng.normal(scale=0.1, size=600), reps=300)
    assert shifted.low < shifted.difference < shifted.high and shifted.low > 0.9 and shifted.p_value == 0.0
    same = mean_difference(a, a[::-1].copy(), reps=300)
    assert same.low < 0.0 < same.high
    with pytest.raises(ValueError, match="NaN"):
        mean_difference(np.append(a, np.nan), np.append(a, 0.0))


def test_the_moe_studys_abstention_check_blanks_the_middle_fifth_of_the_test_bars() -> None:
    from signal_engine.evaluation.implied_vol_moe_study import blanked_bars

    # 1258 bars, test from bar 756: 502 test bars, 20% is 100.4 -> 100 bars, starting (502 - 100) // 2 = 201 in
    assert blanked_bars(1258, 756) == slice(957, 1057)
    assert blanked_bars(1010, 1000, share=0.5) == slice(1002, 1007)
