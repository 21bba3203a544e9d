"""The option term slope and skew as extra HAR-implied volatility regressors: recovery of a known coefficient,
abstention on a missing term, no look-ahead, the default unchanged, and the inputs carried from files, stored
readings and request bars. Synthetic frames only (there is no offline history of term structure or skew)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.components import volatility_model
from signal_engine.config import apply_overrides, load_config
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import ConfigError, InputError
from signal_engine.evaluation.planning import check_inputs
from signal_engine.experts.har import HarVolatility
from signal_engine.experts.implied_volatility import HarImpliedVolatility
from signal_engine.experts.qlike_regression import QlikeLogLinear
from signal_engine.serving.experts import answer, bars_frame
from signal_engine.storage.implied_vol import implied_vol_columns
from signal_engine.storage.records import ImpliedVolatility as StoredReading

BARS = 300
FIT_AT = 200
SLOPE_COEF = 0.05  # log variance per % point of term slope in the synthetic target
TERMS = {"volatility": {"implied_terms": ["implied_term_slope", "implied_skew"]},
         "moe": {"experts": {"volatility": "vol_har_implied"}}}


def _frame(seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Random-walk bars with an implied volatility, a term slope and a skew; the target is the implied bar variance
    times exp(SLOPE_COEF x term slope) exactly, so the QLIKE fit can recover SLOPE_COEF (and 1 on the log IV)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, BARS)))
    frame = pd.DataFrame({"open": np.r_[close[0], close[:-1]], "high": close * (1 + rng.uniform(0.001, 0.02, BARS)),
                          "low": close * (1 - rng.uniform(0.001, 0.02, BARS)), "close": close,
                          "implied_vol": rng.uniform(10, 30, BARS), "implied_term_slope": rng.normal(0, 3, BARS),
                          "implied_skew": rng.normal(6, 1, BARS)},
                         index=pd.bdate_range("2020-01-01", periods=BARS))
    slope = frame["implied_term_slope"].to_numpy()
    target = (frame["implied_vol"].to_numpy() / 100) ** 2 / 252 * np.exp(SLOPE_COEF * slope)
    return frame, target


def _known(target: np.ndarray, fit_at: int = FIT_AT) -> np.ndarray:
    known = target[: fit_at + 1].copy()
    known[-1] = np.nan  # bar fit_at's target (its next bar) is not known at its close
    return known


def test_a_term_with_a_known_coefficient_is_recovered() -> None:
    frame, target = _frame()
    model = HarImpliedVolatility(structure_terms=("implied_term_slope",), ridge=0.0).fit(frame, target)
    assert model.structure_coef_ == pytest.approx([SLOPE_COEF], abs=2e-3)
    assert model.model_.coef_[-2] / model.model_.scale_[-2] == pytest.approx(1.0, abs=2e-2)  # the log IV's
    both = HarImpliedVolatility(structure_terms=("implied_term_slope", "implied_skew"), ridge=0.0).fit(frame, target)
    assert both.structure_coef_ == pytest.approx([SLOPE_COEF, 0.0], abs=2e-3)  # the skew is noise here


def test_a_row_missing_a_term_abstains_there_only() -> None:
    frame, target = _frame()
    model = HarImpliedVolatility(structure_terms=("implied_term_slope", "implied_skew")).fit(frame.iloc[: FIT_AT + 1],
                                                                                  _known(target))
    skew, slope = frame["implied_skew"].to_numpy(copy=True), frame["implied_term_slope"].to_numpy(copy=True)
    skew[[30, 250]], slope[251] = np.nan, np.nan
    holes = frame.assign(implied_skew=skew, implied_term_slope=slope)
    forecast = model.predict_variance(holes)
    assert np.flatnonzero(np.isnan(forecast)).tolist() == [30, 250, 251]
    ok = np.isfinite(forecast)
    np.testing.assert_array_equal(forecast[ok], model.predict_variance(frame)[ok])


def test_truncating_or_changing_later_data_changes_no_earlier_forecast_or_fit() -> None:
    frame, target = _frame()
    expert = HarImpliedVolatility(structure_terms=("implied_term_slope", "implied_skew"))
    full = expert.fit(frame.iloc[: FIT_AT + 1], _known(target)).predict_variance(frame)
    for t in (FIT_AT, BARS - 2):
        np.testing.assert_array_equal(expert.predict_variance(frame.iloc[: t + 1]), full[: t + 1])
    slope = frame["implied_term_slope"].to_numpy(copy=True)
    slope[FIT_AT + 1:] = 40.0
    later = frame.assign(implied_term_slope=slope)
    refit = HarImpliedVolatility(structure_terms=("implied_term_slope", "implied_skew")).fit(later.iloc[: FIT_AT + 1],
                                                                                   _known(target))
    np.testing.assert_array_equal(refit.predict_variance(later)[: FIT_AT + 1], full[: FIT_AT + 1])


def test_the_default_reads_no_term_and_gives_har_plus_log_iv() -> None:
    frame, target = _frame()
    train, known = frame.iloc[: FIT_AT + 1], _known(target)
    har = HarVolatility().fit(train, known)
    log_iv = np.log((frame["implied_vol"].to_numpy() / 100) ** 2 / 252)
    design = np.column_stack((har._design(frame), log_iv))
    expected = QlikeLogLinear(ridge=1e-3).fit(design[1: FIT_AT + 1], known[1:]).predict(design)
    default = HarImpliedVolatility().fit(train, known)
    np.testing.assert_array_equal(default.predict_variance(frame), expected)
    bare = frame.drop(columns=["implied_term_slope", "implied_skew"])
    np.testing.assert_array_equal(HarImpliedVolatility().fit(bare.iloc[: FIT_AT + 1], known).predict_variance(bare),
                                  expected)


def test_the_setting_builds_the_expert_and_data_without_the_column_is_refused_naming_it() -> None:
    config = apply_overrides(load_config("quick"), TERMS)
    assert volatility_model("vol_har_implied", config).structure_terms == ("implied_term_slope", "implied_skew")
    assert volatility_model("vol_har_implied", load_config("quick")).structure_terms == ()
    frame, _ = _frame()
    series = PriceSeries("XYZ", "xyz.csv", frame)
    check_inputs(series, frame, config)
    with pytest.raises(InputError, match=re.escape("xyz.csv: has no 'implied_skew' column, which "
                                                   "volatility.implied_terms asks moe.experts.volatility")):
        check_inputs(series, frame.drop(columns="implied_skew"), config)
    with pytest.raises(ConfigError, match=re.escape("'volatility.implied_terms' is ['iv_kurtosis']")):
        apply_overrides(load_config("quick"), {"volatility": {"implied_terms": ["iv_kurtosis"]}})
    with pytest.raises(ConfigError, match=re.escape("'volatility.implied_terms' must be a list of column names")):
        apply_overrides(load_config("quick"), {"volatility": {"implied_terms": "implied_skew"}})


def test_the_loader_reads_the_terms_with_any_sign_and_empty_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "xyz.csv"
    path.write_text("Date,Open,High,Low,Close,implied_vol,Implied_Term_Slope,implied_skew\n"
                    "2024-01-02,1,1,1,1,15,-2.5,\n2024-01-03,1,1,1,1,16,,4.25\n")
    bars = load_prices(path).bars
    assert bars["implied_term_slope"].tolist()[0] == -2.5 and np.isnan(bars["implied_term_slope"].iloc[1])
    assert np.isnan(bars["implied_skew"].iloc[0]) and bars["implied_skew"].iloc[1] == 4.25
    path.write_text("Date,Open,High,Low,Close,implied_skew\n2024-01-02,1,1,1,1,steep\n")
    with pytest.raises(InputError, match=r"line 2: column 'implied_skew': 'steep' is not a number"):
        load_prices(path)


class _Market:
    def __init__(self, rows: list[StoredReading]) -> None:
        self.rows = rows

    def read_implied_volatility(self, symbol: str, timeframe: str, horizon_days: int, *, start: datetime | None,
                                end: datetime | None) -> list[StoredReading]:
        return self.rows


def test_stored_readings_become_the_three_columns_nan_where_missing() -> None:
    made = datetime(2024, 2, 1)
    market = _Market([StoredReading("XYZ", "1d", datetime(2024, 1, 3), 30, 16.0, 100.0, made, 1.5, None)])
    index = pd.DatetimeIndex(["2024-01-02", "2024-01-03"])
    columns = implied_vol_columns(market, "XYZ", "1d", index)  # type: ignore[arg-type]
    assert columns.columns.tolist() == ["implied_vol", "implied_term_slope", "implied_skew"]
    assert columns.iloc[1, :2].tolist() == [16.0, 1.5]
    assert columns.iloc[0].isna().all() and columns["implied_skew"].isna().all()


def test_served_bars_carry_the_terms_and_a_bar_without_them_abstains() -> None:
    frame, target = _frame()
    model = HarImpliedVolatility(structure_terms=("implied_term_slope",)).fit(frame.iloc[: FIT_AT + 1], _known(target))
    kept = frame.drop(columns="implied_skew").iloc[:60]
    rows: list[dict[str, Any]] = [{"timestamp": f"{ts:%Y-%m-%d}", **{str(c): float(kept[c].iloc[i]) for c in kept}}
                                  for i, ts in enumerate(kept.index)]
    served = answer("volatility", model, bars_frame(rows), history=1)
    assert served["vol_forecast"] == pytest.approx(float(np.sqrt(model.predict_variance(frame.iloc[:60])[-1])))
    rows[-1]["implied_term_slope"] = None
    assert answer("volatility", model, bars_frame(rows), history=1)["vol_forecast"] is None
    no_terms = [{k: v for k, v in row.items() if k != "implied_term_slope"} for row in rows]
    assert answer("volatility", model, bars_frame(no_terms), history=1)["vol_forecast"] is None
    with pytest.raises(ValueError, match=re.escape("bars[0].implied_skew is 'flat'")):
        bars_frame([{**rows[0], "implied_skew": "flat"}])
