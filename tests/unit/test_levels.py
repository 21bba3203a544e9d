"""Support and resistance: pivots by hand, swing points confirmed only after they happen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.evaluation.metrics import levels_metrics
from signal_engine.experts import PivotLevels, SwingLevelsExpert
from signal_engine.experts.levels import confirmed_swings, swing_levels


def test_pivot_levels_by_hand() -> None:
    frame = pd.DataFrame({"high": [12.0], "low": [9.0], "close": [10.5]})
    support, resistance = PivotLevels().fit(frame).predict(frame)[0]
    pivot = (12 + 9 + 10.5) / 3
    assert support == pytest.approx(2 * pivot - 12)
    assert resistance == pytest.approx(2 * pivot - 9)


def test_swing_low_becomes_support_only_once_confirmed() -> None:
    low = np.array([10, 9, 8, 7, 8, 9, 10, 11, 12, 13], dtype=float)
    placed = confirmed_swings(low, width=2, lows=True)
    # the swing low at bar 3 (7.0) dominates bars 1..5, so it is known at bar 5's close
    assert np.flatnonzero(np.isfinite(placed)).tolist() == [5]
    assert placed[5] == 7.0
    frame = pd.DataFrame({"low": low, "high": low + 1, "close": low + 0.5})
    assert swing_levels(frame, window=9, width=2)[9, 0] == 7.0


def test_levels_bracket_the_close(goog_csv: Path) -> None:
    bars = load_prices(goog_csv).bars
    levels = swing_levels(bars, window=50, width=3)
    close = bars["close"].to_numpy()
    assert (levels[:, 0] <= close).all()
    assert (levels[:, 1] >= close).all()


def test_swing_expert_prediction_is_causal_and_window_learned(goog_csv: Path) -> None:
    bars = load_prices(goog_csv).bars
    future = np.column_stack((bars["low"].shift(-1).rolling(5).min().shift(-4), bars["high"].shift(-1)))
    future[:, 1] = bars["high"].shift(-1).rolling(5).max().shift(-4)
    expert = SwingLevelsExpert(windows=(20, 50)).fit(bars.iloc[:1000], future[:1000])
    assert expert.window_ in (20, 50)
    assert set(expert.errors_) == {20, 50}
    np.testing.assert_array_equal(expert.predict(bars)[:1200], expert.predict(bars.iloc[:1200]))


def test_levels_metrics_by_hand() -> None:
    levels = np.array([[95.0, 105.0], [95.0, 105.0]])
    close = np.array([100.0, 100.0])
    metrics = levels_metrics(levels, close, np.array([94.0, 97.0]), np.array([104.0, 106.0]), np.array([96.0, 106.0]))
    assert metrics["support_error"] == pytest.approx((0.01 + 0.02) / 2)
    assert metrics["support_touch_rate"] == pytest.approx(0.5)
    assert metrics["support_hold_rate"] == pytest.approx(1.0)
    assert metrics["resistance_hold_rate"] == pytest.approx(0.0)
