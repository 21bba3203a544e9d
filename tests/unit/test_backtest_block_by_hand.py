"""One walk-forward refit (``backtest._decide_block``) worked out by hand on 32 bars with stand-in models.

Every model the block fits is replaced by a stand-in whose answers are columns of a hand-built frame, so each
number the block stores can be written down: the expert scores, the gate's training rows and block weights, the
combined score, each expert's contribution, the confidence of the block, the refit diagnostics, which combiner
path decides the block (online learning, the single expert), and, with ``moe.online`` on, which realised rows the
online learner takes a step on before each bar is decided.

The schedule: ``initial_window`` 4, ``refit_every`` 14, labels of horizon H = 2 and an embargo of E = 1, so the
refits are at bars 4 (deciding 4 .. 17) and 18 (deciding 18 .. 31), and at a refit at bar r a label of bar i is
known when i + 2 <= r - 1, i.e. i <= r - 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine import components
from signal_engine.config import NEWS_COLUMN, RunConfig, apply_overrides, load_config
from signal_engine.evaluation import backtest
from signal_engine.evaluation.walkforward import Block
from signal_engine.labels import Labels
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.numpy_gate import gate_forward
from signal_engine.moe.online import OnlineLearner, OnlineRates, RealisedRow
from signal_engine.multistage import StageDecisions

N = 32
FIRST = 4
BLOCKS = (Block(fit_at=4, start=4, stop=18), Block(fit_at=18, start=18, stop=32))
LAG = 3  # H + E: a label of bar i is known at bar i + 3
ABSTAINS = 20  # the volatility forecast is missing at bar 20: the volatility expert abstains there
BAR = np.arange(N)
P_UP = np.full(N, 0.5)
P_DOWN = np.where(BAR % 2 == 0, 0.125, 0.375)
TREND_SCORE = np.where(BAR % 2 == 0, 0.375, 0.125)  # P(up) - P(down)
LEVELS_SCORE = 0.5  # close 100 between support 98 and resistance 106: 1 - 2 * (100 - 98) / 8
GATE = np.array([4.0, 2.0, 1.0]) / 7.0  # the stand-in gate's weights when every expert answers
GATE_ABSTAINING = np.array([2.0, 1.0, 0.0]) / 3.0  # ... and at the bar the volatility expert abstains
VARIANCE = 0.0004
FORWARD_Z = np.where(BAR == 9, np.nan, BAR * 0.1 - 1.0)  # bar 9's move is unknown: the gate skips it
TREND = np.where(BAR % 3 == 0, 2, np.where(BAR % 3 == 1, 0, 1))
TREND[0] = -1
TREND[N - 2 :] = -1  # the horizon runs past the data


def _config(**moe: Any) -> RunConfig:
    overrides = {"walk_forward": {"initial_window": FIRST, "validation_bars": 4, "refit_every": 14,
                                  "min_test_bars": 4, "embargo": 1},
                 "labels": {"horizon": 2}, "gate": {"min_rows": 4}, "moe": {"combiner": "weighted", **moe}}
    return apply_overrides(load_config("quick"), overrides, source="test")


def _frame() -> pd.DataFrame:
    variance = np.full(N, VARIANCE)
    variance[ABSTAINS] = np.nan
    return pd.DataFrame({
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "f": BAR.astype(float),
        "p_up": P_UP, "p_down": P_DOWN, "support": 98.0, "resistance": 106.0,
        "variance": variance, "har_variance": 0.0001 * (1 + BAR),
    }, index=pd.date_range("2024-01-01", periods=N, freq="D"))


def _labels(forward_return: np.ndarray | None = None) -> Labels:
    return Labels(horizon=2, trend=TREND.copy(),
                  forward_return=np.full(N, 0.01) if forward_return is None else forward_return,
                  forward_z=FORWARD_Z.copy(), next_variance=np.full(N, 0.0001), horizon_variance=np.full(N, 0.0002),
                  future_low=np.full(N, 97.0), future_high=np.full(N, 105.0))


FINGERPRINTS = np.column_stack((BAR * 1.0, BAR * -2.0))


def _positions(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(pd.date_range("2024-01-01", periods=N, freq="D").get_indexer(frame.index))


class _Trend:
    features = ("f",)

    def __init__(self, seen: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.seen = seen

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Trend:
        self.seen.append((_positions(X), np.array(y)))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p_up, p_down = X["p_up"].to_numpy(), X["p_down"].to_numpy()
        return np.column_stack((p_down, 1.0 - p_up - p_down, p_up))

    def _raw_proba(self, X: pd.DataFrame, _: Any) -> np.ndarray:
        """The calibrated expert's raw LightGBM probabilities: here the calibrated ones with up and down swapped."""
        return self.predict_proba(X)[:, ::-1]

    def directional_contributions(self, matrix: np.ndarray) -> np.ndarray:
        return matrix


class _Forecast:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, history: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.factor * history["variance"].to_numpy())


class _Blend:
    """The GARCH/EWMA blend: GARCH forecasts twice the frame's variance, EWMA three times, the blend the variance."""

    def __init__(self, converged: bool, weight: float) -> None:
        self.garch_, self.ewma_ = _Forecast(2.0), _Forecast(3.0)
        self.garch_.converged_ = np.bool_(converged)  # type: ignore[attr-defined]
        self.weight_ = weight

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Blend:
        return self

    def predict_variance(self, history: pd.DataFrame) -> np.ndarray:
        return np.asarray(history["variance"].to_numpy())


class _Levels:
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Levels:
        return self

    def context_bars(self) -> int | None:
        return None

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(X[["support", "resistance"]].to_numpy())


class _WindowedLevels(_Levels):
    window_ = 7


class _Har:
    """The sizing volatility model: it reads 3 bars of context before the block."""

    def __init__(self, seen: list[np.ndarray]) -> None:
        self.seen = seen

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Har:
        return self

    def context_bars(self) -> int | None:
        return 3

    def predict_variance(self, X: pd.DataFrame) -> np.ndarray:
        self.seen.append(_positions(X))
        return np.asarray(X["har_variance"].to_numpy())


class _Gate:
    """Weights proportional to 4, 2, 1 (and 1 for news) over the experts that answered; records what it is
    fitted and asked on."""

    def __init__(self, seen: dict[str, list[Any]]) -> None:
        self.seen = seen

    def fit(self, X: np.ndarray, y: np.ndarray, *, expert_scores: np.ndarray) -> _Gate:
        self.seen["gate_fit"].append((np.array(X), np.array(y), np.array(expert_scores)))
        return self

    def predict_proba(self, X: np.ndarray, available: np.ndarray) -> np.ndarray:
        self.seen["gate_predict"].append((np.array(X), np.array(available)))
        raw = np.array([4.0, 2.0, 1.0, 1.0])[: available.shape[1]] * available
        return np.asarray(raw / raw.sum(axis=1, keepdims=True))


@dataclass
class _Run:
    config: RunConfig
    labels: Labels
    out: Any
    seen: dict[str, list[Any]] = field(default_factory=dict)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Every model ``_decide_block`` fits replaced by the stand-ins above (the two refits: the blend converged at
    the first, not at the second; the levels model of the first has a window of 7, the second none)."""
    seen: dict[str, list[Any]] = {"gate_fit": [], "gate_predict": [], "har": [], "gates": [], "trend": [],
                                  "configs": []}
    blends = iter([_Blend(True, 0.25), _Blend(False, 0.75)])
    levels = iter([_WindowedLevels(), _Levels()])

    def made(name: str, config: RunConfig, model: Any) -> Any:
        seen["configs"].append((name, config))
        return model

    def gate(config: RunConfig) -> _Gate:
        seen["gates"].append(made("gate", config, _Gate(seen)))
        return seen["gates"][-1]

    monkeypatch.setattr(backtest, "clone", lambda model: model)
    monkeypatch.setattr(components, "trend_expert", lambda config: made("trend", config, _Trend(seen["trend"])))
    monkeypatch.setattr(components, "volatility_blend", lambda config: made("blend", config, next(blends)))
    monkeypatch.setattr(components, "levels_expert", lambda config: made("levels", config, next(levels)))
    monkeypatch.setattr(components, "volatility_model", lambda name, config: made(name, config, _Har(seen["har"])))
    monkeypatch.setattr(components, "gate", gate)
    yield seen


def _run(config: RunConfig, seen: dict[str, list[Any]], labels: Labels | None = None) -> _Run:
    labels = _labels() if labels is None else labels
    out = backtest._OutOfSample(N, config)
    frame = _frame()
    assert list(backtest.schedule(N, config.walk_forward)) == list(BLOCKS)
    for block in BLOCKS:
        backtest._decide_block(block, frame, labels, FINGERPRINTS, out, config)
    return _Run(config, labels, out, seen)


def _expected_scores() -> np.ndarray:
    scores = np.column_stack((TREND_SCORE, np.full(N, LEVELS_SCORE), np.zeros(N)))  # under 20 forecasts: 0
    scores[ABSTAINS, 2] = np.nan
    return scores


def test_the_gate_learns_the_known_rows_and_weights_each_block_over_the_experts_that_answered(
    stand_ins: dict[str, list[Any]],
) -> None:
    run = _run(_config(), stand_ins)
    out, decided = run.out, slice(FIRST, N)
    expected = _expected_scores()
    np.testing.assert_array_equal(out.scores[decided], expected[decided])
    # the refit at bar 4 knows no row from bar 4 on; the one at bar 18 knows 4 .. 15, less bar 9 (no forward z)
    fits = stand_ins["gate_fit"]
    assert len(fits) == 2 and all(len(part) == 0 for part in fits[0])
    known = np.array([4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15])
    X, y, scores = fits[1]
    np.testing.assert_array_equal(X, FINGERPRINTS[known])
    np.testing.assert_array_equal(y, FORWARD_Z[known])
    np.testing.assert_array_equal(scores, expected[known])
    for block, (X, available) in zip(BLOCKS, stand_ins["gate_predict"], strict=True):
        rows = slice(block.start, block.stop)
        np.testing.assert_array_equal(X, FINGERPRINTS[rows])
        np.testing.assert_array_equal(available, np.isfinite(expected[rows]))
    weights = np.tile(GATE, (N, 1))
    weights[ABSTAINS] = GATE_ABSTAINING
    np.testing.assert_allclose(out.gate[decided], weights[decided], rtol=1e-15)
    # the weighted score: each expert's score times its weight; the abstaining expert contributes nothing
    parts = np.column_stack((TREND_SCORE * 4 / 7, np.full(N, LEVELS_SCORE * 2 / 7), np.zeros(N)))
    parts[ABSTAINS] = (TREND_SCORE[ABSTAINS] * 2 / 3, LEVELS_SCORE / 3, 0.0)
    np.testing.assert_allclose(out.contributions[decided], parts[decided], rtol=1e-15)
    np.testing.assert_allclose(out.combined[decided], parts[decided].sum(axis=1), rtol=1e-15)
    np.testing.assert_array_equal(out.prior[decided], 0.0)  # no meta-model: no prior's part


def test_the_news_expert_scores_the_frame_s_news_column_and_abstains_where_it_is_empty(
    stand_ins: dict[str, list[Any]],
) -> None:
    news = np.where(BAR % 2 == 0, 0.25, np.nan)  # no news on odd bars
    frame = _frame().assign(**{NEWS_COLUMN: news})
    config = _config(news=True, k=4)
    out = backtest._OutOfSample(N, config)
    for block in BLOCKS:
        backtest._decide_block(block, frame, _labels(), FINGERPRINTS, out, config)

    decided = slice(FIRST, N)
    expected = np.column_stack((_expected_scores(), news))
    np.testing.assert_array_equal(out.scores[decided], expected[decided])
    weights = np.array([4.0, 2.0, 1.0, 1.0]) * np.isfinite(expected)
    np.testing.assert_allclose(out.gate[decided], (weights / weights.sum(axis=1, keepdims=True))[decided],
                               rtol=1e-15)


def test_each_refit_reports_its_diagnostics_and_forecasts_its_own_block(stand_ins: dict[str, list[Any]]) -> None:
    config = _config()
    run = _run(config, stand_ins)
    out, decided = run.out, slice(FIRST, N)
    # each refit builds its models from the run's config, the sizing model by its name
    built = ["trend", "blend", "levels", "vol_har", "gate"]
    assert stand_ins["configs"] == [(name, config) for name in built * 2]
    assert all(given is config for _, given in stand_ins["configs"])
    # the trend expert learns every known row with a label, each class included (bar 1 went down)
    for r, (rows, y) in zip((4, 18), stand_ins["trend"], strict=True):
        np.testing.assert_array_equal(rows, np.arange(1, r - LAG + 1))
        np.testing.assert_array_equal(y, TREND[1 : r - LAG + 1])
    assert out.garch_converged == [True, False]
    assert all(type(flag) is bool for flag in out.garch_converged)
    assert out.blend_weight == [0.25, 0.75]
    assert out.levels_window == [7, 0]  # the second levels model has no window
    variance = _frame()["variance"].to_numpy()
    for name, factor in (("volatility_blend", 1.0), ("baseline_garch11", 2.0), ("baseline_ewma", 3.0)):
        np.testing.assert_array_equal(out.variance[name][decided], factor * variance[decided], err_msg=name)
    np.testing.assert_array_equal(out.variance["vol_har"][decided], 0.0001 * (1 + BAR[decided]))
    # the sizing model is given its 3 bars of context before each block and the block itself
    assert [list(rows) for rows in stand_ins["har"]] == [list(range(1, 18)), list(range(15, 32))]
    np.testing.assert_array_equal(out.levels[decided], np.tile([98.0, 106.0], (N - FIRST, 1)))
    proba = np.column_stack((P_DOWN, 1.0 - P_UP - P_DOWN, P_UP))
    np.testing.assert_array_equal(out.trend_proba[decided], proba[decided])
    np.testing.assert_array_equal(out.raw_trend_proba[decided], proba[decided, ::-1])  # the quick config's expert
    assert np.isnan(out.raw_trend_proba[:FIRST]).all()
    assert list(out.top_features[decided]) == [f"f:{bar:+.3f}" for bar in range(FIRST, N)]


def test_the_pooled_trend_expert_s_probabilities_decide_each_block_and_no_trend_expert_is_fitted(
    stand_ins: dict[str, list[Any]],
) -> None:
    """``trend_proba`` given (``moe.experts.trend: trend_pooled``, fitted by the pooled walk-forward over every
    series): each block takes its own bars' rows of it, and the block fits no trend expert of its own."""
    config = apply_overrides(_config(), {"moe": {"experts": {"trend": "trend_pooled"}}}, source="test")
    p_up = BAR / 64.0
    pooled = np.column_stack((np.full(N, 0.25), 0.75 - p_up, p_up))
    pooled[:FIRST] = np.nan  # before the first refit: never read
    frame, labels, out = _frame(), _labels(), backtest._OutOfSample(N, config)
    for block in BLOCKS:
        given = pooled.copy()
        given[: block.start] = given[block.stop :] = 9.0  # rows outside the block must not be read
        given[block.start : block.stop] = pooled[block.start : block.stop]
        backtest._decide_block(block, frame, labels, FINGERPRINTS, out, config, given)
        np.testing.assert_array_equal(out.trend_proba[block.start : block.stop], pooled[block.start : block.stop])
    decided = slice(FIRST, N)
    assert stand_ins["trend"] == [] and "trend" not in [name for name, _ in stand_ins["configs"]]
    assert out.raw_trend_proba is None
    np.testing.assert_array_equal(out.trend_proba[:FIRST], np.nan)
    np.testing.assert_array_equal(out.trend_proba[decided], pooled[decided])
    np.testing.assert_array_equal(out.scores[decided, 0], (p_up - 0.25)[decided])  # P(up) - P(down)
    assert list(out.top_features) == [""] * N  # the pooled walk-forward gives no feature attributions


class _TunedTrend(_Trend):
    """The model a refit's study returns: P(down, neutral, up) = (1/4, 1/4, 1/2) and each feature's
    contribution the opposite of its value, so nothing it decides can pass for the untuned stand-in's."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile([0.25, 0.25, 0.5], (len(X), 1))

    def directional_contributions(self, matrix: np.ndarray) -> np.ndarray:
        return -matrix


def test_with_tuning_each_refit_s_trend_expert_is_the_one_its_study_chose_on_that_refit_s_rows(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tuning`` given: each refit hands ``workflow.tuning.tuned_trend`` the trend expert built from the run's
    config, the known rows with a label (1 at bar 4; 1 .. 15 at bar 18), their labels and the bar each label is
    known at (i + H), an in-memory study named after the symbol and the refit's bar; the block is decided with the
    model it returns and its record is kept, one per refit, in order."""
    from signal_engine.workflow import tuning as workflow_tuning

    config, tuning = _config(), workflow_tuning.TuningRun(enabled=True, trials=3, timeout_s=None)
    calls: list[dict[str, Any]] = []

    def tuned_trend(model: Any, X: pd.DataFrame, y: np.ndarray, bars: np.ndarray, known_at: np.ndarray, *,
                    config: RunConfig, tuning: workflow_tuning.TuningRun, name: str,
                    storage: str | None) -> tuple[Any, dict[str, Any]]:
        calls.append({"model": model, "rows": _positions(X), "y": np.array(y), "bars": np.array(bars),
                      "known_at": np.array(known_at), "config": config, "tuning": tuning, "name": name,
                      "storage": storage})
        return _TunedTrend(stand_ins["trend"]), {"study": name}

    monkeypatch.setattr(workflow_tuning, "tuned_trend", tuned_trend)
    frame, labels, out = _frame(), _labels(), backtest._OutOfSample(N, config)
    for block in BLOCKS:
        backtest._decide_block(block, frame, labels, FINGERPRINTS, out, config, tuning=tuning, symbol="GOOG")

    names = ["trend/GOOG@2024-01-05T00:00:00", "trend/GOOG@2024-01-19T00:00:00"]  # bars 4 and 18
    rows = [np.array([1]), np.arange(1, 16)]  # bar 0 has no label; bar i is known at the refit at r if i <= r - 3
    labelled = [np.array([0]), np.tile([0, 1, 2], 5)]  # TREND of bars 1 .. 15: 0, 1, 2 repeated
    built = [given for name, given in stand_ins["configs"] if name == "trend"]
    assert len(calls) == 2 and built == [config, config]
    for call, name, expected_rows, y in zip(calls, names, rows, labelled, strict=True):
        assert isinstance(call["model"], _Trend) and not isinstance(call["model"], _TunedTrend)
        np.testing.assert_array_equal(call["rows"], expected_rows)
        np.testing.assert_array_equal(call["bars"], expected_rows)
        np.testing.assert_array_equal(call["y"], y)
        np.testing.assert_array_equal(call["known_at"], expected_rows + 2)
        assert call["config"] is config and call["tuning"] is tuning
        assert call["name"] == name and call["storage"] is None
    assert stand_ins["trend"] == []  # the study fits the expert; the block fits none itself
    assert out.tuning_refits == [{"study": name} for name in names]

    decided = slice(FIRST, N)
    np.testing.assert_array_equal(out.trend_proba[decided], np.tile([0.25, 0.25, 0.5], (N - FIRST, 1)))
    np.testing.assert_array_equal(out.raw_trend_proba[decided], np.tile([0.5, 0.25, 0.25], (N - FIRST, 1)))
    np.testing.assert_array_equal(out.scores[decided, 0], 0.25)  # P(up) - P(down) of the tuned model
    assert list(out.top_features[decided]) == [f"f:{-bar:+.3f}" for bar in range(FIRST, N)]


@pytest.mark.parametrize(("min_rows", "second_block"), [
    # 12 known rows: |0.1| wrong 5 times, |0.5| right 7 times -> the isotonic map 0 at 0.1, 1 at 0.5, linear between
    (4, [0.5, 0.25, 1.0, 0.0, 0.0, 1.0]),
    # more rows needed than known: every confidence is the hit rate, 7 of 12
    (13, [7 / 12] * 6),
])
def test_the_confidence_of_a_block_is_calibrated_on_the_combined_scores_known_at_its_refit(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, min_rows: int, second_block: list[float],
) -> None:
    combined = np.full(N, np.nan)
    combined[4:9], combined[9:16] = 0.1, -0.5  # known at bar 18: 0.1 then a fall (wrong), -0.5 and a fall (right)
    combined[16:18] = 0.5  # decided before bar 18 but their moves are not known yet (both wrong: they must not count)
    combined[18:24] = [0.3, -0.2, 0.9, 0.05, np.nan, -0.5]
    calls: list[Block] = []

    def combine(block: Block, *args: Any) -> np.ndarray:
        calls.append(block)
        return np.asarray(combined[block.start : block.stop])

    monkeypatch.setattr(backtest, "_combine", combine)
    config = apply_overrides(_config(), {"gate": {"min_rows": min_rows}}, source="test")
    run = _run(config, stand_ins, _labels(forward_return=np.full(N, -0.01)))

    assert calls == list(BLOCKS)
    np.testing.assert_array_equal(run.out.confidence[4:18], 0.5)  # nothing known at bar 4: a hit rate of 0.5
    np.testing.assert_allclose(run.out.confidence[18:24], second_block, rtol=1e-12, atol=1e-15)


def _recorded(monkeypatch: pytest.MonkeyPatch, name: str, value: float) -> list[tuple[Any, ...]]:
    """Replace ``backtest.<name>`` (``_combine`` or ``_online_block``) by a recorder that decides ``value``."""
    calls: list[tuple[Any, ...]] = []

    def combine(block: Block, frame: pd.DataFrame, labels: Labels, out: Any, config: RunConfig,
                known_horizon: np.ndarray) -> np.ndarray:
        calls.append((block, frame, labels, out, config, np.array(known_horizon)))
        return np.full(block.stop - block.start, value)

    def online(block: Block, gate: Any, labels: Labels, fingerprints: np.ndarray, out: Any, config: RunConfig,
               known_horizon: np.ndarray) -> None:
        calls.append((block, gate, labels, fingerprints, out, config, np.array(known_horizon)))
        out.combined[block.start : block.stop] = value

    monkeypatch.setattr(backtest, name, combine if name == "_combine" else online)
    return calls


def _known_at(r: int) -> np.ndarray:
    return np.asarray(r >= BAR + LAG)  # a label of bar i is known at bar i + H + E


@pytest.mark.parametrize(("moe", "path"), [
    ({"combiner": "meta", "online": {"enabled": True}}, "_online_block"),
    ({"combiner": "meta", "online": {"enabled": False}}, "_combine"),
    ({"combiner": "rule", "gate": "rule", "online": {"enabled": True, "meta_rate": 0.0, "gate_rate": 0.0}},
     "_combine"),
])
def test_online_learning_decides_the_block_unless_it_is_off_or_the_rules_combine(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, moe: dict[str, Any], path: str,
) -> None:
    if moe.get("gate") == "rule":  # the rule gate is a stand-in too
        monkeypatch.setattr(components, "gate", lambda config: _Gate(stand_ins))
    online, combine = _recorded(monkeypatch, "_online_block", 0.25), _recorded(monkeypatch, "_combine", -0.25)
    config = _config(**moe)
    run = _run(config, stand_ins)

    taken, other = (online, combine) if path == "_online_block" else (combine, online)
    assert other == [] and [call[0] for call in taken] == list(BLOCKS)
    for block, call in zip(BLOCKS, taken, strict=True):
        assert call[-3] is run.out and call[-2] is config and call[2] is run.labels
        np.testing.assert_array_equal(call[-1], _known_at(block.fit_at))
        if path == "_online_block":
            assert call[1] is stand_ins["gates"][BLOCKS.index(block)]
            assert call[3] is FINGERPRINTS
        else:
            pd.testing.assert_frame_equal(call[1], _frame())
    np.testing.assert_array_equal(run.out.combined[FIRST:], 0.25 if path == "_online_block" else -0.25)


def test_without_the_moe_the_single_expert_decides_with_all_the_weight_and_credit(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``moe.enabled: false``: the single expert's score (a stand-in here: the TensorFlow model is not fitted) is
    the block's combined score, its gate weight is 1 on the first slot, and the whole score is credited there."""
    calls: list[tuple[Any, ...]] = []
    single = np.linspace(-0.5, 0.5, N)

    def single_expert(block: Block, frame: pd.DataFrame, labels: Labels, out: Any, config: RunConfig,
                      known_horizon: np.ndarray) -> np.ndarray:
        calls.append((block, frame, labels, out, config, np.array(known_horizon)))
        return np.asarray(single[block.start : block.stop])

    monkeypatch.setattr(backtest, "_single_expert_score", single_expert)
    config = _config(enabled=False)
    run = _run(config, stand_ins)
    out, decided = run.out, slice(FIRST, N)

    assert stand_ins["gate_fit"] == [] and [call[0] for call in calls] == list(BLOCKS)
    for block, (_, frame, labels, given_out, given_config, known) in zip(BLOCKS, calls, strict=True):
        pd.testing.assert_frame_equal(frame, _frame())
        assert labels is run.labels and given_out is out and given_config is config
        np.testing.assert_array_equal(known, _known_at(block.fit_at))
    np.testing.assert_array_equal(out.gate[decided], np.tile([1.0, 0.0, 0.0], (N - FIRST, 1)))
    np.testing.assert_array_equal(out.combined[decided], single[decided])
    np.testing.assert_array_equal(out.contributions[decided],
                                  np.column_stack((single, np.zeros(N), np.zeros(N)))[decided])
    np.testing.assert_array_equal(out.prior[decided], 0.0)


def test_online_learning_steps_on_each_label_as_it_becomes_known_before_deciding_the_bar(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``moe.online`` on, bar t of a block is decided after the learner has stepped on exactly the rows
    first .. t - H - E that its refit did not know (none at the refit's own bar), each with what the models read
    at that row and what happened there."""
    events: list[tuple[str, int]] = []
    learnt: list[RealisedRow] = []
    arrays: list[Any] = []  # the meta-model as it stood when each bar 4 .. 31 was decided

    class Learner(OnlineLearner):
        def learn(self, row: RealisedRow) -> None:
            learnt.append(row)
            events.append(("learn", int(row.fingerprint[0])))  # the fingerprint's first column is the bar
            super().learn(row)

        def meta_arrays(self) -> Any:
            events.append(("decide", -1))
            arrays.append(super().meta_arrays())
            return arrays[-1]

    monkeypatch.setattr(backtest, "OnlineLearner", Learner)
    run = _run(_config(combiner="meta", online={"enabled": True, "gate_rate": 0.05, "meta_rate": 0.01}), stand_ins)
    out = run.out

    expected: list[tuple[str, int]] = []
    for block in BLOCKS:
        expected.append(("decide", -1))  # the refit's own bar: nothing new is known
        for t in range(block.start + 1, block.stop):
            if t - LAG >= FIRST:
                expected.append(("learn", t - LAG))
            expected.append(("decide", -1))
    assert events == expected
    rows = [int(row.fingerprint[0]) for row in learnt]
    assert rows == [*range(4, 15), *range(16, 29)]
    for row, bar in zip(learnt, rows, strict=True):
        np.testing.assert_array_equal(row.fingerprint, FINGERPRINTS[bar])
        np.testing.assert_array_equal(row.scores, out.scores[bar])
        np.testing.assert_array_equal(row.gate, out.gate[bar])
        np.testing.assert_array_equal(row.forward_z, FORWARD_Z[bar])  # NaN at bar 9: the gate skips it
        assert row.trend == TREND[bar]
    # no meta-model at bar 4 (no known row) and a gate that is not a softmax gate: nothing learnt in the first
    # block; the meta-model fitted at bar 18 learns each of the 13 rows (all labelled)
    assert out.online_updates == [0, 13]
    # each bar's score is its own: the weighted score in the first block, then P(up) - P(down) of the meta-model as
    # it stood at that bar, on that bar's scores and gate weights (a missing score at its training mean)
    assert all(meta is None for meta in arrays[:14]) and all(meta is not None for meta in arrays[14:])
    np.testing.assert_allclose(out.combined[4:18], (out.scores[4:18] * out.gate[4:18]).sum(axis=1), rtol=1e-12)
    for bar, meta in zip(range(18, N), arrays[14:], strict=True):
        z = np.nan_to_num((np.concatenate((out.scores[bar], out.gate[bar])) - meta.mean) / meta.scale)
        logits = meta.coef @ z + meta.intercept
        proba = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert list(meta.classes) == [0, 1, 2]
        np.testing.assert_allclose(out.combined[bar], proba[2] - proba[0], rtol=1e-9, err_msg=f"bar {bar}")


def test_the_rule_combiner_reads_each_block_s_expert_outputs_and_credits_each_expert_a_third_of_its_call(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[RunConfig, dict[str, np.ndarray]]] = []

    class Rules:
        def __init__(self, config: RunConfig) -> None:
            self.config = config

        def decision_function(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
            calls.append((self.config, outputs))
            return np.where(outputs["p_down"] < 0.25, 1.0, -1.0)  # buy on even bars, sell on odd ones

    monkeypatch.setattr(components, "rule_combiner", Rules)
    config = _config(combiner="rule", gate="rule")
    out = _run(config, stand_ins).out

    assert [given for given, _ in calls] == [config, config]
    for block, (_, outputs) in zip(BLOCKS, calls, strict=True):
        bars = BAR[block.start : block.stop]
        np.testing.assert_array_equal(outputs["p_up"], P_UP[bars])
        np.testing.assert_array_equal(outputs["p_down"], P_DOWN[bars])
        np.testing.assert_allclose(outputs["support_distance"], 0.02, rtol=1e-12)  # (100 - 98) / 100
        np.testing.assert_allclose(outputs["resistance_distance"], 0.06, rtol=1e-12)  # (106 - 100) / 100
        np.testing.assert_allclose(outputs["vol_forecast"], np.sqrt(0.0001 * (1 + bars)), rtol=1e-15)
    called = np.where(BAR % 2 == 0, 1.0, -1.0)[FIRST:]
    np.testing.assert_array_equal(out.combined[FIRST:], called)
    np.testing.assert_allclose(out.contributions[FIRST:], np.column_stack([called / 3] * 3), rtol=1e-15)


def test_the_stages_keep_what_each_stage_let_through_for_the_block_s_bars(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stand-in stages: stage 1 keeps every bar, stage 2 the even ones, stage 3 every fourth; what the block keeps
    is exactly that, bar by bar."""

    class Refiner:
        def __init__(self, min_rows: int) -> None:
            pass

        def fit(self, windows: np.ndarray, fast: np.ndarray, y: np.ndarray) -> Refiner:
            return self

        def predict_proba(self, windows: np.ndarray, fast: np.ndarray) -> np.ndarray:
            return fast

    class Engine:
        def __init__(self, random_state: int, min_lift: float) -> None:
            pass

        def fit(self, inputs: Any, y: np.ndarray) -> Engine:
            return self

        def decide(self, inputs: Any) -> Any:
            bars = np.asarray(inputs.rsi, dtype=np.int64)  # the stand-in RSI is the bar's number
            direction = np.where(bars % 2 == 0, 1, -1)
            return StageDecisions(direction, direction, np.ones(len(bars), dtype=bool), bars % 2 == 0,
                                  bars % 4 == 0, bars / 100.0)

    monkeypatch.setattr(backtest, "SequenceRefiner", Refiner)
    monkeypatch.setattr(backtest, "MultiStageEngine", Engine)
    config = _config()
    run = _run(config, stand_ins)
    frame = _frame().assign(rsi_14=BAR.astype(float))
    for block in BLOCKS:
        backtest._stages_block(block, frame, run.labels, np.zeros((N, 20)), run.out, config)

    decided = BAR[FIRST:]
    kept = np.column_stack((np.ones(N - FIRST, dtype=bool), decided % 2 == 0, decided % 4 == 0))
    np.testing.assert_array_equal(run.out.stage_kept[FIRST:], kept)
    np.testing.assert_array_equal(run.out.stage_direction[FIRST:], np.where(decided % 2 == 0, 1, -1))
    np.testing.assert_array_equal(run.out.stage_confidence[FIRST:], decided / 100.0)



@pytest.mark.parametrize("gate_rate", [0.0, 0.5])
def test_an_online_softmax_gate_starts_each_block_as_fitted_and_moves_only_with_a_rate(
    stand_ins: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, gate_rate: float,
) -> None:
    """A real softmax gate learning online: at rate 0 every bar is weighted as the refit's gate weights it; at a rate
    the refit's own bar still is (no label is new there) and every later bar of the second block moves (a step per
    bar, from bar 19 on), as a learner started from the refit's weights with the gate's own entropy and clip and
    stepped on rows 16 .. 28 in turn weights it (the learner's step itself is worked out in test_moe_online.py)."""
    gates: list[SoftmaxGate] = []

    def gate(config: RunConfig) -> SoftmaxGate:
        gates.append(SoftmaxGate(min_rows=4, k=None, entropy=0.2, clip=1.0))  # not the learner's defaults
        return gates[-1]

    monkeypatch.setattr(components, "gate", gate)
    config = _config(combiner="meta", online={"enabled": True, "gate_rate": gate_rate, "meta_rate": 0.0})
    out = _run(config, stand_ins).out

    refit = gates[1].predict_proba(FINGERPRINTS[18:32], np.isfinite(_expected_scores()[18:32]))
    moved = np.abs(out.gate[18:32] - refit).max(axis=1) > 1e-9
    np.testing.assert_allclose(out.gate[18], refit[0], rtol=1e-12)
    assert moved[1:].all() if gate_rate > 0 else not moved.any()
    assert out.gate[ABSTAINS, 2] == 0.0 and np.allclose(out.gate[18:32].sum(axis=1), 1.0)
    # the steps are the gate's own objective (its entropy and clip) at the configured rate, on rows 16 .. 28
    learner = OnlineLearner(gates[1].gate_weights(), None, OnlineRates(gate=gate_rate, meta=0.0, entropy=0.2, clip=1.0))
    for t in range(18, N):
        if t > 18:
            known = t - LAG
            learner.learn(RealisedRow(FINGERPRINTS[known], out.scores[known], out.gate[known], FORWARD_Z[known],
                                      int(TREND[known])))
        weights = learner.gate_weights()
        assert weights is not None
        expected = gate_forward(weights, FINGERPRINTS[t : t + 1], np.isfinite(out.scores[t : t + 1]))[0]
        np.testing.assert_allclose(out.gate[t], expected, rtol=1e-12, err_msg=f"bar {t}")
