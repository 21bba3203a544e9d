"""Labels look ahead, so each says when it becomes known; the values follow their definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from signal_engine.evaluation.walkforward import known_by
from signal_engine.labels import DOWN, NEUTRAL, UP, make_labels


def bars(close: list[float]) -> pd.DataFrame:
    c = np.array(close)
    return pd.DataFrame({"open": c, "high": c * 1.01, "low": c * 0.99, "close": c})


def test_trend_classes_use_a_volatility_scaled_threshold() -> None:
    frame = bars([100, 100, 110, 90, 100, 100])
    sigma = np.full(6, 0.05)
    labels = make_labels(frame, sigma, horizon=1, threshold=0.5)
    # threshold: 0.5 * 0.05 * sqrt(1) = 0.025 in log return
    assert labels.trend.tolist() == [NEUTRAL, UP, DOWN, UP, NEUTRAL, -1]
    np.testing.assert_allclose(labels.forward_return[1], np.log(1.1))


def test_horizon_labels_and_future_extremes() -> None:
    frame = bars([100, 102, 98, 105, 101])
    labels = make_labels(frame, np.full(5, 0.01), horizon=2, threshold=0.5)
    np.testing.assert_allclose(labels.forward_return[:3], np.log([98 / 100, 105 / 102, 101 / 98]))
    assert np.isnan(labels.forward_return[3:]).all()
    np.testing.assert_allclose(labels.future_low[:3], [98 * 0.99, 98 * 0.99, 101 * 0.99])
    np.testing.assert_allclose(labels.future_high[:3], [102 * 1.01, 105 * 1.01, 105 * 1.01])
    r = np.diff(np.log(frame["close"].to_numpy()))
    np.testing.assert_allclose(labels.next_variance[:4], r**2)
    np.testing.assert_allclose(labels.horizon_variance[:3], r[:3] ** 2 + r[1:4] ** 2)


def test_unknown_sigma_rows_are_never_trainable() -> None:
    labels = make_labels(bars([1, 2, 3, 4]), np.array([np.nan, 0.1, 0.1, 0.1]), horizon=1, threshold=0.5)
    assert labels.trend[0] == -1


def test_purging_keeps_only_labels_known_at_the_fit_bar() -> None:
    labels = make_labels(bars(list(range(100, 120))), np.full(20, 0.01), horizon=5, threshold=0.5)
    mask = known_by(labels.known_at_horizon(), fit_at=10)
    assert np.flatnonzero(mask).tolist() == [0, 1, 2, 3, 4, 5]
    embargoed = known_by(labels.known_at_horizon(), fit_at=10, embargo=2)
    assert np.flatnonzero(embargoed).tolist() == [0, 1, 2, 3]
