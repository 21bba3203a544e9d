"""Support/resistance experts: pivot variants by hand, swing clusters, the distance regression on real data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.evaluation.metrics import level_respect_metrics
from signal_engine.experts import LevelRegressionExpert, PivotLevels, SwingClusterLevels
from signal_engine.experts.swing_clusters import cluster_levels
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

FIT_AT = 900
H, L, C = 12.0, 9.0, 10.5


def test_pivot_variants_by_hand() -> None:
    frame = pd.DataFrame({"high": [H], "low": [L], "close": [C]})
    pivot, span = (H + L + C) / 3, H - L
    np.testing.assert_allclose(PivotLevels("fibonacci").fit(frame).predict(frame)[0],
                               [pivot - 0.382 * span, pivot + 0.382 * span])
    np.testing.assert_allclose(PivotLevels("camarilla", level=3).fit(frame).predict(frame)[0],
                               [C - 1.1 * span / 4, C + 1.1 * span / 4])
    classic_2 = PivotLevels("classic", level=2).fit(frame).predict(frame)[0]
    np.testing.assert_allclose(classic_2, [pivot - span, pivot + span])
    with pytest.raises(ValueError, match="kind"):
        PivotLevels("woodie").fit(frame)


def test_weekly_pivots_use_the_range_of_the_period() -> None:
    frame = pd.DataFrame({"high": [11.0, 15.0, 12.0], "low": [9.0, 10.0, 8.0], "close": [10.0, 14.0, 9.0]})
    levels = PivotLevels(period=3).fit(frame).predict(frame)
    pivot = (15 + 8 + 9) / 3
    np.testing.assert_allclose(levels[2], [2 * pivot - 15, 2 * pivot - 8])


def test_swing_points_close_together_form_one_stronger_level() -> None:
    # swing lows at 90 and 90.5 (bars 3 and 11) and at 95 (bar 19); swing highs at 100; the last close is 99.5
    low = np.array([99, 96, 93, 90, 93, 96, 99, 96, 93, 92, 91, 90.5, 92, 96, 99, 98, 97, 96, 95.5, 95, 96, 98, 99],
                   dtype=float)
    frame = pd.DataFrame({"low": low, "high": low + 1.0, "close": low + 0.5})
    strong = cluster_levels(frame, width=2, count=10, lookback=25, tolerance=1.0, min_touches=2)
    weak = cluster_levels(frame, width=2, count=10, lookback=25, tolerance=1.0, min_touches=1)
    assert strong[-1, 0] == pytest.approx(90.25)
    assert weak[-1, 0] == pytest.approx(95.0)


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    bars = load_prices(goog_csv).bars.iloc[:1200]
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    future = np.column_stack((labels.future_low, labels.future_high))
    future[np.arange(len(frame)) + 5 > FIT_AT] = np.nan
    return frame, future, labels.future_low


@pytest.mark.parametrize("expert", [SwingClusterLevels(), LevelRegressionExpert(n_estimators=30)])
def test_level_experts_fit_predict_bracket_the_close_and_are_causal(
    expert: SwingClusterLevels | LevelRegressionExpert, goog: tuple[pd.DataFrame, np.ndarray, np.ndarray]
) -> None:
    frame, future, _ = goog
    fitted = expert.fit(frame.iloc[: FIT_AT + 1], future[: FIT_AT + 1])
    levels = fitted.predict(frame)
    close = frame["close"].to_numpy()
    assert (levels[:, 0] <= close).all() and (levels[:, 1] >= close).all()
    np.testing.assert_array_equal(levels[:1000], fitted.predict(frame.iloc[:1000]))
    context = fitted.context_bars()
    assert context is not None
    np.testing.assert_array_equal(fitted.predict(frame.iloc[1000 - context : 1100])[context:], levels[1000:1100])
    assert pickle.loads(pickle.dumps(fitted)).predict(frame).tobytes() == levels.tobytes()


def test_respect_rate_by_hand() -> None:
    levels = np.array([[95.0, 105.0], [95.0, 105.0]])
    close = np.array([100.0, 100.0])
    metrics = level_respect_metrics(levels, close, np.array([95.5, 90.0]), np.array([104.8, 103.0]),
                                    np.array([101.0, 94.0]), band=np.array([1.0, 1.0]))
    # bar 0: both levels approached within the band and held; bar 1: support broken (close 94 < 95) and
    # resistance never approached (103 < 105 - 1)
    assert metrics["support_respect_rate"] == pytest.approx(0.5)
    assert metrics["resistance_respect_rate"] == pytest.approx(0.5)
    assert metrics["mean_band_width"] == pytest.approx(0.1)
