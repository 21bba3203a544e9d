"""The GARCH family against `arch`, realised measures by hand, HAR and boosted QLIKE fits, the combination."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from signal_engine.data import load_prices
from signal_engine.experts import (
    ArchVolatility,
    BoostedLogVariance,
    Ewma,
    Garch11,
    HarVolatility,
    VolatilityCombination,
)
from signal_engine.experts.qlike_regression import QlikeLogLinear
from signal_engine.experts.realised import garman_klass_variance, intraday_hours, parkinson_variance
from signal_engine.experts.volatility import qlike
from signal_engine.experts.volatility_combination import simplex_qlike_weights
from signal_engine.features import feature_frame

FIT_AT = 1200


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> tuple[pd.DataFrame, np.ndarray]:
    bars = load_prices(goog_csv).bars.iloc[:1600]
    frame = bars.join(feature_frame(bars))
    realised = np.diff(np.log(frame["close"].to_numpy()), append=np.nan) ** 2
    return frame, realised


def _target(realised: np.ndarray) -> np.ndarray:
    known = realised[: FIT_AT + 1].copy()
    known[-1] = np.nan
    return known


@pytest.mark.parametrize(("vol", "dist"), [("GARCH", "t"), ("GJR", "normal"), ("GJR", "t"), ("EGARCH", "normal"),
                                           ("EGARCH", "t")])
def test_garch_family_equals_arch_and_is_causal(vol: str, dist: str, goog: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = goog
    train = frame.iloc[: FIT_AT + 1]
    model = ArchVolatility(vol=vol, dist=dist).fit(train)
    returns = np.diff(np.log(train["close"].to_numpy())) * model.scale_
    reference = arch_model(returns, mean="Constant", vol="EGARCH" if vol == "EGARCH" else "GARCH", p=1,
                           o=0 if vol == "GARCH" else 1, q=1, dist=cast(Any, dist), rescale=False).fit(disp="off")
    ours = model.predict_variance(train)
    np.testing.assert_allclose(ours[:-1], reference.conditional_volatility**2 / model.scale_**2, rtol=1e-8)
    one_ahead = reference.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]
    np.testing.assert_allclose(ours[-1], one_ahead / model.scale_**2, rtol=1e-8)
    full = model.predict_variance(frame)
    np.testing.assert_array_equal(full[:1400], model.predict_variance(frame.iloc[:1400]))


def test_garch_t_matches_the_baseline_process_with_normal_errors(goog: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = goog
    ours = ArchVolatility("GARCH", "normal").fit(frame.iloc[:FIT_AT]).predict_variance(frame)
    np.testing.assert_allclose(ours, Garch11().fit(frame.iloc[:FIT_AT]).predict(frame), rtol=1e-10)


def test_range_measures_by_hand() -> None:
    bars = pd.DataFrame({"open": [100.0], "high": [110.0], "low": [95.0], "close": [105.0]})
    log_range, log_body = np.log(110 / 95), np.log(105 / 100)
    assert parkinson_variance(bars)[0] == pytest.approx(log_range**2 / (4 * np.log(2)))
    assert garman_klass_variance(bars)[0] == pytest.approx(0.5 * log_range**2 - (2 * np.log(2) - 1) * log_body**2)
    assert intraday_hours(pd.DatetimeIndex(["2020-01-01", "2020-01-02"])) is None
    hours = intraday_hours(pd.DatetimeIndex(["2020-01-01 09:00", "2020-01-01 10:00"]))
    assert hours is not None and hours.tolist() == [9, 10]


def test_qlike_log_linear_recovers_a_known_variance_model() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 2))
    variance = np.exp(-8.0 + 0.5 * x[:, 0] - 0.3 * x[:, 1])
    y = variance * rng.standard_normal(20000) ** 2
    model = QlikeLogLinear(ridge=0.0).fit(x, y)
    slopes = model.coef_ / model.scale_
    np.testing.assert_allclose(slopes, [0.5, -0.3], atol=0.03)
    assert qlike(model.predict(x), y) < qlike(np.full(len(y), y.mean()), y)


def test_har_boosted_and_combination_fit_predict_and_pickle(goog: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, realised = goog
    history, target = frame.iloc[: FIT_AT + 1], _target(realised)
    members = [("gjr_t", ArchVolatility("GJR", "t")), ("har", HarVolatility()),
               ("boosted", BoostedLogVariance(n_estimators=30)), ("ewma", Ewma())]
    for model in (HarVolatility(), BoostedLogVariance(n_estimators=30), VolatilityCombination(members)):
        fitted = model.fit(history, target)
        forecast = fitted.predict_variance(frame)
        assert forecast.shape == (len(frame),) and (forecast > 0).all() and np.isfinite(forecast).all()
        np.testing.assert_array_equal(forecast[:1400], fitted.predict_variance(frame.iloc[:1400]))
        assert pickle.loads(pickle.dumps(fitted)).predict_variance(frame).tobytes() == forecast.tobytes()
        context = fitted.context_bars()
        if context is not None:
            tail = fitted.predict_variance(frame.iloc[1300 - context : 1400])[context:]
            np.testing.assert_array_equal(tail, forecast[1300:1400])
    assert sum(fitted.weights_.values()) == pytest.approx(1.0)
    assert min(fitted.weights_.values()) >= 0.0


def test_simplex_weights_pick_the_true_forecast() -> None:
    rng = np.random.default_rng(2)
    truth = np.exp(rng.normal(-8, 0.5, 5000))
    noise = truth * np.exp(rng.normal(0, 0.8, 5000))
    y = truth * rng.standard_normal(5000) ** 2
    logs = np.log(np.column_stack((noise, truth)))
    intercept, weights, _ = simplex_qlike_weights(logs, np.zeros((5000, 0)), y, ridge=0.0)
    assert weights[1] > 0.8 and weights.sum() == pytest.approx(1.0)
    assert abs(intercept) < 0.2
