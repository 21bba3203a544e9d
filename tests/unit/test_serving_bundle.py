"""The model bundle: save/load round trip, exports that match the fitted parts, clear errors for bad bundles."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from signal_engine.features import FINGERPRINT_NAMES, feature_frame
from signal_engine.moe.confidence import ConfidenceCalibrator
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.meta import MetaModelCombiner
from signal_engine.moe.numpy_gate import gate_forward, rule_gate_forward
from signal_engine.moe.rule_gate import FingerprintRuleGate
from signal_engine.registry import load_experts
from signal_engine.serving.bundle import (
    BundleError,
    CombinerSettings,
    GateSpec,
    ServingBundle,
    read_current,
)
from signal_engine.serving.experts import answer, bars_frame, market_frame
from signal_engine.serving.export import calibration_knots, meta_arrays, rule_gate_params, softmax_gate_weights
from tests.serving_support import TRAIN_BARS, goog_registry, goog_series, request_bars
from tests.unit.test_moe_gates import varied_fingerprints


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
    assert bundle.gate.weights is not None and again.gate.weights is not None
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
def test_malformed_bundle_json_names_the_field(copy: Path, edit, message: str) -> None:
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
    assert levels["support"] <= close <= levels["resistance"]
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


def fitted_rule_gate(k: int = 2) -> FingerprintRuleGate:
    """The rule gate fitted on GOOG's training bars (its vol30 threshold is learned there)."""
    bars = goog_series().bars.iloc[:TRAIN_BARS]
    return FingerprintRuleGate(k=k).fit(feature_frame(bars).loc[:, list(FINGERPRINT_NAMES)].to_numpy(float))


@pytest.fixture()
def rule_copy(copy: Path) -> Path:
    """The GOOG bundle with the fitted rule gate instead of the softmax gate, saved without gate.npz."""
    bundle = ServingBundle.load(copy)
    params = rule_gate_params(fitted_rule_gate(), bundle.experts)
    (copy / "gate.npz").unlink()
    ServingBundle(**{**bundle.__dict__, "gate": GateSpec("rule", None, FINGERPRINT_NAMES, params)}).save(copy)
    return copy


def test_a_rule_gate_round_trips_in_bundle_json_without_gate_npz(rule_copy: Path, tmp_path: Path) -> None:
    gate = fitted_rule_gate()
    bundle = ServingBundle.load(rule_copy)
    assert not (rule_copy / "gate.npz").exists()
    assert bundle.gate.kind == "rule" and bundle.gate.weights is None and bundle.gate.rule == gate.rule_params()
    assert bundle.gate.k == 2 and bundle.gate.experts == ("trend", "levels", "volatility")
    doc = json.loads((rule_copy / "bundle.json").read_text())
    assert doc["gate"] == {"kind": "rule", "file": None, "features": list(FINGERPRINT_NAMES), "rule": {
        "experts": ["trend", "levels", "volatility"], "k": 2, "boost": 2.0, "trend_r2_min": 0.6,
        "persistent_hurst": 0.55, "reverting_hurst": 0.45, "range_r2_max": 0.3, "vol_threshold": gate.vol_threshold_}}
    again = ServingBundle.load(bundle.save(tmp_path / "again"))
    assert again.to_json() == bundle.to_json() and not (tmp_path / "again" / "gate.npz").exists()
    with pytest.raises(BundleError, match=re.escape("gate.kind is 'rule', which has no NumPy weights")):
        _ = bundle.gate_weights
    prints = varied_fingerprints()
    np.testing.assert_allclose(rule_gate_forward(prints, again.gate.features, again.gate.rule),  # type: ignore[arg-type]
                               gate.predict_proba(prints), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["rule"].pop("vol_threshold"), "field 'gate.rule.vol_threshold' is missing; expected a number"),
        (lambda g: g["rule"].update(vol_threshold="high"), "field 'gate.rule.vol_threshold' is 'high'"),
        (lambda g: g["rule"].pop("boost"), "field 'gate.rule.boost' is missing"),
        (lambda g: g["rule"].update(boost=-1.5), "field 'gate.rule.boost' is -1.5; expected a number > -1"),
        (lambda g: g["rule"].update(k=4), r"field 'gate.rule.k' is 4; expected 1 <= k <= 3"),
        (lambda g: g["rule"].update(k=0), r"field 'gate.rule.k' is 0"),
        (lambda g: g["rule"].update(k=2.0), "field 'gate.rule.k' is 2.0; expected an integer"),
        (lambda g: g["rule"].update(experts=["levels", "trend", "volatility"]), "field 'gate.rule.experts'"),
        (lambda g: g["rule"].pop("experts"), "field 'gate.rule.experts' is missing"),
        (lambda g: g.pop("rule"), "field 'gate.rule' is missing; expected an object"),
        (lambda g: g.update(rule=[2.0]), "field 'gate.rule' is \\[2.0\\]; expected an object"),
        (lambda g: g.update(file="gate.npz"), "field 'gate.file' is 'gate.npz'; expected null"),
        (lambda g: g.update(features=["vol30", "spread"]), r"without \['trend_r2', 'hurst'\]"),
        (lambda g: g.update(kind="rules"), "field 'gate.kind' is 'rules'"),
    ],
)
def test_a_malformed_rule_gate_names_the_field(rule_copy: Path, edit, message: str) -> None:
    doc = json.loads((rule_copy / "bundle.json").read_text())
    edit(doc["gate"])
    (rule_copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        ServingBundle.load(rule_copy)


def test_rule_gate_experts_must_be_the_bundle_experts(rule_copy: Path, copy: Path) -> None:
    bundle = ServingBundle.load(rule_copy)
    with pytest.raises(BundleError, match=r"field 'gate.rule.experts' is \['trend', 'levels', 'volatility'\] but "
                                          r"field 'experts' is \['trend', 'levels'\]"):
        ServingBundle(**{**bundle.__dict__, "experts": ("trend", "levels")})
    with pytest.raises(BundleError, match=re.escape("gate.kind 'rule' needs field 'gate.rule'")):
        ServingBundle(**{**bundle.__dict__, "gate": GateSpec("rule", None, FINGERPRINT_NAMES)})
    with pytest.raises(BundleError, match=re.escape("gate.kind 'softmax' needs its NumPy weights")):
        ServingBundle(**{**bundle.__dict__,
                         "gate": GateSpec("softmax", None, FINGERPRINT_NAMES, bundle.gate.rule)})


def test_a_softmax_gate_with_rule_parameters_is_refused(copy: Path) -> None:
    doc = json.loads((copy / "bundle.json").read_text())
    doc["gate"]["rule"] = {"k": 3}
    (copy / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=re.escape("field 'gate.rule' is {'k': 3}; expected null or absent")):
        ServingBundle.load(copy)


def test_rule_gate_export_clamps_k_and_refuses_what_a_bundle_cannot_carry() -> None:
    experts = ("trend", "levels", "volatility")
    assert rule_gate_params(fitted_rule_gate(k=5), experts).k == 3
    assert rule_gate_params(fitted_rule_gate(k=1), experts).k == 1
    with pytest.raises(ValueError, match="in that order"):
        rule_gate_params(fitted_rule_gate(), ("levels", "trend", "volatility"))
    no_vol = FingerprintRuleGate().fit(np.full((5, len(FINGERPRINT_NAMES)), np.nan))
    with pytest.raises(ValueError, match="no training row had a finite vol30"):
        rule_gate_params(no_vol, experts)


class FolderStore:
    """An ObjectStore fake over one folder's files (the S3 prefix of a bundle version)."""

    def __init__(self, folder: Path) -> None:
        self.files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        self.asked: list[str] = []

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.files[key] = data

    def get(self, key: str) -> bytes:
        self.asked.append(key)
        return self.files[key]

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in self.files if k.startswith(prefix)))


def test_a_rule_gate_bundle_is_fetched_from_s3_without_gate_npz(rule_copy: Path, tmp_path: Path) -> None:
    from signal_engine.serving.bundle_source import fetch_bundle

    store = FolderStore(rule_copy)
    assert "gate.npz" not in store.files
    folder = fetch_bundle("s3://artifacts/models/v1", lambda bucket, prefix: store, tmp_path / "cache")
    assert "gate.npz" not in store.asked and sorted(p.name for p in folder.iterdir()) == ["bundle.json",
                                                                                         "calibration.json"]
    assert ServingBundle.load(folder).to_json() == ServingBundle.load(rule_copy).to_json()
