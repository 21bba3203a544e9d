"""The serving combiner on small made-up bundles, against values worked out by hand (issue 25's mutation pass).

The gate is a softmax with zero kernels, so its weights are fixed by its bias (``log w``) whatever the fingerprint;
every score, gate weight, position and explanation below follows from the answers by hand. The serving path runs
in a Lambda, so it must not emit NumPy warnings either: this module turns them into errors.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.features.fingerprint import FINGERPRINT_WARMUP
from signal_engine.moe.numpy_gate import GateWeights, MetaArrays
from signal_engine.serving.bundle import (
    BundleError,
    Calibration,
    CombinerSettings,
    GateSpec,
    RiskSettings,
    ScoreSettings,
    ServingBundle,
)
from signal_engine.serving.combine import Combiner, NoExpertAnswered, fingerprint_row, volatility_score
from tests.serving_support import goog_series

pytestmark = pytest.mark.filterwarnings("error")

OUTPUTS = {"trend": ("p_up", "p_down"), "levels": ("support", "resistance"), "volatility": ("vol_forecast",)}
ALL = ("trend", "levels", "volatility")
Answer = dict[str, Any] | None


def gate(experts: tuple[str, ...], logits: tuple[float, ...], features: tuple[str, ...] = FINGERPRINT_NAMES,
         k: int | None = None) -> GateSpec:
    """A softmax gate whose weights are ``softmax(logits)`` on every row."""
    f, e = len(features), len(experts)
    weights = GateWeights(np.zeros(f), np.ones(f), ((np.zeros((f, e)), np.asarray(logits, dtype=float)),),
                          k if k is not None else e, experts)
    return GateSpec("softmax", weights, features)


def make_bundle(experts: tuple[str, ...] = ALL, weights: tuple[float, ...] = (0.5, 0.3, 0.2),
                **changes: Any) -> ServingBundle:
    """Thresholds +-0.5, exit level 0, target 0.04 a year at 16 periods a year: 0.01 per bar; leverage up to 2."""
    bundle = ServingBundle(
        version="by-hand", created_at="2026-01-01T00:00:00Z", profile="quick", timeframe="1d", symbols=("X",),
        trained_through={"X": "2025-12-31"}, experts=experts, expert_outputs={e: OUTPUTS[e] for e in experts},
        min_bars=1, scores=ScoreSettings(volatility_window=4, volatility_min_periods=2),
        gate=gate(experts, tuple(math.log(w) for w in weights)),
        combiner=CombinerSettings("weighted", 0.5, -0.5),
        calibration=Calibration(np.array([0.0, 1.0]), np.array([0.5, 1.0])),
        risk=RiskSettings(target_vol_annual=0.04, max_leverage=2.0, allow_short=True, exit_level=0.0,
                          periods_per_year=16.0))
    return replace(bundle, **changes)


def trend(up: float, down: float) -> dict[str, Any]:
    return {"p_up": up, "p_down": down}


def levels(support: float | None, resistance: float | None) -> dict[str, Any]:
    return {"support": support, "resistance": resistance}


FLAT_HISTORY = [0.01, 0.01, 0.01, 0.01]  # std 0: volatility score 0


def vol(forecast: float | None, history: list[float | None] | None = None) -> dict[str, Any]:
    return {"vol_forecast": forecast, "vol_history": FLAT_HISTORY if history is None else history}


def decide(bundle: ServingBundle, answers: list[dict[str, Answer]], close: list[float] | float = 100.0,
           **kwargs: Any) -> Any:
    n = len(answers)
    closes = np.full(n, close) if isinstance(close, float) else np.asarray(close, dtype=float)
    return Combiner(bundle).decide(answers, closes, np.zeros((n, len(FINGERPRINT_NAMES))), **kwargs)


def target_adjustment(raw: float, forecast: float) -> dict[str, Any]:
    return {"rule": "volatility_target", "value": pytest.approx(raw),
            "detail": f"size = target 0.01000 per bar / forecast {forecast:.5f} = {raw:.3f}"}


EXPOSURE_CAP = {"rule": "exposure_cap", "value": 1.0, "detail": "exposure clipped to [-1, 1]"}
NO_FORECAST = {"rule": "no_volatility_forecast", "detail": "no usable volatility forecast: no exposure is taken"}


def test_weighted_decisions_sizes_and_explanations_by_hand() -> None:
    bundle = make_bundle()
    answers: list[dict[str, Answer]] = [
        # trend 1, levels (95-90)/20 -> 1 - 2 x 0.25 = 0.5, volatility 0: 0.5 + 0.3 x 0.5 = 0.65 -> buy; 0.01/0.005 = 2
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.005)},
        # trend -1, levels (105-90)/20 -> -0.5: -0.65 -> sell; 0.01/0.02 = 0.5
        {"trend": trend(0.0, 1.0), "levels": levels(90, 110), "volatility": vol(0.02)},
        # trend 0, levels at the mid-point 0: hold, flat, nothing to explain
        {"trend": trend(0.5, 0.5), "levels": levels(90, 110), "volatility": vol(0.02)},
        # buy again, size exactly 1: no exposure cap
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.01)},
        # no volatility answer: the gate renormalises to 0.5/0.8 and 0.3/0.8: 0.625 + 0.375 x 0.5 = 0.8125
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": None},
        # a forecast of 0 answers (score from its history) but sizes nothing
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.0)},
    ]
    d = decide(bundle, answers, close=[95.0, 105.0, 100.0, 95.0, 95.0, 95.0])
    assert d.experts == ALL
    np.testing.assert_allclose(d.scores[:5], np.array([[1, 0.5, 0], [-1, -0.5, 0], [0, 0, 0], [1, 0.5, 0],
                                                       [1, 0.5, np.nan]]), atol=1e-12)
    np.testing.assert_allclose(d.gate[4], [0.625, 0.375, 0.0], atol=1e-12)
    np.testing.assert_allclose(d.combined, [0.65, -0.65, 0.0, 0.65, 0.8125, 0.65], atol=1e-12)
    np.testing.assert_array_equal(d.signal_direction, [1, -1, 0, 1, 1, 1])
    assert [d.signal(i) for i in range(3)] == ["buy", "sell", "hold"]
    np.testing.assert_allclose(d.confidence, 0.5 + 0.5 * np.abs(d.combined), atol=1e-12)
    np.testing.assert_allclose(d.vol_forecast, [0.005, 0.02, 0.02, 0.01, np.nan, 0.0])
    np.testing.assert_allclose(d.position, [1.0, -0.5, 0.0, 1.0, 0.0, 0.0], atol=1e-12)
    assert d.adjustments == (
        (target_adjustment(2.0, 0.005), EXPOSURE_CAP),  # 2 is not above the maximum leverage 2
        (target_adjustment(0.5, 0.02),),
        (),
        (target_adjustment(1.0, 0.01),),
        (NO_FORECAST,),
        (NO_FORECAST,),
    )


def test_leverage_cap_shorting_off_and_periods_per_year_by_hand() -> None:
    one = make_bundle(risk=RiskSettings(0.04, max_leverage=1.0, allow_short=False, periods_per_year=16.0))
    answers: list[dict[str, Answer]] = [
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.005)},
        {"trend": trend(0.0, 1.0), "levels": levels(90, 110), "volatility": vol(0.005)},
        {"trend": trend(0.5, 0.5), "levels": levels(90, 110), "volatility": vol(0.005)},
    ]
    d = decide(one, answers, close=[95.0, 105.0, 100.0])
    np.testing.assert_allclose(d.position, [1.0, 0.0, 0.0])
    capped = {"rule": "max_leverage", "value": 1.0, "detail": "size 2.000 capped at the maximum leverage 1"}
    no_short = {"rule": "no_short", "detail": "short selling is off (risk.allow_short=false): sell means flat"}
    assert d.adjustments == ((target_adjustment(2.0, 0.005), capped), (no_short,), ())
    half = make_bundle(risk=RiskSettings(0.04, max_leverage=0.5, allow_short=True, periods_per_year=16.0))
    np.testing.assert_allclose(decide(half, answers, close=[95.0, 105.0, 100.0]).position, [0.5, -0.5, 0.0])
    # per row: 64 periods a year halve the per-bar target: 0.005 / 0.02 = 0.25; 16 give 0.01 / 0.02 = 0.5
    buy: dict[str, Answer] = {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02)}
    per_row = decide(one, [buy, buy], close=95.0, periods_per_year=np.array([64.0, 16.0]))
    np.testing.assert_allclose(per_row.position, [0.25, 0.5])
    assert per_row.adjustments[0] == ({"rule": "volatility_target", "value": pytest.approx(0.25),
                                       "detail": "size = target 0.00500 per bar / forecast 0.02000 = 0.250"},)


def test_hold_rule_at_the_thresholds_and_the_exit_level() -> None:
    """The gate puts all its weight on trend, so the combined score is p_up - p_down exactly."""
    bundle = make_bundle(gate=gate(ALL, (0.0, -1000.0, -1000.0)))
    rows = [(0.75, 0.25, 0.0), (0.25, 0.75, 0.0),  # exactly at the buy / sell threshold from flat: no entry
            (0.5, 0.5, 0.4), (0.5, 0.5, -0.4),  # exactly at the exit level: the position is kept
            (0.75, 0.25, -0.4), (0.25, 0.75, 0.4),  # a short at the buy threshold, a long at the sell one: let go
            (0.125, 0.875, 0.4), (0.875, 0.125, -0.4),  # past the opposite threshold: reversed
            (0.625, 0.375, np.nan)]  # unknown previous position: as flat
    answers: list[dict[str, Answer]] = [{"trend": trend(up, down), "levels": None, "volatility": vol(0.01)}
                                        for up, down, _ in rows]
    previous = np.array([p for _, _, p in rows])
    d = decide(bundle, answers, previous_position=previous)
    np.testing.assert_allclose(d.gate[:, 0], 1.0)
    np.testing.assert_array_equal(d.combined, [0.5, -0.5, 0.0, 0.0, 0.5, -0.5, -0.75, 0.75, 0.25])
    np.testing.assert_array_equal(d.signal_direction, [0, 0, 0, 0, 0, 0, -1, 1, 0])
    np.testing.assert_array_equal(d.held_direction, [0, 0, 1, -1, 0, 0, -1, 1, 0])
    assert d.held_direction.dtype == np.float64
    kept = "the score is inside the thresholds and has not crossed the exit level 0"
    assert d.adjustments[2][0] == {"rule": "hold", "detail": f"kept long: {kept} (previous position 0.4)"}
    assert d.adjustments[3][0] == {"rule": "hold", "detail": f"kept short: {kept} (previous position -0.4)"}
    assert [len(a) for a in d.adjustments] == [0, 0, 2, 2, 0, 0, 1, 1, 0]


def test_the_gate_falls_back_to_equal_weights_when_it_gives_no_weight_to_the_experts_that_answered() -> None:
    bundle = make_bundle(gate=gate(ALL, (0.0, -1000.0, -1000.0)))  # softmax (1, 0, 0) exactly
    answers: list[dict[str, Answer]] = [
        {"trend": None, "levels": levels(90, 110), "volatility": vol(0.02, [0.01, None, 0.01, 0.04])},
        {"trend": trend(0.75, 0.25), "levels": None, "volatility": vol(0.02)},
    ]
    d = decide(bundle, answers, close=95.0)
    np.testing.assert_allclose(d.gate, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(d.combined, [0.5 * 0.5 + 0.5 * -math.tanh(math.sqrt(2)), 0.5], atol=1e-12)


def test_scores_are_clipped_to_one_and_partial_answers_count_as_missing() -> None:
    bundle = make_bundle()
    answers: list[dict[str, Answer]] = [
        {"trend": trend(3.0, 0.0), "levels": levels(None, 110), "volatility": vol(None)},
        {"trend": trend(0.0, 3.0), "levels": levels(90, None), "volatility": {"vol_forecast": 0.02}},
    ]
    d = decide(bundle, answers)
    np.testing.assert_array_equal(d.available, [[True, False, False], [True, False, False]])
    np.testing.assert_array_equal(d.combined, [1.0, -1.0])


def test_closes_given_as_a_column_decide_the_same() -> None:
    answers: list[dict[str, Answer]] = [{"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02)},
                                        {"trend": trend(0.0, 1.0), "levels": levels(90, 110), "volatility": vol(0.02)}]
    column = Combiner(make_bundle()).decide(answers, np.array([[95.0], [105.0]]), np.zeros((2, 5)))
    np.testing.assert_allclose(column.combined, [0.65, -0.65], atol=1e-12)


def test_no_expert_answering_names_the_rows() -> None:
    answers: list[dict[str, Answer]] = [{"trend": trend(0.6, 0.2), "levels": None, "volatility": None},
                                        dict.fromkeys(ALL), {"trend": None, "levels": levels(90, 110)}]
    with pytest.raises(NoExpertAnswered, match=re.escape("no expert answered for row(s) [1]")):
        decide(make_bundle(), answers)


def test_rule_combiner_by_hand() -> None:
    """Close 100; p_neutral = 1 - p_up - p_down, support_distance = (close - support) / close,
    resistance_distance = (resistance - close) / close."""
    rules: dict[str, tuple[str, ...]] = {"buy": ("p_up > 0.5", "support_distance < 0.1"),
                                         "sell": ("p_neutral < 0.2", "resistance_distance < 0.1")}
    bundle = make_bundle(combiner=CombinerSettings("rule", 0.5, -0.5, rules=rules))
    answers: list[dict[str, Answer]] = [
        {"trend": trend(0.6, 0.1), "levels": levels(95, 120)},  # neutral 0.3, sd 0.05, rd 0.2: buy only
        {"trend": trend(0.3, 0.6), "levels": levels(98, 105)},  # neutral 0.1, sd 0.02, rd 0.05: sell only
        {"trend": trend(0.7, 0.2), "levels": levels(95, 105)},  # both: no signal
        {"trend": trend(0.4, 0.3), "levels": levels(80, 130)},  # neither
    ]
    d = decide(bundle, [{**a, "volatility": vol(0.02)} for a in answers])
    np.testing.assert_array_equal(d.combined, [1.0, -1.0, 0.0, 0.0])


@pytest.mark.parametrize("rules", [{"buy": (), "sell": ()}, {"buy": ("p_sideways > 0",), "sell": ("p_sideways < 0",)}])
def test_rules_without_conditions_or_on_fields_the_serving_path_lacks_never_fire(rules: dict[str, Any]) -> None:
    bundle = make_bundle(combiner=CombinerSettings("rule", 0.5, -0.5, rules=rules))
    d = decide(bundle, [{"trend": trend(0.9, 0.0), "levels": levels(90, 110), "volatility": vol(0.02)}] * 2)
    np.testing.assert_array_equal(d.combined, [0.0, 0.0])


def test_binary_meta_combiner_by_hand() -> None:
    """One logit l = 2 (score_trend - 0.2) / 0.5 + 0.4 over (down, up): P(up) - P(down) = tanh(l / 2)."""
    meta = MetaArrays(("score_trend",), np.array([0.2]), np.array([0.5]), np.array([[2.0]]), np.array([0.4]),
                      np.array([0, 2]))
    bundle = make_bundle(combiner=CombinerSettings("meta", 0.5, -0.5, meta=meta))
    d = decide(bundle, [{"trend": trend(0.8, 0.1), "levels": None, "volatility": None},
                        {"trend": trend(0.2, 0.5), "levels": None, "volatility": None}])
    np.testing.assert_allclose(d.combined, [math.tanh(1.2), math.tanh(-0.8)], atol=1e-12)


def test_the_combiner_kind_decides_what_a_bundle_carries_is_used() -> None:
    meta = MetaArrays(("score_trend",), np.array([0.0]), np.array([1.0]), np.array([[-5.0]]), np.array([0.0]),
                      np.array([0, 2]))
    weighted = make_bundle(combiner=CombinerSettings("weighted", 0.5, -0.5, rules={"buy": ("not a rule",)},
                                                     meta=meta))
    d = decide(weighted, [{"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02)}], 95.0)
    np.testing.assert_allclose(d.combined, [0.65])


def test_meta_features_the_serving_path_does_not_compute_are_refused() -> None:
    meta = MetaArrays(("score_trend", "p_sideways"), np.zeros(2), np.ones(2), np.ones((3, 2)), np.zeros(3),
                      np.array([0, 1, 2]))
    bundle = make_bundle(combiner=CombinerSettings("meta", 0.5, -0.5, meta=meta))
    with pytest.raises(BundleError, match=r"bundle 'by-hand': meta.npz reads \['p_sideways'\], which the serving "
                                          r"path does not compute; it has \[.*'score_trend'"):
        decide(bundle, [{"trend": trend(0.6, 0.2), "levels": None, "volatility": None}])


def test_a_bundle_without_a_volatility_expert_takes_no_exposure() -> None:
    bundle = make_bundle(("trend", "levels"), (0.5, 0.5))
    d = decide(bundle, [{"trend": trend(1.0, 0.0), "levels": levels(90, 110)}] * 2, close=95.0)
    np.testing.assert_allclose(d.combined, [0.75, 0.75])
    assert d.vol_forecast.shape == (2,) and np.isnan(d.vol_forecast).all()
    np.testing.assert_array_equal(d.position, [0.0, 0.0])
    assert d.adjustments == ((NO_FORECAST,), (NO_FORECAST,))


def test_a_bundle_without_a_trend_expert_decides() -> None:
    bundle = make_bundle(("levels", "volatility"), (0.5, 0.5))
    d = decide(bundle, [{"levels": levels(90, 110), "volatility": vol(0.02)}], close=91.0)
    np.testing.assert_allclose(d.combined, [0.5 * 0.9])


@pytest.mark.parametrize(("outputs", "message"), [
    (("p_up",), "expert 'trend' answers ['p_up']; the serving path scores trend (p_up, p_down), levels (support, "
                "resistance) and volatility (vol_forecast) experts"),
    (("support",), "expert 'trend' answers ['support']; the serving path scores trend"),
])
def test_an_expert_of_no_known_kind_is_refused(outputs: tuple[str, ...], message: str) -> None:
    bundle = make_bundle(expert_outputs={**{e: OUTPUTS[e] for e in ALL}, "trend": outputs})
    with pytest.raises(BundleError, match=re.escape(message)):
        Combiner(bundle)


@pytest.mark.parametrize(("rules", "message"), [
    ({"hold": ("p_up > 0.5",)}, "field 'combiner.rules' has signal 'hold'; expected 'buy' and/or 'sell'"),
    ({"buy": ("p_up >> 0.5",)}, "field 'combiner.rules.buy': cannot read condition 'p_up >> 0.5'; expected "
                                "'field op number' such as 'p_up > 0.6'"),
])
def test_unreadable_rules_are_refused_naming_the_field(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=re.escape(message)):
        Combiner(make_bundle(combiner=CombinerSettings("rule", 0.5, -0.5, rules=rules)))


def test_gate_features_the_serving_path_does_not_compute_are_refused() -> None:
    features = ("vol30", "made_up")
    bundle = make_bundle(gate=gate(ALL, (0.0, 0.0, 0.0), features))
    with pytest.raises(BundleError, match=re.escape(f"bundle 'by-hand': field 'gate.features' names ['made_up']; "
                                                    f"the serving path computes {list(FINGERPRINT_NAMES)}")):
        Combiner(bundle)


def test_the_combiners_fingerprint_follows_the_gates_feature_order() -> None:
    bars = goog_series().bars.iloc[:150]
    h, low, c, v = (bars[k].to_numpy() for k in ("high", "low", "close", "volume"))
    reordered = tuple(reversed(FINGERPRINT_NAMES))
    combiner = Combiner(make_bundle(gate=gate(ALL, (0.0, 0.0, 0.0), reordered)))
    got = combiner.fingerprint(h, low, c, v)
    np.testing.assert_array_equal(got, fingerprint_row(h, low, c, v)[::-1])
    assert got[reordered.index("volume_z")] != 0.0 and np.isfinite(got).all()


def test_fingerprint_row_warm_up_ends_at_each_features_first_full_window() -> None:
    bars = goog_series().bars
    for name, warmup in FINGERPRINT_WARMUP.items():
        i = FINGERPRINT_NAMES.index(name)
        for n, known in ((warmup, False), (warmup + 1, True)):
            window = bars.iloc[:n]
            got = fingerprint_row(window["high"].to_numpy(), window["low"].to_numpy(), window["close"].to_numpy(),
                                  window["volume"].to_numpy())
            assert np.isfinite(got[i]) == known, f"{name} with {n} bars"


def test_a_flat_window_gives_a_fingerprint_without_warnings() -> None:
    flat = np.full(120, 10.0)
    got = fingerprint_row(flat, flat, flat, np.zeros(120))
    assert got[FINGERPRINT_NAMES.index("vol30")] == 0.0


@pytest.mark.parametrize(("history", "min_periods", "expected"), [
    ([], 2, 0.0),
    ([0.01, 0.02, 0.04, None], 2, 0.0),  # no forecast at the last bar
    ([0.01, 0.02, 0.04, 0.0], 2, 0.0),  # an unusable last forecast
    ([0.01, 0.02, 0.04, -0.01], 2, 0.0),
    ([0.02, 0.02, 0.02, 0.02], 2, 0.0),  # no dispersion
    ([0.01, 0.04], 3, 0.0),  # too few forecasts
    ([0.01, 0.04], 2, -math.tanh(1.0)),  # exactly enough: z = 1
    # two equal logs and a higher last one, the fourth unusable wherever it is: z = sqrt(2)
    ([0.01, None, 0.01, 0.04], 2, -math.tanh(math.sqrt(2))),
    ([0.01, 0.01, None, 0.04], 2, -math.tanh(math.sqrt(2))),
    ([0.01, 0.0, 0.01, 0.04], 2, -math.tanh(math.sqrt(2))),
    ([0.01, 0.01, -0.5, 0.04], 2, -math.tanh(math.sqrt(2))),
    ([0.04, 0.04, 0.01], 2, math.tanh(math.sqrt(2))),
])
def test_volatility_score_by_hand(history: list[float | None], min_periods: int, expected: float) -> None:
    values = np.array([np.nan if v is None else v for v in history], dtype=float)
    assert volatility_score(values, 10, min_periods) == pytest.approx(expected, abs=1e-12)


def test_a_volatility_answer_without_a_forecast_of_the_decided_bar_abstains() -> None:
    """``vol_har_implied`` without the decided bar's implied volatility: the sizing forecast is there, but the
    score's history ends with null. The slot is unavailable (not a score of 0): the gate renormalises trend and
    levels to 0.5/0.8 and 0.3/0.8, and positions are still sized by ``vol_forecast``."""
    bundle = make_bundle()
    rising = [0.01, 0.01, 0.02, 0.04]  # logs ln 0.01, ln 0.01, ln 0.02, ln 0.04: the last is above the mean
    answers: list[dict[str, Answer]] = [
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02, [0.01, 0.01, 0.02, None])},
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02, [])},
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(None, rising)},
        {"trend": trend(1.0, 0.0), "levels": levels(90, 110), "volatility": vol(0.02, rising)},
    ]
    d = decide(bundle, answers, close=95.0)
    assert np.isnan(d.scores[:3, 2]).all() and not d.available[:3, 2].any()
    np.testing.assert_allclose(d.gate[:3], [[0.625, 0.375, 0.0]] * 3, atol=1e-12)
    np.testing.assert_allclose(d.combined[:3], 0.625 + 0.375 * 0.5, atol=1e-12)
    np.testing.assert_allclose(d.vol_forecast[:3], [0.02, 0.02, np.nan])
    # with the decided bar forecast the slot answers: z of ln 0.04 against the four logs, by hand
    logs = np.log(rising)
    z = (logs[-1] - logs.mean()) / logs.std()
    assert d.scores[3, 2] == pytest.approx(-math.tanh(z)) and d.gate[3, 2] == pytest.approx(0.2)
