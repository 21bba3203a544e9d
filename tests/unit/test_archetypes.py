"""Archetypes of seed 001: kernel templates, the Keras kernel bank starting at them, and fingerprint routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.archetypes import (
    ARCHETYPES,
    KernelBankExpert,
    archetype_scores,
    kernel_bank,
    route,
    series_fingerprint,
    stack_1d,
    stack_2d,
)
from signal_engine.archetypes.kernels import SHARED_1D, SPECIAL_1D, SPECIAL_2D, head_and_shoulders
from signal_engine.data import load_prices
from signal_engine.experts.tf_runtime import seed_everything, tensorflow_available
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

needs_tf = pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")


def test_named_templates_hold_their_shapes() -> None:
    np.testing.assert_array_equal(SPECIAL_1D["equity_intraday"]["momentum_comb"][:, 0], [-1, -2, 0, 2, 1])
    for k in (5, 20, 50):
        assert SHARED_1D[f"sma_{k}"][:, 0] == pytest.approx(np.full(k, 1 / k))
        ema = SHARED_1D[f"ema_{k}"][:, 0]
        assert ema.sum() == pytest.approx(1.0) and (np.diff(ema) > 0).all()
    low_pass = SPECIAL_1D["low_vol_etf"]["gauss_11_s4"][:, 0]
    assert len(low_pass) == 11 and low_pass.sum() == pytest.approx(1.0) and np.argmax(low_pass) == 5
    assert SPECIAL_1D["low_vol_etf"]["mean_crossover_residual"].sum() == pytest.approx(0.0)
    shoulders = head_and_shoulders(25)
    assert shoulders.mean() == pytest.approx(0.0, abs=1e-12) and np.linalg.norm(shoulders) == pytest.approx(1.0)
    assert np.argmax(shoulders) == 12
    np.testing.assert_array_equal(SPECIAL_2D["options_skew"]["laplacian"], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    assert SHARED_1D["gap_highpass_5"].sum() == pytest.approx(0.0)


def test_banks_stack_every_template_right_aligned_or_centred() -> None:
    bank_1d, bank_2d = kernel_bank("futures_trend")
    kernel = stack_1d(bank_1d)
    assert kernel.shape == (50, 5, len(bank_1d))
    trend = list(bank_1d).index("trend_7")
    np.testing.assert_array_equal(kernel[-7:, :, trend], bank_1d["trend_7"])
    assert not kernel[:-7, :, trend].any()
    images = stack_2d(bank_2d)
    assert images.shape == (5, 5, 1, 4)
    np.testing.assert_array_equal(images[1:4, 1:4, 0, 0], bank_2d["sobel_time"])
    with pytest.raises(ValueError, match="unknown archetype"):
        kernel_bank("forex_scalper")


def synthetic_bars(minutes: int, periods: int, daily_vol: float, *, drift: float = 0.0, seed: int = 0,
                   volume_spikes: bool = False, session_hours: float = 24.0) -> pd.DataFrame:
    """Random-walk OHLCV bars whose daily volatility is ``daily_vol``."""
    rng = np.random.default_rng(seed)
    per_day = max(1, round(session_hours * 60 / minutes)) if minutes < 1440 else 1
    if minutes < 1440:
        days = pd.bdate_range("2021-01-04", periods=periods // per_day + 1)
        index = pd.DatetimeIndex([d + pd.Timedelta(minutes=9 * 60 * (session_hours < 24) + i * minutes)
                                  for d in days for i in range(per_day)])[:periods]
    else:
        index = pd.bdate_range("2000-01-03", periods=periods)
    sigma = daily_vol / np.sqrt(per_day)
    close = 100 * np.exp(np.cumsum(drift * sigma + sigma * rng.standard_normal(periods)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * np.exp(0.3 * sigma * np.abs(rng.standard_normal(periods)))
    low = np.minimum(open_, close) * np.exp(-0.3 * sigma * np.abs(rng.standard_normal(periods)))
    volume = rng.lognormal(10, 0.3, periods) * (np.where(rng.random(periods) < 0.1, 50.0, 1.0) if volume_spikes else 1)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def synthetic_iv_frame(periods: int = 400, seed: int = 3) -> pd.DataFrame:
    """Daily bars with fat-tailed returns and a put-skewed implied-volatility smile over five strikes."""
    rng = np.random.default_rng(seed)
    bars = synthetic_bars(1440, periods, 0.01, seed=seed)
    shocks = 0.01 * rng.standard_t(3, periods)
    bars["close"] = 100 * np.exp(np.cumsum(shocks))
    bars["open"] = np.concatenate(([100.0], bars["close"].to_numpy()[:-1]))
    bars["high"] = bars[["open", "close"]].max(axis=1) * 1.004
    bars["low"] = bars[["open", "close"]].min(axis=1) * 0.996
    atm = 0.2 + 0.02 * np.sin(np.arange(periods) / 20) + 0.005 * rng.standard_normal(periods)
    for i, moneyness in enumerate((-0.2, -0.1, 0.0, 0.1, 0.2)):
        bars[f"iv_{i}"] = atm * (1 + 1.5 * moneyness**2 - 0.8 * moneyness)
    return bars


TYPICAL = {
    "crypto_hft": lambda: synthetic_bars(1, 3000, 0.08, volume_spikes=True),
    "equity_intraday": lambda: synthetic_bars(5, 3000, 0.015, session_hours=6.5),
    "equity_daily": lambda: synthetic_bars(1440, 1000, 0.012),
    "futures_trend": lambda: synthetic_bars(60, 3000, 0.008, drift=0.3),
    "options_skew": synthetic_iv_frame,
    "low_vol_etf": lambda: synthetic_bars(1440, 1000, 0.003),
}


@pytest.mark.parametrize("archetype", list(ARCHETYPES))
def test_fingerprint_routes_each_archetypes_typical_series_to_it(archetype: str) -> None:
    fingerprint = series_fingerprint(TYPICAL[archetype]())
    assert route(fingerprint) == archetype
    scores = archetype_scores(fingerprint)
    assert set(scores) == set(ARCHETYPES) and all(0.0 <= v <= 1.0 for v in scores.values())


def test_real_series_route_to_their_archetypes(goog_csv: Path, eurusd_csv: Path) -> None:
    assert route(series_fingerprint(load_prices(goog_csv).bars)) == "equity_daily"
    fingerprint = series_fingerprint(load_prices(eurusd_csv).bars)
    assert fingerprint.bar_minutes == 60.0 and fingerprint.bars_per_day == 24.0
    assert route(fingerprint) == "futures_trend"


@needs_tf
@pytest.mark.parametrize("archetype", list(ARCHETYPES))
def test_kernel_bank_starts_at_the_templates_and_is_trainable(archetype: str) -> None:
    expert = KernelBankExpert(archetype=archetype, window=64 if archetype != "options_skew" else 20)
    frame = synthetic_iv_frame(120) if archetype == "options_skew" else synthetic_bars(1440, 120, 0.01)
    shapes = [tuple(a.shape[1:]) for a in expert._inputs(frame)]
    keras = seed_everything(0)
    network = expert._build(keras, shapes)
    bank_1d, bank_2d = kernel_bank(archetype)
    layer_1d, layer_2d = network.get_layer("kernel_bank_1d"), network.get_layer("kernel_bank_2d")
    np.testing.assert_array_equal(layer_1d.get_weights()[0], stack_1d(bank_1d).astype(np.float32))
    np.testing.assert_array_equal(layer_2d.get_weights()[0], stack_2d(bank_2d).astype(np.float32))
    assert layer_1d.trainable and layer_2d.trainable
    assert len(layer_1d.trainable_weights) == 1 and len(layer_2d.trainable_weights) == 1
    assert expert.template_names() == (list(bank_1d), list(bank_2d))


@needs_tf
def test_kernel_bank_expert_fits_predicts_and_fine_tunes_on_real_data(goog_csv: Path) -> None:
    bars = load_prices(goog_csv).bars.iloc[:800]
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    y = np.where((np.arange(800) + 5 <= 600) & (labels.trend >= 0), labels.trend, -1)
    expert = KernelBankExpert("equity_daily", window=64, epochs=1, max_train_rows=400).fit(frame.iloc[:601], y[:601])
    proba = expert.predict_proba(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    context = expert.context_bars()
    assert context is not None
    np.testing.assert_array_equal(expert.predict_proba(frame.iloc[700 - context : 760])[context:], proba[700:760])
    np.testing.assert_array_equal(expert.predict_proba(frame.iloc[:700]), proba[:700])
    tuned = expert.network().get_layer("kernel_bank_1d").get_weights()[0]
    assert not np.array_equal(tuned, stack_1d(kernel_bank("equity_daily")[0]).astype(np.float32))


@needs_tf
def test_options_skew_expert_runs_on_the_iv_grid_it_takes() -> None:
    frame = synthetic_iv_frame(400)
    closes = np.log(frame["close"].to_numpy())
    forward = np.append(closes[5:] - closes[:-5], np.full(5, np.nan))
    y = np.where(np.isnan(forward), -1, np.digitize(forward, [-0.01, 0.01]))
    y[np.arange(400) + 5 > 300] = -1
    expert = KernelBankExpert("options_skew", window=20, epochs=1).fit(frame.iloc[:301], y[:301])
    proba = expert.predict_proba(frame)
    assert proba.shape == (400, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="iv_"):
        expert.predict_proba(frame.drop(columns=["iv_0", "iv_1", "iv_2"]))
