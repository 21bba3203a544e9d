"""No look-ahead at every refit: the exact rows each expert is fitted on, not only ``known_by`` itself.

At a refit at bar ``r`` (``fit_at``), a label decided at bar i is known once bar i + H has closed (H: the label's
horizon; 1 for the next-bar variance). With an embargo of E bars, the newest row a model may learn from is
``r - H - E``. The experts are wrapped so that every ``fit`` records which bars it was given a label for; any call
site that selects rows by the wrong ``known_at`` (or forgets the embargo) fails here, for each label kind and for
the horizons the timeframe models use.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine import components
from signal_engine.config import load_config
from signal_engine.data import load_prices
from signal_engine.evaluation import backtest
from signal_engine.experts.har import HarVolatility
from signal_engine.experts.levels import SwingLevelsExpert
from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.experts.volatility import VolatilityExpert

pytestmark = pytest.mark.slow

SMALL = """walk_forward:
  initial_window: 300
  validation_bars: 150
  refit_every: 150
  min_test_bars: 100
trend:
  n_estimators: 20
suite:
  enabled: false
"""
BARS = 900


@pytest.fixture(scope="module")
def goog_head(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = goog_csv.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("rows") / "GOOG.csv"
    path.write_text("".join(lines[: BARS + 1]))
    return path


def _recorded_fits(monkeypatch: pytest.MonkeyPatch, index: pd.DatetimeIndex) -> dict[str, list[np.ndarray]]:
    """Wrap each MoE expert's ``fit`` so it records the bar positions that carry a label."""
    calls: dict[str, list[np.ndarray]] = {"trend": [], "volatility": [], "levels": [], "vol_har": []}

    def labelled_rows(frame: pd.DataFrame, labels: Any) -> np.ndarray:
        rows = index.get_indexer(frame.index)
        assert (rows >= 0).all()
        target = np.asarray(labels, dtype=float)
        known = np.isfinite(target) if target.ndim == 1 else np.isfinite(target).all(axis=1)
        return np.asarray(rows[known])

    for name, cls in (("trend", GradientBoostedTrendExpert), ("volatility", VolatilityExpert),
                      ("levels", SwingLevelsExpert), ("vol_har", HarVolatility)):
        original = cls.fit

        def fit(self: Any, X: pd.DataFrame, y: Any, *args: Any, _original: Any = original, _name: str = name,
                **kwargs: Any) -> Any:
            calls[_name].append(labelled_rows(X, y))
            return _original(self, X, y, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)
    return calls


def _small_config(tmp_path: Path, horizon: int, embargo: int) -> Any:
    """The file's small config with labels of ``horizon`` bars and an embargo of ``embargo`` bars."""
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    config = load_config("quick", config_path)
    return replace(config, labels=replace(config.labels, horizon=horizon),
                   walk_forward=replace(config.walk_forward, embargo=embargo))


@pytest.mark.parametrize(("horizon", "embargo"), [(5, 0), (5, 3), (20, 2), (1, 0)])
def test_every_refit_learns_exactly_up_to_the_last_known_label(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, horizon: int, embargo: int
) -> None:
    config = _small_config(tmp_path, horizon, embargo)
    series = load_prices(goog_head)
    blocks = list(backtest.schedule(len(series), config.walk_forward))
    calls = _recorded_fits(monkeypatch, pd.DatetimeIndex(series.bars.index))

    backtest.run_symbol(series, config)

    fit_at = [block.fit_at for block in blocks]
    assert len(fit_at) >= 3
    for kind, newest in (("trend", [r - horizon - embargo for r in fit_at]),
                         ("levels", [r - horizon - embargo for r in fit_at]),
                         ("volatility", [r - 1 - embargo for r in fit_at])):
        recorded = calls[kind]
        assert len(recorded) == len(fit_at), f"{kind}: one fit per refit"
        for r, rows, expected in zip(fit_at, recorded, newest, strict=True):
            assert rows.max() == expected, (
                f"{kind} fitted at bar {r} learned from bar {rows.max()}; the newest label known with horizon "
                f"{horizon} and embargo {embargo} is bar {expected}")


def _record_second_level(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what the gate, the meta-model combiner, the confidence calibrator and the multi-stage engine are
    fitted on (their arguments are plain arrays: the test compares them with the walk-forward's own arrays at the
    expected rows), and the run's labels and out-of-sample arrays."""
    seen: dict[str, Any] = {"gate": [], "meta": [], "meta_decides": [], "calibrator": [], "refiner": [],
                            "stages": [], "refined": [], "decided": [], "engine": []}
    make_labels, out_of_sample = backtest.make_labels, backtest._OutOfSample

    def labels(*args: Any, **kwargs: Any) -> Any:
        seen["labels"] = make_labels(*args, **kwargs)
        return seen["labels"]

    class Recorded(out_of_sample):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            seen["out"] = self

    gate_factory, fit_meta, gated_score = components.gate, components.fit_meta_combiner, backtest._gated_score

    def gate(config: Any) -> Any:
        model = gate_factory(config)
        fit = model.fit

        def recorded(X: np.ndarray, y: np.ndarray, **kwargs: Any) -> Any:
            seen["gate"].append(np.array(y, dtype=float))
            return fit(X, y, **kwargs)

        model.fit = recorded
        return model

    def meta(config: Any, scores: np.ndarray, gate_weights: np.ndarray, trend: np.ndarray) -> Any:
        model = fit_meta(config, scores, gate_weights, trend)
        seen["meta"].append((np.array(scores), np.array(gate_weights), np.array(trend), model))
        return model

    def decides(rows: slice, out: Any, meta_arrays: Any) -> np.ndarray:
        seen["meta_decides"].append(meta_arrays)
        return gated_score(rows, out, meta_arrays)

    class Calibrator(backtest.ConfidenceCalibrator):
        def fit(self, scores: np.ndarray, forward_returns: np.ndarray) -> Any:
            seen["calibrator"].append((np.array(scores), np.array(forward_returns)))
            return super().fit(scores, forward_returns)

    class Refiner(backtest.SequenceRefiner):
        def fit(self, windows: np.ndarray, fast_proba: np.ndarray, y: np.ndarray) -> Any:
            seen["refiner"].append((np.array(fast_proba), np.array(y)))
            return super().fit(windows, fast_proba, y)

        def predict_proba(self, windows: np.ndarray, fast_proba: np.ndarray) -> np.ndarray:
            proba = super().predict_proba(windows, fast_proba)
            seen["refined"].append((np.array(fast_proba), np.array(proba)))
            return proba

    class Engine(backtest.MultiStageEngine):
        def fit(self, inputs: Any, y: np.ndarray) -> Any:
            seen["stages"].append((np.array(inputs.rsi), np.array(y)))
            seen["engine"].append((self.random_state, self.min_lift))
            return super().fit(inputs, y)

        def decide(self, inputs: Any) -> Any:
            decisions = super().decide(inputs)
            seen["decided"].append((inputs, decisions))
            return decisions

    monkeypatch.setattr(backtest, "make_labels", labels)
    monkeypatch.setattr(backtest, "_OutOfSample", Recorded)
    monkeypatch.setattr(components, "gate", gate)
    monkeypatch.setattr(components, "fit_meta_combiner", meta)
    monkeypatch.setattr(backtest, "_gated_score", decides)
    monkeypatch.setattr(backtest, "ConfidenceCalibrator", Calibrator)
    monkeypatch.setattr(backtest, "SequenceRefiner", Refiner)
    monkeypatch.setattr(backtest, "MultiStageEngine", Engine)
    return seen


@pytest.mark.parametrize(("horizon", "embargo"), [(5, 0), (20, 2), (1, 0)])
def test_the_gate_combiner_calibrator_and_stages_learn_exactly_the_rows_known_at_each_refit(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, horizon: int, embargo: int
) -> None:
    """The second-level models learn from the experts' earlier out-of-sample rows: at a refit at bar r, exactly
    the rows first .. r - H - E (less rows without a label), for every call site that selects them."""
    config = _small_config(tmp_path, horizon, embargo)
    assert config.moe.enabled and config.moe.combiner == "meta" and config.moe.multistage
    series = load_prices(goog_head)
    fit_at = [block.fit_at for block in backtest.schedule(len(series), config.walk_forward)]
    seen = _record_second_level(monkeypatch)

    result = backtest.run_symbol(series, config)

    labels, out, first = seen["labels"], seen["out"], config.walk_forward.initial_window
    rsi = backtest.series_frame(series)["rsi_14"].to_numpy(dtype=float)
    for kind in ("gate", "meta", "calibrator", "refiner", "stages"):
        assert len(seen[kind]) == len(fit_at), f"{kind}: one fit per refit"
    learned_something = 0
    for i, r in enumerate(fit_at):
        known = np.arange(first, r - horizon - embargo + 1)  # newest row: r - H - E
        learned_something += len(known) > 0
        labelled = known[labels.trend[known] >= 0]
        finite_z = known[np.isfinite(labels.forward_z[known])]
        np.testing.assert_array_equal(seen["gate"][i], labels.forward_z[finite_z], err_msg=f"gate at bar {r}")
        scores, gate_weights, trend, _ = seen["meta"][i]
        np.testing.assert_array_equal(scores, out.scores[known], err_msg=f"meta-model combiner at bar {r}")
        np.testing.assert_array_equal(gate_weights, out.gate[known], err_msg=f"meta-model combiner at bar {r}")
        np.testing.assert_array_equal(trend, labels.trend[known], err_msg=f"meta-model combiner at bar {r}")
        combined, moves = seen["calibrator"][i]
        np.testing.assert_array_equal(combined, out.combined[known], err_msg=f"calibrator at bar {r}")
        np.testing.assert_array_equal(moves, labels.forward_return[known], err_msg=f"calibrator at bar {r}")
        for kind, values in (("refiner", out.trend_proba[labelled]), ("stages", rsi[labelled])):
            given, y = seen[kind][i]
            np.testing.assert_array_equal(given, values, err_msg=f"{kind} at bar {r}")
            np.testing.assert_array_equal(y, labels.trend[labelled], err_msg=f"{kind} at bar {r}")
    assert learned_something >= 2
    _check_meta_models(seen, labels.trend, first, fit_at, horizon + embargo, config.gate.min_rows,
                       result.diagnostics["moe"])


def _check_meta_models(seen: dict[str, Any], trend: np.ndarray, first: int, fit_at: list[int], lag: int,
                       min_rows: int, moe: dict[str, Any]) -> None:
    """Each block decides with the meta-model fitted at its refit on every known row with a label (rows first ..
    r - H - E; their count is the reported ``meta_training_rows``), or with the weighted score when fewer than
    ``gate.min_rows`` are known (0 rows reported)."""
    names = ("score_trend", "score_levels", "score_volatility", "gate_trend", "gate_levels", "gate_volatility")
    expected_rows = []
    for r, (_, _, _, model), arrays in zip(fit_at, seen["meta"], seen["meta_decides"], strict=True):
        labelled = int((trend[first : r - lag + 1] >= 0).sum())
        expected_rows.append(labelled if labelled >= min_rows else 0)
        if labelled < min_rows:
            assert model is None and arrays is None, f"meta-model at bar {r} with {labelled} rows"
            continue
        weights = model.weights_
        assert arrays.features == weights.features == names, f"meta-model at bar {r}"
        for field in ("mean", "scale", "coef", "intercept", "classes"):
            np.testing.assert_array_equal(getattr(arrays, field), getattr(weights, field), err_msg=f"{field}, bar {r}")
    assert moe["meta_training_rows"] == expected_rows
    assert 0 in expected_rows and max(expected_rows) > 0


@pytest.mark.parametrize(("horizon", "embargo"), [(5, 0)])
def test_each_refit_decides_only_its_own_block_with_the_models_it_just_fitted(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, horizon: int, embargo: int
) -> None:
    """The stage models fitted at a refit predict exactly the bars of its block (start .. stop - 1), no earlier
    bar (which an older refit decided out of sample) and no later one, and their answers are what the run keeps;
    the engine is built with the run's seed and a lift of 0."""
    config = _small_config(tmp_path, horizon, embargo)
    series = load_prices(goog_head)
    blocks = list(backtest.schedule(len(series), config.walk_forward))
    seen = _record_second_level(monkeypatch)

    backtest.run_symbol(series, config)

    out = seen["out"]
    rsi = backtest.series_frame(series)["rsi_14"].to_numpy(dtype=float)
    assert len(seen["refined"]) == len(seen["decided"]) == len(blocks) >= 3
    assert seen["engine"] == [(7, 0.0)] * len(blocks)
    for block, (fast, refined), (inputs, decisions) in zip(blocks, seen["refined"], seen["decided"], strict=True):
        rows, where = slice(block.start, block.stop), f"block {block.start}..{block.stop}"
        assert len(fast) == block.stop - block.start, where
        np.testing.assert_array_equal(fast, out.trend_proba[rows], err_msg=where)
        np.testing.assert_array_equal(out.sequence_proba[rows], refined, err_msg=where)
        np.testing.assert_array_equal(inputs.rsi, rsi[rows], err_msg=where)
        np.testing.assert_array_equal(inputs.sequence_proba, refined, err_msg=where)
        np.testing.assert_array_equal(inputs.context, out.scores[rows], err_msg=where)
        np.testing.assert_array_equal(out.stage_direction[rows], decisions.direction, err_msg=where)
        np.testing.assert_array_equal(out.raw_direction[rows], decisions.raw_direction, err_msg=where)
        np.testing.assert_array_equal(out.stage_confidence[rows], decisions.confidence, err_msg=where)
        kept = np.column_stack((decisions.after_stage1, decisions.after_stage2, decisions.after_stage3))
        np.testing.assert_array_equal(out.stage_kept[rows], kept, err_msg=where)


def test_the_rule_combiner_calls_each_block_on_its_own_bars_and_shares_the_call_equally(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``moe.combiner: rule``: at each refit the rules read the block's own closes and expert outputs, the call is
    the block's combined score, and each of the three experts is credited a third of it."""
    config_path = tmp_path / "rule.yaml"
    config_path.write_text(SMALL + "moe:\n  combiner: rule\n  online:\n    meta_rate: 0\n")
    config = load_config("quick", config_path)
    series = load_prices(goog_head)
    blocks = list(backtest.schedule(len(series), config.walk_forward))
    seen = _record_second_level(monkeypatch)
    calls: list[tuple[Any, np.ndarray]] = []
    rule_factory = components.rule_combiner

    def rule(config: Any) -> Any:
        combiner = rule_factory(config)
        decide = combiner.decision_function

        def recorded(outputs: Any) -> np.ndarray:
            called = np.asarray(decide(outputs), dtype=float)
            calls.append((outputs, called))
            return called

        combiner.decision_function = recorded
        return combiner

    monkeypatch.setattr(components, "rule_combiner", rule)

    backtest.run_symbol(series, config)

    out, close = seen["out"], series.bars["close"].to_numpy(dtype=float)
    assert len(calls) == len(blocks) >= 3 and seen["meta"] == []
    for block, (outputs, called) in zip(blocks, calls, strict=True):
        rows, where = slice(block.start, block.stop), f"block {block.start}..{block.stop}"
        assert len(called) == block.stop - block.start, where
        support, resistance = out.levels[rows, 0], out.levels[rows, 1]
        for name, expected in (("p_up", out.trend_proba[rows, 2]), ("p_down", out.trend_proba[rows, 0]),
                               ("support_distance", (close[rows] - support) / close[rows]),
                               ("resistance_distance", (resistance - close[rows]) / close[rows]),
                               ("vol_forecast", out.vol_forecast[rows])):
            np.testing.assert_allclose(outputs[name], expected, rtol=1e-12, err_msg=f"{name}, {where}")
        np.testing.assert_array_equal(out.combined[rows], called, err_msg=where)
        np.testing.assert_array_equal(out.contributions[rows], np.column_stack([called / 3] * 3), err_msg=where)


def test_a_har_volatility_expert_learns_up_to_the_last_known_variance_and_every_decided_bar_has_forecasts(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``moe.experts.volatility: vol_har``: fitted at each refit r on next-bar variances up to bar r - 1 - E (next
    to the blend, which stays the baselines' model), and every bar the walk-forward decides has finite levels,
    pivots, variance forecasts of each model and a trend explanation."""
    embargo = 2
    config_path = tmp_path / "har.yaml"
    config_path.write_text(SMALL + "moe:\n  experts:\n    volatility: vol_har\n")
    config = load_config("quick", config_path)
    config = replace(config, walk_forward=replace(config.walk_forward, embargo=embargo))
    series = load_prices(goog_head)
    blocks = list(backtest.schedule(len(series), config.walk_forward))
    calls = _recorded_fits(monkeypatch, pd.DatetimeIndex(series.bars.index))
    seen = _record_second_level(monkeypatch)

    backtest.run_symbol(series, config)

    assert [rows.max() for rows in calls["vol_har"]] == [block.fit_at - 1 - embargo for block in blocks]
    assert [rows.max() for rows in calls["volatility"]] == [block.fit_at - 1 - embargo for block in blocks]
    out, decided = seen["out"], slice(blocks[0].start, blocks[-1].stop)
    for name, values in (("levels", out.levels), ("pivots", out.pivots), *out.variance.items()):
        assert np.isfinite(values[decided]).all(), name
    assert set(out.variance) >= {"vol_har", "volatility_blend", "baseline_garch11", "baseline_ewma"}
    assert all(isinstance(text, str) and text for text in out.top_features[decided])
