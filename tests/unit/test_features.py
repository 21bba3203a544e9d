"""Tests of the point-in-time, vectorised feature layer (signal_engine.features)."""

from __future__ import annotations

import math
import pathlib

import backtesting
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from signal_engine.features import (
    FEATURE_NAMES,
    FINGERPRINT_NAMES,
    MOMENTUM_NAMES,
    WARMUP_BARS,
    compute_features,
    feature_frame,
)
from signal_engine.features.reference import reference_feature_frame
from signal_engine.features.rolling import (
    BLOCK_ROWS,
    ema,
    is_flat_window,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_sum,
    rolling_var,
)

FloatArray = npt.NDArray[np.float64]

ALL_NAMES = (*FEATURE_NAMES, *FINGERPRINT_NAMES, *MOMENTUM_NAMES)
REAL_DATA_DIR = pathlib.Path(backtesting.__file__).parent / "test"


def load_real_bars(file_name: str) -> pd.DataFrame:
    bars = pd.read_csv(REAL_DATA_DIR / file_name, index_col=0, parse_dates=True)
    return bars.rename(columns=str.lower)


def synthetic_ohlcv(rows: int, symbols: int, seed: int = 0) -> dict[str, FloatArray]:
    """Geometric random walks with consistent open/high/low/close and log-normal volume."""
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(0.01 * rng.standard_normal((rows, symbols)), axis=0))
    open_ = close * np.exp(0.003 * rng.standard_normal((rows, symbols)))
    high = np.maximum(open_, close) * np.exp(0.004 * np.abs(rng.standard_normal((rows, symbols))))
    low = np.minimum(open_, close) * np.exp(-0.004 * np.abs(rng.standard_normal((rows, symbols))))
    volume = rng.lognormal(12.0, 0.5, (rows, symbols))
    return {"open_": open_, "high": high, "low": low, "close": close, "volume": volume}


def flat_bars(close: FloatArray, volume: FloatArray | None = None) -> dict[str, FloatArray]:
    """Bars whose open, high and low all equal the close."""
    return compute_features(close, close, close, close, volume)


@pytest.fixture(scope="module")
def panel() -> dict[str, FloatArray]:
    return synthetic_ohlcv(rows=700, symbols=4, seed=11)


# --- agreement with the pandas reference on real prices ------------------------------------


@pytest.fixture(scope="module", params=["GOOG.csv", "EURUSD.csv"])
def real_features(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = load_real_bars(request.param)
    return feature_frame(bars), reference_feature_frame(bars)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_feature_matches_pandas_reference_on_real_prices(
    real_features: tuple[pd.DataFrame, pd.DataFrame], name: str
) -> None:
    ours, reference = real_features
    expected = reference[name].to_numpy()
    assert np.isfinite(expected).sum() > len(expected) // 2
    typical_size = float(np.nanmean(np.abs(expected)))
    np.testing.assert_allclose(ours[name].to_numpy(), expected, rtol=1e-9, atol=1e-9 * typical_size)


def test_feature_frame_keeps_index_and_orders_columns() -> None:
    bars = load_real_bars("GOOG.csv")
    frame = feature_frame(bars)
    assert list(frame.columns) == list(ALL_NAMES)
    assert frame.index.equals(bars.index)
    assert (frame.dtypes == np.float64).all()


def test_feature_frame_without_volume_column_gives_zero_volume_z() -> None:
    bars = load_real_bars("GOOG.csv").drop(columns="volume")
    frame = feature_frame(bars)
    assert (frame["volume_z"].iloc[WARMUP_BARS["volume_z"] :] == 0.0).all()
    assert frame["volume_z_20"].iloc[: WARMUP_BARS["volume_z_20"]].isna().all()


def test_feature_frame_rejects_missing_price_column() -> None:
    bars = load_real_bars("GOOG.csv").drop(columns="low")
    with pytest.raises(ValueError, match="low"):
        feature_frame(bars)


# --- hand-computed values ------------------------------------------------------------------


def test_sma_ema_and_returns_on_tiny_series_match_hand_computation() -> None:
    close = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    features = flat_bars(close)
    # SMA5 at bar 4 is (1+2+3+4+5)/5 = 3 and at bar 5 is 4.
    np.testing.assert_allclose(features["sma_5"][4:], [5.0 / 3.0 - 1.0, 6.0 / 4.0 - 1.0], rtol=1e-14)
    # EMA5 (alpha = 1/3) seeded with 1: 4/3, 17/9, 70/27, 275/81, 1036/243.
    np.testing.assert_allclose(features["ema_5"][4:], [5.0 * 81 / 275 - 1.0, 6.0 * 243 / 1036 - 1.0], rtol=1e-14)
    assert np.isnan(features["sma_5"][:4]).all()
    assert np.isnan(features["ema_5"][:4]).all()
    np.testing.assert_allclose(features["ret_1"][1:], np.log(close[1:] / close[:-1]), rtol=1e-14)
    assert features["ret_5"][5] == pytest.approx(math.log(6.0), rel=1e-14)


def test_rsi_is_100_on_rising_and_0_on_falling_prices() -> None:
    rising = np.linspace(10.0, 20.0, 40)
    assert np.isnan(flat_bars(rising)["rsi_14"][:14]).all()
    assert (flat_bars(rising)["rsi_14"][14:] == 100.0).all()
    assert (flat_bars(rising[::-1].copy())["rsi_14"][14:] == 0.0).all()


def test_rsi_of_alternating_changes_matches_wilder_steady_state() -> None:
    close = 100.0 + np.array([0.0, 1.0] * 200)
    rsi = flat_bars(close)["rsi_14"]
    # Changes alternate +1/-1. In steady state the smoothed gain after a rise is
    # a = 13/14 * b + 1/14 with b = 13/14 * a after a fall: a = 14/27, b = 13/27.
    assert rsi[-1] == pytest.approx(100.0 * 14.0 / 27.0, rel=1e-10)
    assert rsi[-2] == pytest.approx(100.0 * 13.0 / 27.0, rel=1e-10)


def test_atr_of_constant_two_percent_range_is_two_percent() -> None:
    close = np.full(60, 100.0)
    features = compute_features(close, close * 1.01, close * 0.99, close)
    np.testing.assert_allclose(features["atr_14"][13:], 0.02, rtol=1e-12)
    assert np.isnan(features["atr_14"][:13]).all()


def test_constant_price_gives_neutral_features() -> None:
    features = flat_bars(np.full(150, 42.0), volume=np.full(150, 1000.0))
    for name in ALL_NAMES:
        after_warmup = features[name][WARMUP_BARS[name] :]
        expected = 100.0 if name == "rsi_14" else 0.0
        assert (after_warmup == expected).all(), name


def test_trend_r2_of_exponential_growth_is_one() -> None:
    close = 50.0 * np.exp(0.004 * np.arange(200))
    r2 = flat_bars(close)["trend_r2"]
    np.testing.assert_allclose(r2[29:], 1.0, atol=1e-9)


def test_trend_r2_is_low_for_noise_and_bounded() -> None:
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(0.01 * rng.standard_normal(500))
    r2 = flat_bars(close)["trend_r2"][29:]
    assert ((r2 >= 0.0) & (r2 <= 1.0)).all()
    assert r2.mean() < 0.1


def test_hurst_of_random_walk_is_near_one_half() -> None:
    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(2000)))
    hurst = flat_bars(close)["hurst"]
    assert np.isnan(hurst[:99]).all()
    assert abs(np.mean(hurst[99:]) - 0.5) < 0.1


def test_hurst_of_mean_reverting_series_is_well_below_one_half() -> None:
    rng = np.random.default_rng(8)
    alternating = 0.01 * (-1.0) ** np.arange(1000) + 0.001 * rng.standard_normal(1000)
    hurst = flat_bars(100.0 * np.exp(alternating))["hurst"][99:]
    assert np.mean(hurst) < 0.25


def test_hurst_of_persistent_trend_is_above_one_half() -> None:
    rng = np.random.default_rng(9)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(1000) + 0.004))
    assert np.mean(flat_bars(close)["hurst"][99:]) > 0.55


def test_spread_is_zero_when_high_low_and_close_coincide() -> None:
    rng = np.random.default_rng(3)
    close = 30.0 * np.exp(np.cumsum(0.02 * rng.standard_normal(100)))
    spread = flat_bars(close)["spread"]
    assert np.isnan(spread[:20]).all()
    assert (spread[20:] == 0.0).all()


def test_spread_recovers_a_constant_bid_ask_bounce() -> None:
    bid, ask = 99.5, 100.5
    close = np.where(np.arange(60) % 2 == 0, bid, ask)
    features = compute_features(close, np.full(60, ask), np.full(60, bid), close)
    # eta = mid in logs, |c - eta| = log(ask / bid) / 2 every bar, so s2 = log(ask / bid)**2.
    np.testing.assert_allclose(features["spread"][20:], math.log(ask / bid), rtol=1e-12)


def test_volume_z_is_zero_after_warmup_without_volume() -> None:
    close = synthetic_ohlcv(80, 1)["close"][:, 0]
    features = flat_bars(close, volume=None)
    for name in ("volume_z", "volume_z_20"):
        assert np.isnan(features[name][:19]).all()
        assert (features[name][19:] == 0.0).all()


def test_volume_z_of_a_spike_matches_hand_computation() -> None:
    volume = np.full(40, math.expm1(2.0))
    volume[-1] = math.expm1(2.0 + 19.0)
    features = flat_bars(np.full(40, 10.0), volume=volume)
    # Window of log(1 + v): 19 values of 2 and one of 21 -> mean 2.95, population std 19 * sqrt(19) / 20,
    # so the spike's z-score is 18.05 / (0.95 * sqrt(19)) = sqrt(19).
    assert features["volume_z"][-1] == pytest.approx(math.sqrt(19.0), rel=1e-12)
    assert features["volume_z"][-2] == 0.0


def test_vol30_equals_sample_std_of_last_30_log_returns() -> None:
    close = synthetic_ohlcv(31, 1, seed=4)["close"][:, 0]
    vol30 = flat_bars(close)["vol30"]
    assert np.isnan(vol30[:30]).all()
    assert vol30[30] == pytest.approx(np.std(np.diff(np.log(close)), ddof=1), rel=1e-12)


# --- point in time, panels and missing data ------------------------------------------------


@pytest.mark.parametrize("last_row", [0, 1, 13, 99, 100, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 517])
def test_features_on_a_prefix_are_bitwise_equal_to_features_on_the_full_history(
    panel: dict[str, FloatArray], last_row: int
) -> None:
    full = compute_features(**panel)
    prefix = compute_features(**{name: values[: last_row + 1] for name, values in panel.items()})
    for name in ALL_NAMES:
        assert np.array_equal(prefix[name], full[name][: last_row + 1], equal_nan=True), name


def test_panel_result_equals_per_symbol_results(panel: dict[str, FloatArray]) -> None:
    together = compute_features(**panel)
    for symbol in range(panel["close"].shape[1]):
        alone = compute_features(**{name: values[:, symbol].copy() for name, values in panel.items()})
        for name in ALL_NAMES:
            assert alone[name].shape == (panel["close"].shape[0],)
            np.testing.assert_allclose(together[name][:, symbol], alone[name], rtol=1e-12, atol=1e-15)


def test_every_feature_is_nan_exactly_during_its_warmup(panel: dict[str, FloatArray]) -> None:
    features = compute_features(**panel)
    for name in ALL_NAMES:
        warmup = WARMUP_BARS[name]
        assert np.isnan(features[name][:warmup]).all(), name
        assert np.isfinite(features[name][warmup:]).all(), name
        assert features[name].dtype == np.float64


def test_features_are_scale_free(panel: dict[str, FloatArray]) -> None:
    small = compute_features(**panel)
    scaled = {name: values * (1000.0 if name != "volume" else 1.0) for name, values in panel.items()}
    large = compute_features(**scaled)
    for name in ALL_NAMES:
        size = float(np.nanmean(np.abs(small[name]))) + 1e-300
        np.testing.assert_allclose(large[name], small[name], rtol=1e-8, atol=1e-8 * size, err_msg=name)


def test_late_start_and_early_stop_in_a_panel_match_the_trimmed_series(panel: dict[str, FloatArray]) -> None:
    start, stop = 150, 600
    gappy = {name: values.copy() for name, values in panel.items()}
    gappy["close"][:start, 1] = np.nan  # only the close tells when a symbol starts
    for values in gappy.values():
        values[stop:, 2] = np.nan
    features = compute_features(**gappy)
    late = compute_features(**{name: values[start:, 1].copy() for name, values in panel.items()})
    early = compute_features(**{name: values[:stop, 2].copy() for name, values in panel.items()})
    for name in ALL_NAMES:
        assert np.isnan(features[name][:start, 1]).all()
        assert np.isnan(features[name][stop:, 2]).all()
        np.testing.assert_allclose(features[name][start:, 1], late[name], rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(features[name][:stop, 2], early[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_short_and_empty_inputs_give_all_nan_of_the_right_shape() -> None:
    for rows in (0, 1, 5):
        features = flat_bars(np.linspace(1.0, 2.0, rows))
        for name in ALL_NAMES:
            assert features[name].shape == (rows,)
            assert np.isnan(features[name][: WARMUP_BARS[name]]).all()


@pytest.mark.parametrize(
    ("column", "bad_value", "message"),
    [
        ("close", np.nan, "NaN between"),
        ("close", 0.0, "close must be finite and positive"),
        ("low", -1.0, "low must be finite and positive"),
        ("high", np.inf, "high must be finite and positive"),
        ("volume", -5.0, "volume must be finite and non-negative"),
    ],
)
def test_invalid_inputs_are_rejected(panel: dict[str, FloatArray], column: str, bad_value: float, message: str) -> None:
    broken = {name: values.copy() for name, values in panel.items()}
    broken[column][300, 1] = bad_value
    with pytest.raises(ValueError, match=message):
        compute_features(**broken)


def test_mismatched_shapes_are_rejected(panel: dict[str, FloatArray]) -> None:
    with pytest.raises(ValueError, match="shaped"):
        compute_features(panel["open_"], panel["high"][:-1], panel["low"], panel["close"])


# --- rolling primitives --------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_series() -> FloatArray:
    rng = np.random.default_rng(21)
    return 1000.0 + np.cumsum(rng.standard_normal((3 * BLOCK_ROWS + 17, 3)), axis=0)


@pytest.mark.parametrize("window", [1, 2, 20, 100, BLOCK_ROWS, BLOCK_ROWS + 44])
def test_rolling_primitives_match_pandas_across_block_boundaries(long_series: FloatArray, window: int) -> None:
    frame = pd.DataFrame(long_series)
    rolling = frame.rolling(window)
    np.testing.assert_allclose(rolling_sum(long_series, window), rolling.sum().to_numpy(), rtol=1e-11)
    np.testing.assert_allclose(rolling_mean(long_series, window), rolling.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(rolling_max(long_series, window), rolling.max().to_numpy())
    np.testing.assert_array_equal(rolling_min(long_series, window), rolling.min().to_numpy())
    if window > 1:
        # One-pass variance: absolute error about BLOCK_ROWS * eps * (x - x[0])**2, here ~1e-11.
        np.testing.assert_allclose(
            rolling_var(long_series, window, ddof=1), rolling.var(ddof=1).to_numpy(), rtol=1e-9, atol=1e-9
        )


def test_rolling_var_is_exactly_zero_on_flat_windows_after_large_moves() -> None:
    values = np.concatenate([np.linspace(1.0, 5000.0, 400), np.full(40, 1234.5678)])[:, np.newaxis]
    var = rolling_var(values, 20)
    assert (var[419:] == 0.0).all()
    assert (var[19:419] > 0.0).all()
    assert is_flat_window(values, 20)[419:].all()


def test_ema_matches_pandas_and_skips_leading_nan() -> None:
    values = np.array([np.nan, np.nan, 3.0, 1.0, 4.0, 1.0, 5.0])[:, np.newaxis]
    expected = pd.Series(values[:, 0]).ewm(alpha=0.3, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(ema(values, 0.3)[2:, 0], expected[2:], rtol=1e-14)
    assert ema(values, 0.3)[2, 0] == 3.0
