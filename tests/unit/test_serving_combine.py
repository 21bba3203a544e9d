"""The NumPy combine path agrees with the backtest's parts, degrades over missing experts, applies the risk layer."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signal_engine.features import FINGERPRINT_NAMES, feature_frame
from signal_engine.moe.combiner import WeightedScoreCombiner
from signal_engine.moe.numpy_gate import MetaArrays, gate_forward, top_k
from signal_engine.moe.rule_gate import FingerprintRuleGate
from signal_engine.moe.scores import levels_score, trend_score
from signal_engine.moe.scores import volatility_score as pandas_volatility_score
from signal_engine.registry import load_experts
from signal_engine.risk import held_direction, volatility_target_position
from signal_engine.serving.bundle import CombinerSettings, GateSpec, ServingBundle, read_current
from signal_engine.serving.combine import Combiner, NoExpertAnswered, fingerprint_row, volatility_score
from signal_engine.serving.experts import answer, market_frame
from signal_engine.serving.export import rule_gate_params
from tests.serving_support import TRAIN_BARS, goog_registry, goog_series

Answers = dict[str, dict[str, Any] | None]


@pytest.fixture(scope="module")
def bundle() -> ServingBundle:
    return ServingBundle.load(read_current(goog_registry()))


@pytest.fixture(scope="module")
def rows(bundle: ServingBundle) -> tuple[list[Answers], np.ndarray, np.ndarray]:
    """Real expert answers, closes and fingerprints at 12 unseen GOOG bars."""
    experts = load_experts(read_current(goog_registry()) / "experts")
    bars = goog_series().bars
    answers: list[dict[str, dict[str, Any] | None]] = []
    closes, prints = [], []
    for end in range(TRAIN_BARS + 20, TRAIN_BARS + 620, 50):
        window = bars.iloc[end - 400:end]
        frame = market_frame(window)
        answers.append({name: answer(name, experts[name], window, history=252, frame=frame) for name in bundle.experts})
        closes.append(window["close"].iloc[-1])
        prints.append(fingerprint_row(window["high"].to_numpy(), window["low"].to_numpy(), window["close"].to_numpy(),
                                      window["volume"].to_numpy()))
    return answers, np.array(closes), np.vstack(prints)


def test_fingerprint_row_is_the_feature_frame_last_row() -> None:
    bars = goog_series().bars.iloc[:400]
    expected = feature_frame(bars).loc[:, list(FINGERPRINT_NAMES)].to_numpy()[-1]
    got = fingerprint_row(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(),
                          bars["volume"].to_numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_fingerprint_row_masks_the_warm_up() -> None:
    bars = goog_series().bars.iloc[:50]
    got = fingerprint_row(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), None)
    assert np.isnan(got[FINGERPRINT_NAMES.index("hurst")])
    assert np.isfinite(got[FINGERPRINT_NAMES.index("vol30")])
    assert got[FINGERPRINT_NAMES.index("volume_z")] == 0.0


def test_volatility_score_matches_the_pandas_version_at_the_last_bar() -> None:
    rng = np.random.default_rng(7)
    vol = np.exp(rng.normal(-4, 0.3, 400))
    vol[[10, 200, 390]] = np.nan
    for end in (5, 25, 260, 399, 400):
        expected = pandas_volatility_score(vol[:end], 250, 20)[-1]
        assert volatility_score(vol[:end], 250, 20) == pytest.approx(expected, abs=1e-12)


def test_decisions_match_the_backtest_parts(bundle: ServingBundle,
                                            rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    d = Combiner(bundle).decide(answers, closes, prints)
    trend = np.array([[a["trend"]["p_up"], a["trend"]["p_down"]] for a in answers])  # type: ignore[index]
    levels = np.array([[a["levels"]["support"], a["levels"]["resistance"]] for a in answers])  # type: ignore[index]
    vol_scores = [pandas_volatility_score(np.array(a["volatility"]["vol_history"]), 250, 20)[-1]  # type: ignore[index]
                  for a in answers]
    scores = np.column_stack((trend_score(trend[:, 0], trend[:, 1]), levels_score(closes, levels[:, 0], levels[:, 1]),
                              vol_scores))
    np.testing.assert_allclose(d.scores, scores, atol=1e-12)
    assert bundle.gate.weights is not None
    np.testing.assert_allclose(d.gate, gate_forward(bundle.gate.weights, prints), atol=1e-12)
    combiner = WeightedScoreCombiner(bundle.combiner.buy_threshold, bundle.combiner.sell_threshold).fit()
    np.testing.assert_allclose(d.combined, combiner.decision_function(scores, d.gate), atol=1e-12)
    np.testing.assert_array_equal(d.signal_direction, combiner.direction(d.combined))
    vol = np.array([a["volatility"]["vol_forecast"] for a in answers])  # type: ignore[index]
    for i in range(len(answers)):  # from flat, one bar: the backtest's hold rule and sizing on that bar
        held = held_direction(d.combined[i:i + 1], enter_long=bundle.combiner.buy_threshold,
                              enter_short=bundle.combiner.sell_threshold, exit_level=bundle.risk.exit_level)
        position = volatility_target_position(
            held, vol[i:i + 1], target_vol_per_bar=bundle.risk.target_vol_annual / np.sqrt(252.0),
            max_leverage=bundle.risk.max_leverage, allow_short=bundle.risk.allow_short)
        assert d.held_direction[i] == held[0]
        assert d.position[i] == pytest.approx(position[0], abs=1e-12)
    np.testing.assert_allclose(d.confidence, np.interp(np.abs(d.combined), bundle.calibration.x, bundle.calibration.y))
    assert len({d.signal(i) for i in range(len(answers))}) >= 2, "the rows should not all give the same signal"


def test_one_missing_expert_renormalises_the_gate(bundle: ServingBundle,
                                                  rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    full = Combiner(bundle).decide(answers, closes, prints)
    without = [{**a, "levels": None} for a in answers]
    d = Combiner(bundle).decide(without, closes, prints)
    assert not d.available[:, 1].any() and d.available[:, [0, 2]].all()
    assert np.all(d.gate[:, 1] == 0)
    np.testing.assert_allclose(d.gate.sum(axis=1), 1.0)
    kept = full.gate[:, [0, 2]]
    np.testing.assert_allclose(d.gate[:, [0, 2]], kept / kept.sum(axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(d.combined, np.clip((d.gate[:, [0, 2]] * full.scores[:, [0, 2]]).sum(axis=1), -1, 1))


def test_a_malformed_answer_counts_as_missing(bundle: ServingBundle,
                                              rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    broken = [{**a, "trend": {"p_up": "high", "p_down": None}} for a in answers]
    d = Combiner(bundle).decide(broken, closes, prints)
    assert not d.available[:, 0].any()
    np.testing.assert_allclose(d.gate[:, 0], 0.0)


def test_no_expert_at_all_raises(bundle: ServingBundle, rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    nothing: list[Answers] = [{name: None for name in bundle.experts}]
    with pytest.raises(NoExpertAnswered):
        Combiner(bundle).decide([answers[0], *nothing], closes[:2], prints[:2])


def test_hold_rule_keeps_a_position_inside_the_band(bundle: ServingBundle,
                                                    rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    wide = replace(bundle, combiner=CombinerSettings("weighted", 0.95, -0.95))
    d = Combiner(wide).decide(answers, closes, prints, previous_position=np.full(len(answers), 0.5))
    above_exit = d.combined > bundle.risk.exit_level
    np.testing.assert_array_equal(d.signal_direction, 0)
    np.testing.assert_array_equal(d.held_direction, np.where(above_exit, 1, 0))
    kept = int(np.flatnonzero(above_exit)[0])
    assert d.adjustments[kept][0]["rule"] == "hold"
    assert d.position[kept] > 0
    flat = Combiner(wide).decide(answers, closes, prints)
    np.testing.assert_array_equal(flat.position, 0.0)


@pytest.mark.parametrize("previous", [0.5, -0.5, 0.0])
def test_hold_rule_from_any_previous_side_matches_the_backtests(
        bundle: ServingBundle, rows: tuple[list[Answers], np.ndarray, np.ndarray], previous: float) -> None:
    answers, closes, prints = rows
    wide = replace(bundle, combiner=CombinerSettings("weighted", 0.95, -0.95))
    d = Combiner(wide).decide(answers, closes, prints, previous_position=np.full(len(answers), previous))
    exit_level = bundle.risk.exit_level
    assert (d.combined > exit_level).any() and (d.combined < exit_level).any(), "rows on both sides of the exit"
    entry = {0.5: [1.0], -0.5: [-1.0], 0.0: []}[previous]  # a bar that entered the previous side, then bar i
    for i, score in enumerate(d.combined):
        held = held_direction(np.array([*entry, score]), enter_long=0.95, enter_short=-0.95, exit_level=exit_level)
        assert d.held_direction[i] == held[-1], f"row {i}: score {score:+.3f} after a position of {previous}"


def test_short_signals_are_flat_when_shorting_is_off(bundle: ServingBundle,
                                                     rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    always_sell = replace(bundle, combiner=CombinerSettings("weighted", 1.0, 0.99),
                          risk=replace(bundle.risk, allow_short=False))
    d = Combiner(always_sell).decide(answers, closes, prints)
    np.testing.assert_array_equal(d.signal_direction, -1)
    np.testing.assert_array_equal(d.position, 0.0)
    assert all(a[0]["rule"] == "no_short" for a in d.adjustments)


def test_rule_combiner(bundle: ServingBundle, rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    rules = {"buy": ("p_up > 0.0", "vol_forecast < 1"), "sell": ("p_down > 2",)}
    d = Combiner(replace(bundle, combiner=CombinerSettings("rule", 0.5, -0.5, rules=rules))).decide(
        answers, closes, prints)
    np.testing.assert_array_equal(d.combined, 1.0)
    np.testing.assert_array_equal(d.signal_direction, 1)


def test_meta_combiner(bundle: ServingBundle, rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    features = ("score_trend", "score_levels", "score_volatility", "gate_trend")
    meta = MetaArrays(features, np.zeros(4), np.ones(4), np.array([[-1.0, 0, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, 0]]),
                      np.zeros(3), np.array([0, 1, 2]))
    d = Combiner(replace(bundle, combiner=CombinerSettings("meta", 0.1, -0.1, meta=meta))).decide(
        answers, closes, prints)
    s = d.scores[:, 0]
    expected = (np.exp(s) - np.exp(-s)) / (np.exp(s) + 1 + np.exp(-s))
    np.testing.assert_allclose(d.combined, expected, atol=1e-12)


def test_round_tripped_bundle_decides_the_same(bundle: ServingBundle, tmp_path: Path,
                                               rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    again = ServingBundle.load(bundle.save(tmp_path / "b"))
    a, b = Combiner(bundle).decide(answers, closes, prints), Combiner(again).decide(answers, closes, prints)
    np.testing.assert_array_equal(a.combined, b.combined)
    np.testing.assert_array_equal(a.position, b.position)


def rule_gate_bundle(bundle: ServingBundle, k: int) -> tuple[ServingBundle, FingerprintRuleGate]:
    """The GOOG bundle with the rule gate fitted on its training bars, exported as the trainer exports it."""
    train = goog_series().bars.iloc[:TRAIN_BARS]
    gate = FingerprintRuleGate(k=k).fit(feature_frame(train).loc[:, list(FINGERPRINT_NAMES)].to_numpy(float))
    spec = GateSpec("rule", None, FINGERPRINT_NAMES, rule_gate_params(gate, bundle.experts))
    return replace(bundle, gate=spec), gate


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rule_gate_serves_the_fitted_gates_weights(bundle: ServingBundle, k: int,
                                                   rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    rule_bundle, gate = rule_gate_bundle(bundle, k)
    prints = prints.copy()
    vol30 = FINGERPRINT_NAMES.index("vol30")
    prints[::3, vol30] = gate.vol_threshold_ * 1.5  # some stressed rows, so the volatility rule fires too
    prints[1, FINGERPRINT_NAMES.index("hurst")] = np.nan
    d = Combiner(rule_bundle).decide(answers, closes, prints)
    np.testing.assert_allclose(d.gate, gate.predict_proba(prints), rtol=0, atol=1e-12)
    assert gate.rules(prints).any(axis=0).all(), "every rule should fire on some row"
    assert len(np.unique(d.gate.round(12), axis=0)) >= 2
    np.testing.assert_allclose(d.combined, np.clip((d.gate * d.scores).sum(axis=1), -1, 1), atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rule_gate_degrades_like_the_softmax(bundle: ServingBundle, k: int,
                                             rows: tuple[list[Answers], np.ndarray, np.ndarray]) -> None:
    answers, closes, prints = rows
    rule_bundle, gate = rule_gate_bundle(bundle, k)
    prints = prints.copy()
    prints[::2, FINGERPRINT_NAMES.index("vol30")] = gate.vol_threshold_ * 1.5
    without = [{**a, "levels": None} if i % 2 else a for i, a in enumerate(answers)]  # odd rows lack levels
    d = Combiner(rule_bundle).decide(without, closes, prints)
    full = copy.deepcopy(gate).set_params(k=3).predict_proba(prints)  # the fitted rule weights before top-k
    odd, even = np.arange(1, len(answers), 2), np.arange(0, len(answers), 2)
    kept = full[odd][:, [0, 2]] / full[odd][:, [0, 2]].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(d.gate[odd][:, [0, 2]], top_k(kept, min(k, 2)), atol=1e-12)
    assert np.all(d.gate[odd, 1] == 0)
    np.testing.assert_allclose(d.gate[even], gate.predict_proba(prints[even]), atol=1e-12)
    np.testing.assert_allclose(d.gate.sum(axis=1), 1.0)
    assert ((d.gate > 0).sum(axis=1) <= k).all()
