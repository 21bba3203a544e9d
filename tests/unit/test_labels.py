"""Labels look ahead, so each says when it becomes known; the values follow their definitions."""

from __future__ import annotations

import warnings

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


def test_forward_z_is_the_forward_return_over_sigma_times_root_horizon() -> None:
    # horizon 4: the scale is sigma * sqrt(4) = 2 sigma
    frame = bars([100, 101, 99, 103, 104, 102])
    sigma = np.array([0.01, 0.02, 0.04, 0.01, 0.01, 0.01])
    labels = make_labels(frame, sigma, horizon=4, threshold=0.5)
    np.testing.assert_allclose(labels.forward_z[:2], [np.log(104 / 100) / 0.02, np.log(102 / 101) / 0.04])
    assert np.isnan(labels.forward_z[2:]).all()


def test_a_move_of_exactly_the_threshold_is_neutral() -> None:
    # log(e) - log(1) = 1 exactly; with sigma 2 the z-score is exactly the threshold 0.5: not beyond it
    up, down = bars([1.0, np.e]), bars([np.e, 1.0])
    assert make_labels(up, np.full(2, 2.0), horizon=1, threshold=0.5).trend.tolist() == [NEUTRAL, -1]
    assert make_labels(down, np.full(2, 2.0), horizon=1, threshold=0.5).trend.tolist() == [NEUTRAL, -1]
    assert make_labels(up, np.full(2, 1.999), horizon=1, threshold=0.5).trend[0] == UP


def test_every_label_has_one_value_per_bar_and_the_one_bar_labels_are_known_one_bar_later() -> None:
    labels = make_labels(bars([100, 101, 99, 103]), np.full(4, 0.01), horizon=2, threshold=0.5)
    for name in ("trend", "forward_return", "forward_z", "next_variance", "horizon_variance", "future_low",
                 "future_high"):
        assert len(getattr(labels, name)) == 4, name
    assert np.isnan(labels.next_variance[3])
    assert labels.known_at_next().tolist() == [1, 2, 3, 4]
    assert labels.known_at_horizon().tolist() == [2, 3, 4, 5]


def test_a_horizon_as_long_as_the_data_leaves_every_label_unknown() -> None:
    labels = make_labels(bars([100, 101, 99]), np.full(3, 0.01), horizon=3, threshold=0.5)
    for values in (labels.forward_return, labels.horizon_variance, labels.future_low, labels.future_high):
        assert np.isnan(values).all()
    assert (labels.trend == -1).all()


def test_whole_number_prices_and_a_zero_sigma_give_labels_without_warnings() -> None:
    # Prices read as integers still give float extremes; a flat stretch over sigma 0 (0/0) and a move over sigma 0
    # (x/0) give a NaN or infinite z-score, never trained on, and no RuntimeWarning.
    close = np.array([100, 100, 100, 104])
    frame = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = make_labels(frame, np.zeros(4), horizon=1, threshold=0.5)
    np.testing.assert_array_equal(labels.future_low[:3], [99.0, 99.0, 103.0])
    np.testing.assert_array_equal(labels.future_high[:3], [101.0, 101.0, 105.0])
    assert np.isinf(labels.forward_z[2]) and labels.trend.tolist() == [-1, -1, -1, -1]
