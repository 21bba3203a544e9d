"""Volatility forecasts: GARCH(1,1) against `arch` itself, EWMA by hand, the blend and QLIKE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from signal_engine.data import load_prices
from signal_engine.experts import Ewma, Garch11, VolatilityExpert
from signal_engine.experts.volatility import qlike


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> pd.DataFrame:
    return load_prices(goog_csv).bars


def test_garch_forecasts_equal_arch_conditional_variance_and_forecast(goog: pd.DataFrame) -> None:
    train = goog.iloc[:1500]
    model = Garch11().fit(train)
    returns = np.diff(np.log(train["close"].to_numpy())) * model.scale_
    reference = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    fitted = reference.fit(disp="off")
    ours = model.predict(train)
    # row t forecasts the return from t to t+1, which arch indexes as observation t
    np.testing.assert_allclose(ours[:-1], fitted.conditional_volatility**2 / model.scale_**2, rtol=1e-9)
    one_ahead = fitted.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]
    np.testing.assert_allclose(ours[-1], one_ahead / model.scale_**2, rtol=1e-9)


def test_garch_prediction_uses_only_the_past(goog: pd.DataFrame) -> None:
    model = Garch11().fit(goog.iloc[:1000])
    full = model.predict(goog)
    truncated = model.predict(goog.iloc[:1200])
    np.testing.assert_array_equal(full[:1200], truncated)


def test_ewma_matches_the_recursion_by_hand() -> None:
    close = pd.DataFrame({"close": [100.0, 101.0, 99.0, 100.5, 102.0]})
    model = Ewma(lam=0.9, seed_bars=2).fit(close)
    r = np.diff(np.log(close["close"].to_numpy()))
    seed = np.mean(r[:2] ** 2)
    expected = [seed]
    for t in range(1, 5):
        expected.append(0.9 * expected[-1] + 0.1 * r[t - 1] ** 2)
    np.testing.assert_allclose(model.predict(close), expected, rtol=1e-12)
    assert model.seed_variance_ == pytest.approx(seed)


def test_qlike_is_minimised_by_the_true_variance() -> None:
    rng = np.random.default_rng(0)
    variance = np.full(20000, 4e-4)
    squared = (rng.standard_normal(20000) * 0.02) ** 2
    assert qlike(variance, squared) < qlike(variance * 1.5, squared)
    assert qlike(variance, squared) < qlike(variance / 1.5, squared)
    assert qlike(np.array([2.0]), np.array([1.0])) == pytest.approx(np.log(2.0) + 0.5)


def test_blend_weight_is_picked_by_qlike_on_known_rows(goog: pd.DataFrame) -> None:
    train = goog.iloc[:1500]
    realised = np.diff(np.log(train["close"].to_numpy()), append=np.nan) ** 2
    expert = VolatilityExpert(grid=11).fit(train, realised)
    assert 0.0 <= expert.weight_ <= 1.0
    garch, ewma = expert.garch_.predict(train), expert.ewma_.predict(train)
    losses = {w: qlike(w * garch + (1 - w) * ewma, realised) for w in np.linspace(0, 1, 11)}
    assert losses[expert.weight_] == pytest.approx(min(losses.values()))
    np.testing.assert_allclose(expert.predict(train) ** 2, expert.predict_variance(train))
