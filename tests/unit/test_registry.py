"""The expert registry: the YAML catalogue, building by name, and save/load of an artefact folder."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.errors import ConfigError
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.experts.volatility_combination import variance_forecast
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels
from signal_engine.registry import (
    MANIFEST,
    build,
    load_catalogue,
    load_experts,
    pack_artefact,
    resolve_class,
    save_experts,
)

FIT_AT = 700
CLASSICAL = ["trend_lightgbm", "trend_linear", "vol_gjr_t", "vol_egarch_t", "vol_har", "vol_boosted", "vol_combination",
             "levels_swing", "levels_cluster", "levels_regression", "levels_camarilla", "baseline_garch11",
             "baseline_ewma", "baseline_pivot"]


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    bars = load_prices(goog_csv).bars.iloc[:900]
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    known_h = np.arange(900) + 5 <= FIT_AT
    future = np.column_stack((labels.future_low, labels.future_high))
    future[~known_h] = np.nan
    targets = {
        "trend": np.where(known_h & (labels.trend >= 0), labels.trend, -1),
        "volatility": np.where(np.arange(900) + 1 <= FIT_AT, labels.next_variance, np.nan),
        "levels": future,
    }
    return frame, targets


def _outputs(expert: object, kind: str, frame: pd.DataFrame) -> np.ndarray:
    if kind == "trend":
        return np.asarray(expert.predict_proba(frame))  # type: ignore[attr-defined]
    if kind == "volatility":
        return variance_forecast(expert, frame)
    return np.asarray(expert.predict(frame))  # type: ignore[attr-defined]


def test_every_catalogue_entry_builds_with_the_scikit_learn_contract() -> None:
    catalogue = load_catalogue()
    assert {"trend", "volatility", "levels"} == {spec.kind for spec in catalogue.values()}
    for name, spec in catalogue.items():
        expert = build(name, catalogue)
        assert type(expert).__name__ == spec.cls.rsplit(".", 1)[1]
        params = expert.get_params(deep=False)
        assert not any(key.endswith("_") for key in params)
        assert spec.baseline is None or spec.baseline in catalogue or spec.baseline == "baseline_majority"
    combination = build("vol_combination", catalogue)
    assert [name for name, _ in combination.members] == catalogue["vol_combination"].kwargs["members"]
    assert build("trend_lightgbm", catalogue, n_estimators=5).n_estimators == 5


def test_bad_catalogue_entries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown expert"):
        build("trend_oracle")
    with pytest.raises(ConfigError, match="outside signal_engine"):
        resolve_class("os.system")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experts:\n  x: {kind: trend, class: signal_engine.experts.trend.GradientBoostedTrendExpert, "
                   "kwargs: {leaves: 3}}\n")
    with pytest.raises(ConfigError, match="'x'"):
        build("x", load_catalogue(bad))
    bad.write_text("experts:\n  x: {kind: mood, class: signal_engine.experts.pivots.PivotLevels}\n")
    with pytest.raises(ConfigError, match="kind"):
        load_catalogue(bad)


def test_save_load_round_trips_give_identical_predictions(
    goog: tuple[pd.DataFrame, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    frame, targets = goog
    catalogue = load_catalogue()
    names = list(CLASSICAL)
    if tensorflow_available():
        names.append("trend_transformer")
    small = {"trend_transformer": {"epochs": 1, "max_train_rows": 300, "window": 16},
             "trend_lightgbm": {"n_estimators": 20}, "levels_regression": {"n_estimators": 20}}
    fitted = {}
    for name in names:
        kind = catalogue[name].kind
        fitted[name] = build(name, catalogue, **small.get(name, {})).fit(frame.iloc[: FIT_AT + 1],
                                                                         targets[kind][: FIT_AT + 1])
    before = {name: _outputs(model, catalogue[name].kind, frame) for name, model in fitted.items()}
    folder = save_experts(fitted, tmp_path / "artefact", catalogue)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["experts"]) == set(names)
    assert manifest["experts"]["vol_combination"]["kwargs"]["members"] == catalogue["vol_combination"].kwargs["members"]
    loaded = load_experts(folder)
    for name, model in loaded.items():
        assert _outputs(model, catalogue[name].kind, frame).tobytes() == before[name].tobytes(), name


def test_tampered_artefact_is_refused_and_packing_is_reproducible(tmp_path: Path) -> None:
    frame = pd.DataFrame({"high": [2.0, 3.0], "low": [1.0, 1.5], "close": [1.5, 2.5]})
    folder = save_experts({"baseline_pivot": build("baseline_pivot").fit(frame)}, tmp_path / "a")
    first = pack_artefact(folder, tmp_path / "one.tar.gz").read_bytes()
    assert pack_artefact(folder, tmp_path / "two.tar.gz").read_bytes() == first
    with tarfile.open(tmp_path / "one.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["experts/baseline_pivot/model.pkl", MANIFEST]
    model_file = folder / "experts" / "baseline_pivot" / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="checksum"):
        load_experts(folder)
    with pytest.raises(ConfigError, match="no expert"):
        load_experts(folder, ["trend_lstm"])
