"""The pooled-expert study's arithmetic by hand: log loss, balanced accuracy, the decision, the refit cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.pooled_study import (
    EXPERTS,
    STATS,
    _read_block,
    _write_block,
    balanced_accuracy_terms,
    decide,
    log_losses,
    markdown,
    scored_bars,
    summarise,
)
from signal_engine.evaluation.pooled_walkforward import PooledBlock, panel_series


def test_balanced_accuracy_terms_average_to_the_mean_recall() -> None:
    labels = np.array([0, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 1, 0]]
    # recalls: down 1/2, neutral 1/1, up 0/1 -> 0.5; right rows weigh 4 / (3 x 2) and 4 / (3 x 1)
    np.testing.assert_allclose(balanced_accuracy_terms(labels, proba), [2 / 3, 0.0, 4 / 3, 0.0])
    assert balanced_accuracy_terms(labels, proba).mean() == pytest.approx(0.5)


def test_log_losses_floor_and_renormalise() -> None:
    proba = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    losses = log_losses(np.array([1, 2]), proba)
    np.testing.assert_allclose(losses, [np.log(4.0), 2e-12], rtol=1e-9, atol=1e-15)


def test_scored_bars_keep_the_test_span_where_every_forecast_and_label_exist() -> None:
    index = pd.bdate_range("2020-01-01", periods=6)
    series = panel_series("S", pd.DataFrame({"close": np.ones(6)}, index=index), np.array([0, 1, 2, 2, 1, -1]),
                          np.arange(6) + 1)
    full = np.tile([0.2, 0.3, 0.5], (6, 1))
    gappy = full.copy()
    gappy[3] = np.nan
    table = scored_bars(series, {"a": full, "b": gappy}, test_start=2)
    # bars 2 and 4: bar 3 lacks b's forecast, bar 5 its label
    assert list(table.index) == [index[2], index[4]]
    np.testing.assert_allclose(table[("log_loss", "a")], [-np.log(0.5), -np.log(0.3)])


def _terms(shift: float, n: int = 60, lstm_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    base = 1.0 + rng.normal(0.0, 0.01, n)
    columns = {("log_loss", "prior"): base, ("log_loss", "lightgbm"): base - 0.01,
               ("log_loss", "pooled"): base - 0.01 - shift, ("log_loss", "lstm"): base - 0.01 - lstm_shift,
               ("log_loss", "archetypes"): base}
    columns.update({("balanced_accuracy", e): np.full(n, 0.4) for e in EXPERTS})
    return pd.DataFrame(columns, index=pd.bdate_range("2020-01-01", periods=n))


@pytest.mark.parametrize(("shift", "decision"), [(0.05, "pooled qualifies"), (-0.05, "LightGBM stays"),
                                                 (0.0, "LightGBM stays")])
def test_the_pooled_expert_qualifies_only_below_lightgbm_with_its_whole_interval(shift: float, decision: str) -> None:
    document = summarise({"A": _terms(shift), "B": _terms(shift)}, reps=200)
    assert document["decision"] == decision
    assert document["pooled"]["log_loss"]["pooled"] == pytest.approx(document["pooled"]["log_loss"]["lightgbm"] - shift)
    assert f"decision by the declared rule: {decision}" in markdown(document)


def test_each_network_is_judged_against_lightgbm_by_the_same_rule() -> None:
    document = summarise({"A": _terms(0.0, lstm_shift=0.05), "B": _terms(0.0, lstm_shift=0.05)}, reps=200)
    # the LSTM is 0.05 below LightGBM on every bar; the per-archetype network 0.01 above it; the kernel bank level
    assert document["decisions"] == {"pooled": "LightGBM stays", "lstm": "lstm qualifies",
                                     "archetypes": "LightGBM stays"}
    assert document["pooled"]["differences"]["log_loss"]["archetypes-lightgbm"]["difference"] == pytest.approx(0.01)
    assert document["pooled"]["wins_log_loss"] == {"pooled": 0, "lstm": 2, "archetypes": 0}
    text = markdown(document)
    assert "decision by the declared rule for LSTM: lstm qualifies" in text
    assert "series where LSTM's log loss beats LightGBM's: 2/2" in text


def test_decide_reads_the_upper_end_of_the_interval() -> None:
    assert decide({"differences": {"log_loss": {"pooled-lightgbm": {"high": -1e-9}}}}) == "pooled qualifies"
    assert decide({"differences": {"log_loss": {"pooled-lightgbm": {"high": 0.0}}}}) == "LightGBM stays"
    assert decide({"differences": {"log_loss": {"lstm-lightgbm": {"high": -1e-9}}}}, "lstm") == "lstm qualifies"


def test_a_refit_round_trips_through_the_cache(tmp_path: Path) -> None:
    block = PooledBlock(pd.Timestamp("2020-01-02"), {"A": 5, "B": 3}, {"A": (5, 7)})
    predictions = {e: {"A": np.full((2, 3), k / 10.0)} for k, e in enumerate(EXPERTS)}
    stats = {name: k / 4.0 for k, name in enumerate(STATS)}
    assert len(STATS) == 3 * 6 + 1 and "lstm_samples_seen" in STATS and "archetypes_fit_seconds" in STATS
    _write_block(tmp_path / "block.npz", predictions, stats)
    read, read_stats = _read_block(tmp_path / "block.npz", block)
    assert read_stats == stats
    assert all(np.array_equal(read[e]["A"], predictions[e]["A"]) for e in EXPERTS)
