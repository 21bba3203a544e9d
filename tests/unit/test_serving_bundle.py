"""The model bundle: save/load round trip, exports that match the fitted parts, clear errors for bad bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.meta import MetaModelCombiner
from signal_engine.moe.numpy_gate import gate_forward
from signal_engine.registry import load_experts
from signal_engine.serving.bundle import (
    BundleError,
    CombinerSettings,
    ServingBundle,
    read_current,
)
from signal_engine.serving.experts import answer, bars_frame, market_frame
from signal_engine.serving.export import calibration_knots, meta_arrays, softmax_gate_weights
from tests.serving_support import TRAIN_BARS, goog_registry, goog_series, request_bars


@pytest.fixture(scope="module")
def bundle_dir() -> Path:
    return read_current(goog_registry())


@pytest.fixture()
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    return target


def test_round_trip_keeps_every_field(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = ServingBundle.load(bundle_dir)
    again = ServingBundle.load(bundle.save(tmp_path / "again"))
    assert again.to_json() == bundle.to_json()
    for (k1, b1), (k2, b2) in zip(bundle.gate.weights.layers, again.gate.weights.layers, strict=True):
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(bundle.calibration.x, again.calibration.x)
    np.testing.assert_array_equal(bundle.calibration.y, again.calibration.y)
    assert again.experts == ("trend", "levels", "volatility")
    assert again.gate.weights.k == 3


def test_bundle_json_follows_the_documented_layout(bundle_dir: Path) -> None:
    doc = json.loads((bundle_dir / "bundle.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["gate"] == {"kind": "softmax", "file": "gate.npz",
                           "features": ["vol30", "trend_r2", "hurst", "spread", "volume_z"]}
    assert doc["combiner"]["file"] is None
    assert set(doc["risk"]) == {"target_vol_annual", "max_leverage", "allow_short", "exit_level", "periods_per_year"}
    assert set(json.loads((bundle_dir / "calibration.json").read_text())) == {"x", "y"}


@pytest.mark.parametrize("k", [None, 1, 2, 3])
def test_softmax_gate_export_matches_the_fitted_gate(k: int | None) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + 1
    X[::17, 2] = np.nan
    scores = np.tanh(rng.normal(size=(300, 3)))
    y = scores[:, 0] * (X[:, 0] > 1) + rng.normal(scale=0.3, size=300)
    gate = SoftmaxGate(iterations=50, k=k).fit(X, y, expert_scores=scores)
    weights = softmax_gate_weights(gate, ("a", "b", "c"))
    assert weights.k == (3 if k is None else k)
    np.testing.assert_allclose(gate_forward(weights, X), gate.predict_proba(X), rtol=1e-12, atol=1e-12)


def test_calibration_knots_reproduce_the_isotonic_map() -> None:
    rng = np.random.default_rng(4)
    scores = rng.uniform(-1, 1, 2000)
    moves = scores + rng.normal(scale=0.8, size=2000)
    calibrator = ConfidenceCalibrator().fit(scores, moves)
    knots = calibration_knots(calibrator)
    probe = np.linspace(-1.2, 1.2, 301)
    np.testing.assert_allclose(np.interp(np.abs(probe), knots.x, knots.y), calibrator.predict(probe), atol=1e-12)


def test_calibration_without_isotonic_map_is_the_hit_rate() -> None:
    calibrator = ConfidenceCalibrator(min_rows=100).fit(np.array([0.5, -0.5, 0.2]), np.array([1.0, 1.0, 1.0]))
    knots = calibration_knots(calibrator)
    assert np.interp([0.0, 0.9], knots.x, knots.y).tolist() == pytest.approx([2 / 3, 2 / 3])


def test_meta_combiner_round_trips(copy: Path) -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(400, 4))
    y = np.digitize(features[:, 0] + rng.normal(scale=0.5, size=400), [-0.5, 0.5])
    meta = MetaModelCombiner().fit(features, y)
    names = ("score_trend", "score_levels", "gate_trend", "p_up")
    bundle = ServingBundle.load(copy)
    with_meta = ServingBundle(**{**bundle.__dict__, "combiner": CombinerSettings(
        "meta", 0.1, -0.1, meta=meta_arrays(meta.weights_, names))})
    loaded = ServingBundle.load(with_meta.save(copy))
    assert loaded.combiner.kind == "meta" and loaded.combiner.meta is not None
    assert loaded.combiner.meta.features == names
    np.testing.assert_array_equal(loaded.combiner.meta.coef, meta.weights_.coef)
    assert json.loads((copy / "bundle.json").read_text())["combiner"]["file"] == "meta.npz"


def test_missing_folder_and_files_name_what_is_missing(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a folder"):
        ServingBundle.load(tmp_path / "nowhere")
    (copy / "gate.npz").unlink()
    with pytest.raises(BundleError, match=r"gate\.npz: file missing"):
        ServingBundle.load(copy)
    with pytest.raises(BundleError, match="CURRENT: file missing"):
        read_current(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("min_bars"), "field 'min_bars' is missing"),
        (lambda d: d.update(min_bars="300"), "field 'min_bars' is '300'; expected an integer"),
        (lambda d: d["combiner"].update(kind="vote"), "combiner.kind"),
        (lambda d: d["risk"].update(allow_short="no"), "field 'risk.allow_short'"),
        (lambda d: d.update(experts=["trend", "levels"]), "gate.npz names experts"),
        (lambda d: d["gate"].update(features=["vol30"]), "gate.features"),
        (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
        (lambda d: d["expert_outputs"].pop("levels"), "expert_outputs"),
        (lambda d: d.update(withheld=["GOOG"]), "field 'withheld' is"),
        (lambda d: d.update(withheld={"GOOG": ""}), "field 'withheld.GOOG'"),
        (lambda d: d.update(withheld={"AAPL": "failed confidence_ece 0.2 (needs <= 0.1)"}),
         "field 'withheld' names 'AAPL', which is not in field 'symbols'"),
    ],
)
def test_malformed_bundle_json_names_the_field(copy: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((copy / "bundle.json").read_text())
    edit(doc)
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        ServingBundle.load(copy)


def test_withheld_symbols_round_trip_and_older_bundles_have_none(copy: Path, tmp_path: Path) -> None:
    doc = json.loads((copy / "bundle.json").read_text())
    assert doc["withheld"] == {}
    doc.pop("withheld")  # a bundle written before the quality gate judged each symbol
    (copy / "bundle.json").write_text(json.dumps(doc))
    older = ServingBundle.load(copy)
    assert older.withheld == {} and older.served_symbols == older.symbols == ("GOOG",)
    reason = "failed moe_sharpe_vs_buy_and_hold -6.3 (needs >= -0.5)"
    doc["withheld"] = {"GOOG": reason}
    (copy / "bundle.json").write_text(json.dumps(doc))
    withheld = ServingBundle.load(copy)
    assert withheld.withheld == {"GOOG": reason} and withheld.served_symbols == ()
    again = ServingBundle.load(withheld.save(tmp_path / "again"))
    assert again.withheld == {"GOOG": reason} and again.to_json() == withheld.to_json()


def test_corrupt_files_are_reported(copy: Path) -> None:
    (copy / "calibration.json").write_text('{"x": [0, 1], "y": [0.5]}')
    with pytest.raises(BundleError, match="same non-zero length"):
        ServingBundle.load(copy)
    (copy / "calibration.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        ServingBundle.load(copy)
    (copy / "gate.npz").write_bytes(b"garbage")
    with pytest.raises(BundleError, match=r"gate\.npz"):
        ServingBundle.load(copy)


def test_expert_answers_for_the_last_bar(bundle_dir: Path) -> None:
    experts = load_experts(bundle_dir / "experts")
    rows = request_bars(TRAIN_BARS + 200)
    frame = market_frame(bars_frame(rows))
    trend = answer("trend", experts["trend"], bars_frame(rows))
    assert set(trend) == {"p_down", "p_neutral", "p_up"}
    assert sum(trend.values()) == pytest.approx(1.0)
    full = experts["trend"].predict_proba(frame)[-1]
    assert [trend["p_down"], trend["p_neutral"], trend["p_up"]] == pytest.approx(full.tolist())
    levels = answer("levels", experts["levels"], bars_frame(rows), frame=frame)
    close = rows[-1]["close"]
    assert levels["support"] <= close <= levels["resistance"]  # type: ignore[operator]
    vol = answer("volatility", experts["volatility"], bars_frame(rows), history=252, frame=frame)
    assert len(vol["vol_history"]) == 252 and vol["vol_history"][-1] == vol["vol_forecast"]
    assert 0.001 < vol["vol_forecast"] < 0.2


def test_expert_answer_uses_only_past_bars(bundle_dir: Path) -> None:
    experts = load_experts(bundle_dir / "experts")
    end = TRAIN_BARS + 300
    short = answer("volatility", experts["volatility"], bars_frame(request_bars(end, 400)))
    longer = bars_frame(request_bars(end + 5, 405)).iloc[:-5]
    assert answer("volatility", experts["volatility"], longer) == short
    assert len(goog_series()) > end


def test_unknown_kind_is_rejected(bundle_dir: Path) -> None:
    with pytest.raises(ValueError, match="expert kind 'sentiment' is unknown"):
        answer("sentiment", object(), bars_frame(request_bars(TRAIN_BARS + 10)))
