"""HAR + implied volatility in the MoE's volatility slot, on the S&P 500 and the VIX that ship with `arch`.

Where the implied volatility is missing the slot abstains: its score is NaN, the gate gives it 0 and the other
experts share the weight; positions are sized by the sizing forecast (``moe.experts.sizing_volatility``, HAR by
default), which reads no implied volatility, so the gap does not change them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import apply_overrides, load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import InputError
from signal_engine.evaluation.backtest import SymbolResult, check_inputs, run_symbol, series_frame
from signal_engine.evaluation.implied_vol_study import sp500_and_vix

pytestmark = pytest.mark.slow

IV_SLOT = {"moe": {"experts": {"volatility": "vol_har_implied"}, "multistage": False}}
BLANK = slice(200, 300)  # test bars (from the test span's first bar) without implied volatility


@pytest.fixture(scope="module")
def market() -> tuple[PriceSeries, pd.DataFrame]:
    series, iv = sp500_and_vix()
    frame = series_frame(series)
    frame["implied_vol"] = iv
    return series, frame


@pytest.fixture(scope="module")
def runs(market: tuple[PriceSeries, pd.DataFrame]) -> dict[str, SymbolResult]:
    series, frame = market
    config = apply_overrides(load_config("quick"), IV_SLOT)
    test_start = config.walk_forward.test_start
    blanked = frame.copy()
    iv = blanked["implied_vol"].to_numpy(copy=True)
    iv[test_start + BLANK.start : test_start + BLANK.stop] = np.nan
    blanked["implied_vol"] = iv
    default = apply_overrides(load_config("quick"), {"moe": {"multistage": False}})
    return {"iv": run_symbol(series, config, features=frame), "blanked": run_symbol(series, config, features=blanked),
            "default": run_symbol(series, default, features=frame)}


def test_where_the_implied_volatility_is_missing_the_slot_gets_no_weight_and_sizing_is_unchanged(
        runs: dict[str, SymbolResult]) -> None:
    blanked, full, default = runs["blanked"].signals, runs["iv"].signals, runs["default"].signals
    gap = blanked.iloc[BLANK]
    assert (gap["gate_volatility"] == 0.0).all()
    np.testing.assert_allclose(gap["gate_trend"] + gap["gate_levels"], 1.0, atol=1e-12)
    np.testing.assert_array_equal(gap["vol_forecast"], default["vol_forecast"].iloc[BLANK])
    assert np.isfinite(blanked["score"]).all() and np.isfinite(blanked["position"]).all()
    others = np.r_[0:BLANK.start, BLANK.stop:len(blanked)]
    assert (blanked["gate_volatility"].iloc[others] > 0).all()
    # before the gap nothing differs from the run with every value (point in time)
    pd.testing.assert_frame_equal(blanked.iloc[: BLANK.start], full.iloc[: BLANK.start])
    assert runs["blanked"].diagnostics["moe"]["experts"]["volatility"] == "vol_har_implied"


def test_the_slot_without_its_column_is_refused_naming_the_column_and_the_fix(
        market: tuple[PriceSeries, pd.DataFrame]) -> None:
    series, frame = market
    config = apply_overrides(load_config("quick"), IV_SLOT)
    with pytest.raises(InputError, match=re.escape("has no 'implied_vol' column, which moe.experts.volatility "
                                                   "'vol_har_implied' reads; add the column to the price file")):
        run_symbol(series, config, features=frame.drop(columns="implied_vol"))
    check_inputs(series, frame.drop(columns="implied_vol"), load_config("quick"))  # the default slot does not read it
