"""Calibrated confidence: learned from past rows, monotone in |score|, and a reliability table by hand."""

from __future__ import annotations

import numpy as np
import pytest

from signal_engine.evaluation.metrics import reliability
from signal_engine.moe.confidence import ConfidenceCalibrator


def test_confidence_tracks_how_often_the_sign_was_right() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(-1, 1, 5000)
    # the larger |score|, the likelier the move goes its way: P(right) = 0.5 + 0.4 |score|
    right = rng.random(5000) < 0.5 + 0.4 * np.abs(score)
    move = np.where(right, np.sign(score), -np.sign(score)) * rng.uniform(0.001, 0.02, 5000)
    calibrator = ConfidenceCalibrator().fit(score, move)
    predicted = calibrator.predict(np.array([0.05, 0.5, -0.5, 0.95]))
    np.testing.assert_allclose(predicted, [0.52, 0.70, 0.70, 0.88], atol=0.05)
    grid = calibrator.predict(np.linspace(0, 1, 50))
    assert (np.diff(grid) >= 0).all()


def test_too_few_rows_give_the_hit_rate() -> None:
    calibrator = ConfidenceCalibrator(min_rows=100).fit(np.array([0.5, -0.2, 0.3]), np.array([0.01, 0.02, 0.01]))
    np.testing.assert_allclose(calibrator.predict(np.array([0.9, -0.1])), 2 / 3)
    assert ConfidenceCalibrator().fit(np.array([]), np.array([])).predict(np.array([0.3]))[0] == 0.5


def test_reliability_by_hand() -> None:
    table = reliability(np.array([0.15, 0.15, 0.85, 0.85]), np.array([0.0, 1.0, 1.0, 1.0]), n_bins=10)
    assert table["ece"] == pytest.approx((abs(1 - 0.3) + abs(2 - 1.7)) / 4)
    assert table["brier"] == pytest.approx((0.15**2 + 0.85**2 + 2 * 0.15**2) / 4)
    assert [b["rows"] for b in table["bins"]] == [2, 2]
    assert table["bins"][1]["hit_rate"] == 1.0
