"""The multi-stage engine: each stage's filter, stage 3's confidence, and the per-stage report."""

from __future__ import annotations

import itertools

import numpy as np

from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.multistage import (
    MultiStageEngine,
    SequenceRefiner,
    StageInputs,
    return_windows,
    stage1_candidates,
    stage_report,
)


def inputs(fast: list[list[float]], sequence: list[list[float]], rsi: list[float]) -> StageInputs:
    return StageInputs(np.array(fast), np.array(sequence), np.array(rsi))


def test_stage1_keeps_confident_calls_the_rsi_filter_allows() -> None:
    rows = inputs(
        fast=[[0.1, 0.3, 0.6], [0.1, 0.3, 0.6], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]],
        sequence=[[1 / 3] * 3] * 5,
        rsi=[50, 75, 50, 50, 25],
    )
    # overbought blocks the long in row 1, a weak call is dropped in row 3, oversold blocks the short in row 4
    assert stage1_candidates(rows, min_probability=0.4, rsi_band=(30, 70)).tolist() == [1, 0, -1, 0, 0]


def synthetic(n: int, seed: int) -> tuple[StageInputs, np.ndarray]:
    """The fast model is right 55% of the time; the sequence model knows when it is right."""
    rng = np.random.default_rng(seed)
    y = rng.choice([DOWN, NEUTRAL, UP], n)
    fast = rng.dirichlet(np.ones(3), n) * 0.5
    call = np.where(rng.random(n) < 0.55, y, rng.choice([DOWN, UP], n))
    call = np.where(call == NEUTRAL, UP, call)
    fast[np.arange(n), call] += 0.5
    sequence = np.full((n, 3), 0.2)
    right = call == y
    sequence[np.arange(n), call] = np.where(right, 0.7, 0.3) + rng.normal(0, 0.05, n)
    return StageInputs(fast, sequence, rng.uniform(20, 80, n)), y


def test_each_stage_removes_false_positives_and_raises_precision() -> None:
    train, y_train = synthetic(3000, 0)
    test, y_test = synthetic(3000, 1)
    engine = MultiStageEngine(min_probability=0.4, confirm_probability=0.5, min_confidence=0.6).fit(train, y_train)
    decisions = engine.decide(test)
    report = stage_report(decisions, y_test)
    assert [r["stage"] for r in report] == ["stage1_filters", "stage2_sequence", "stage3_stacking"]
    assert report[1]["false_positives_removed"] > report[1]["true_positives_removed"]
    assert report[1]["precision"] > report[0]["precision"] + 0.1
    assert report[2]["precision"] >= report[1]["precision"] - 0.02
    assert all(r["kept"] >= later["kept"] for r, later in itertools.pairwise(report))
    assert ((decisions.confidence >= 0) & (decisions.confidence <= 1)).all()
    assert (decisions.confidence[~decisions.after_stage2] == 0).all()


def test_confidence_is_calibrated_on_training_rows() -> None:
    train, y_train = synthetic(4000, 2)
    engine = MultiStageEngine(min_probability=0.0, confirm_probability=0.0, uncertainty_penalty=0.0).fit(train, y_train)
    test, y_test = synthetic(4000, 3)
    decisions = engine.decide(test)
    correct = ((decisions.raw_direction > 0) & (y_test == UP)) | ((decisions.raw_direction < 0) & (y_test == DOWN))
    kept = decisions.after_stage2
    high = kept & (decisions.confidence > 0.5)
    low = kept & (decisions.confidence <= 0.5)
    assert correct[high].mean() > correct[low].mean() + 0.2
    assert abs(decisions.confidence[kept].mean() - correct[kept].mean()) < 0.05


def test_uncertainty_penalty_lowers_confidence() -> None:
    train, y_train = synthetic(300, 4)
    plain = MultiStageEngine(uncertainty_penalty=0.0).fit(train, y_train).decide(train).confidence
    penalised = MultiStageEngine(uncertainty_penalty=2.0).fit(train, y_train).decide(train).confidence
    assert (penalised <= plain + 1e-12).all()
    assert penalised.sum() < plain.sum()


def test_return_windows_are_point_in_time_and_vol_scaled() -> None:
    close = np.exp(np.cumsum(np.r_[0.0, 0.01, -0.02, 0.03, 0.01]))
    windows = return_windows(close, np.full(5, 0.01), window=3)
    np.testing.assert_allclose(windows[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(windows[2], [0.0, 1.0, -2.0])
    np.testing.assert_allclose(windows[4], [-2.0, 3.0, 1.0])
    changed = close.copy()
    changed[4] *= 2
    np.testing.assert_array_equal(return_windows(changed, np.full(5, 0.01), 3)[:4], windows[:4])


def test_sequence_refiner_learns_a_pattern_the_fast_model_misses() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    windows = rng.standard_normal((n, 5))
    y = np.where(windows[:, -1] > 0.5, UP, np.where(windows[:, -1] < -0.5, DOWN, NEUTRAL))
    fast = np.full((n, 3), 1 / 3)
    refiner = SequenceRefiner(C=1.0).fit(windows[:2000], fast[:2000], y[:2000])
    proba = refiner.predict_proba(windows[2000:], fast[2000:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (np.argmax(proba, axis=1) == y[2000:]).mean() > 0.7
    passthrough = SequenceRefiner(min_rows=5000).fit(windows, fast, y)
    np.testing.assert_array_equal(passthrough.predict_proba(windows[:3], fast[:3]), fast[:3])


def test_min_lift_sets_stage_3_against_the_training_hit_rate() -> None:
    train, y_train = synthetic(3000, 4)
    engine = MultiStageEngine(min_probability=0.4, confirm_probability=0.5, min_lift=0.05).fit(train, y_train)
    assert engine.threshold_ == engine.base_rate_ + 0.05
    decisions = engine.decide(synthetic(2000, 5)[0])
    expected = decisions.after_stage2 & (decisions.confidence >= engine.threshold_)
    np.testing.assert_array_equal(decisions.after_stage3, expected)
