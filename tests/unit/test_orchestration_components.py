"""Each orchestration component on its own, against values worked out by hand (seed 004)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import RunConfig
from signal_engine.errors import ConfigError, SignalEngineError
from signal_engine.orchestration import (
    EVENT_COLUMNS,
    EventLog,
    OrchestrationConfig,
    OrchestrationEvent,
    PrecomputedTimeframeModel,
    TimeframeModel,
    signal_frame,
    timeframe_run_config,
    timeframe_specs,
)
from signal_engine.orchestration.alignment import align, harmony_score
from signal_engine.orchestration.allocation import CapitalAllocator, limit_change, project_to_capped_simplex
from signal_engine.orchestration.conflicts import resolve_conflict
from signal_engine.orchestration.correlation import (
    CorrelationAnalyser,
    correlation_matrix,
    correlation_scales,
    mean_correlation_with_others,
)
from signal_engine.orchestration.drawdown import DrawdownDefender, RollingMax, drawdown_scale
from signal_engine.orchestration.events import LimitWatch
from signal_engine.orchestration.exposure import ExposureLimits, book_scales, timeframe_scales
from signal_engine.orchestration.performance import PerformanceTracker
from signal_engine.orchestration.regime import book_regime, classify_regime, regime_features
from signal_engine.orchestration.risk import (
    UnifiedRiskManager,
    book_vol_forecast,
    portfolio_volatility,
    volatility_scale,
)
from signal_engine.orchestration.scheduler import schedule_trades

# -- performance tracker -------------------------------------------------------------------------------


def test_ew_sharpe_win_rate_profit_factor_and_drawdown_by_hand() -> None:
    tracker = PerformanceTracker(["a"], half_life=1.0, periods_per_year=252.0)  # weights 0.25, 0.5, 1
    for r in (0.01, -0.02, 0.03):
        tracker.update(np.array([r]))
    # mean = (0.25*0.01 - 0.5*0.02 + 0.03) / 1.75; E[r^2] = (0.25e-4 + 0.5*4e-4 + 9e-4) / 1.75
    assert tracker.sharpe()[0] == pytest.approx(0.5883484054145521 * math.sqrt(252))
    assert tracker.win_rate()[0] == pytest.approx((0.25 + 1.0) / 1.75)
    assert tracker.profit_factor()[0] == pytest.approx((0.25 * 0.01 + 0.03) / (0.5 * 0.02))
    assert tracker.max_drawdown()[0] == pytest.approx(-0.02)
    assert tracker.observations == 3


def test_profit_factor_without_losses_is_infinite_and_without_trades_undefined() -> None:
    tracker = PerformanceTracker(["winner", "idle"], half_life=10.0, periods_per_year=252.0)
    tracker.update(np.array([0.01, 0.0]))
    assert tracker.profit_factor()[0] == np.inf
    assert np.isnan(tracker.profit_factor()[1]) and np.isnan(tracker.win_rate()[1])
    assert tracker.sharpe()[0] == 0.0  # one observation is not a Sharpe ratio


def test_predicted_vs_actual_is_the_correlation_of_scores_with_realised_returns() -> None:
    tracker = PerformanceTracker(["right", "wrong"], half_life=5.0, periods_per_year=252.0)
    for realised in (0.01, -0.02, 0.005, -0.01):
        scores = np.array([[realised * 10, np.nan], [-realised * 10, np.nan]])
        tracker.update(np.zeros(2), predicted=scores, realised=np.array([realised, np.nan]))
    assert tracker.predicted_vs_actual() == pytest.approx([1.0, -1.0])


def test_regime_scores_shrink_the_regime_sharpe_towards_the_overall_one() -> None:
    tracker = PerformanceTracker(["a"], half_life=1e9, periods_per_year=1.0, regime_prior_bars=2.0)
    for r, regime in ((0.01, "trend/low"), (0.03, "trend/low"), (-0.01, "range/low"), (-0.03, "range/low")):
        tracker.update(np.array([r]), regime=regime)
    overall = tracker.sharpe()[0]
    in_trend, seen = tracker.regime_sharpe("trend/low")
    assert seen[0] == 2 and in_trend[0] == pytest.approx(0.02 / 0.01)
    assert tracker.scores("trend/low")[0] == pytest.approx(0.5 * in_trend[0] + 0.5 * overall)
    assert tracker.scores("trend/high")[0] == pytest.approx(overall)


# -- allocation ---------------------------------------------------------------------------------------


def test_change_limit_is_kept_where_the_seed_renormalisation_breaks_it() -> None:
    previous = np.array([0.1, 0.4, 0.25, 0.25])
    target = np.array([0.5, 0.1, 0.2, 0.2])
    seed = previous + np.clip(target - previous, -0.1, 0.1)
    seed = seed / seed.sum()  # seed 004 _smooth_allocation_change
    assert seed[0] - previous[0] > 0.1 + 1e-9
    ours = limit_change(previous, target, max_change=0.1, lower=0.1, upper=0.5)
    np.testing.assert_allclose(ours, [0.2, 0.3, 0.25, 0.25])


def test_projection_onto_the_bounded_simplex_by_hand() -> None:
    np.testing.assert_allclose(project_to_capped_simplex(np.array([0.7, 0.2, 0.1]), 0.1, 0.5), [0.5, 0.3, 0.2])
    np.testing.assert_allclose(project_to_capped_simplex(np.array([5.0, 5.0, 5.0, 5.0]), 0.1, 0.5), 0.25)
    with pytest.raises(SignalEngineError, match="no allocation"):
        project_to_capped_simplex(np.zeros(2), 0.6, 0.9)


@pytest.mark.parametrize(("config", "named"), [
    (OrchestrationConfig(min_allocation=0.3), "min_allocation 0.3 x 4 models = 1.2 > 1"),
    (OrchestrationConfig(max_allocation=0.2), "max_allocation 0.2 x 4 models = 0.8 < 1"),
])
def test_infeasible_allocation_bounds_name_the_settings(config: OrchestrationConfig, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        CapitalAllocator(["a", "b", "c", "d"], config)


def test_allocator_starts_equal_and_moves_towards_the_better_model_within_the_limit() -> None:
    allocator = CapitalAllocator(["a", "b", "c", "d"], OrchestrationConfig())
    np.testing.assert_allclose(allocator.allocation, 0.25)
    update = allocator.update(np.array([3.0, 0.0, 0.0, 0.0]))
    assert update.changed and update.target[0] == pytest.approx(0.5)
    np.testing.assert_allclose(update.allocation, [0.35, 0.65 / 3, 0.65 / 3, 0.65 / 3])


# -- position coordination ------------------------------------------------------------------------------


def test_harmony_score_and_alignment_multipliers_by_hand() -> None:
    direction = np.array([1, 1, 1, -1])
    confidence = np.full(4, 0.5)
    allocation = np.full(4, 0.25)
    # |0.125 * (1 + 1 + 1 - 1)| / (0.125 * 4) = 0.5; three of four agree: breadth (3 - 1) / (4 - 1)
    alignment = align(direction, confidence, allocation, amplification=0.5)
    assert alignment.harmony == pytest.approx(0.5) and alignment.consensus == 1
    np.testing.assert_allclose(alignment.multipliers, [1 + 0.5 * 0.5 * 2 / 3] * 3 + [1.0])


def test_flat_models_do_not_lower_harmony_and_a_lone_model_is_not_amplified() -> None:
    assert harmony_score(np.array([1, 0, 0, 1]), np.full(4, 0.8), np.full(4, 0.25)) == pytest.approx(1.0)
    lone = align(np.array([0, 0, 1, 0]), np.full(4, 0.8), np.full(4, 0.25), amplification=0.5)
    assert lone.harmony == 1.0
    np.testing.assert_allclose(lone.multipliers, 1.0)
    assert harmony_score(np.zeros(3), np.ones(3), np.ones(3)) == 0.0


def test_scheduler_fills_shorter_timeframes_first_and_defers_the_rest() -> None:
    schedule = schedule_trades(np.zeros(3), np.array([0.6, -0.5, 0.3]), rank=np.array([0, 1, 2]),
                               strength=np.full(3, 0.5), expected_holding=np.array([1, 5, 20]), budget=1.0)
    np.testing.assert_allclose(schedule.filled, [0.6, -0.4, 0.0])
    np.testing.assert_allclose(schedule.deferred, [0.0, -0.1, 0.3])
    np.testing.assert_allclose(schedule.positions, [0.6, -0.4, 0.0])


def test_scheduler_puts_exits_first_and_stronger_signals_before_weaker() -> None:
    flip = schedule_trades(np.array([0.5, 0.0, 0.0]), np.array([-0.5, 0.4, 0.0]), rank=np.array([2, 0, 1]),
                           strength=np.ones(3), expected_holding=np.array([20, 1, 5]), budget=0.6)
    np.testing.assert_allclose(flip.positions, [0.0, 0.1, 0.0])  # the long leg closes first, then rank 0
    ties = schedule_trades(np.zeros(2), np.array([0.5, 0.5]), rank=np.array([0, 0]),
                           strength=np.array([0.2, 0.9]), expected_holding=np.array([1, 1]), budget=0.7)
    np.testing.assert_allclose(ties.positions, [0.2, 0.5])
    full = schedule_trades(np.array([0.1, -0.2]), np.array([0.3, 0.1]), rank=np.array([0, 1]),
                           strength=np.ones(2), expected_holding=np.ones(2), budget=10.0)
    np.testing.assert_array_equal(full.positions, [0.3, 0.1])


def test_partial_allocation_scales_both_sides_by_their_disagreement() -> None:
    resolution = resolve_conflict(np.array([0.3, 0.2, -0.1]), np.ones(3), "partial")
    assert resolution.conflict and resolution.net_before == pytest.approx(0.4)
    np.testing.assert_allclose(resolution.contributions, np.array([0.3, 0.2, -0.1]) * 0.4 / 0.6)


def test_confidence_priority_keeps_the_confident_side_up_to_the_net() -> None:
    resolution = resolve_conflict(np.array([0.3, -0.2]), np.array([0.2, 0.9]), "confidence")
    assert resolution.winner == -1  # 0.2 x 0.9 > 0.3 x 0.2
    np.testing.assert_allclose(resolution.contributions, [0.0, -0.1])


def test_hedge_keeps_both_legs_and_agreement_is_no_conflict() -> None:
    hedge = resolve_conflict(np.array([0.4, -0.3]), np.ones(2), "hedge")
    assert hedge.conflict and hedge.net_after == pytest.approx(0.1)
    np.testing.assert_array_equal(hedge.contributions, [0.4, -0.3])
    assert not resolve_conflict(np.array([0.4, 0.0, 0.1]), np.ones(3), "partial").conflict


# -- unified risk management ----------------------------------------------------------------------------


def test_correlation_matrix_matches_pandas_pairwise_complete() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(40, 3))
    values[:, 1] += values[:, 0]
    values[[2, 7, 11], 0] = np.nan
    values[[5, 6], 2] = np.nan
    expected = pd.DataFrame(values).corr(min_periods=3).to_numpy()
    np.testing.assert_allclose(correlation_matrix(values), expected, atol=1e-12)
    assert np.isnan(correlation_matrix(values[:2])).all()


def test_correlation_scales_by_hand() -> None:
    corr = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.2], [0.8, 0.2, 1.0]])
    np.testing.assert_allclose(mean_correlation_with_others(corr), [0.85, 0.55, 0.5])
    # 0.85 is half way from 0.7 to 1: half way from 1 down to the floor 0.5
    np.testing.assert_allclose(correlation_scales(np.array([0.85, 0.55, np.nan]), threshold=0.7, floor=0.5),
                               [0.75, 1.0, 1.0])


def test_correlation_analyser_uses_only_the_last_window() -> None:
    analyser = CorrelationAnalyser(2, 1, window=4, threshold=0.7, floor=0.5)
    for x in (1.0, 2.0, 3.0, 4.0):
        analyser.update(np.array([x, -x]), np.array([x]))
    assert analyser.model_correlation()[0, 1] == pytest.approx(-1.0)
    for x in (1.0, 2.0, 3.0, 4.0):
        analyser.update(np.array([x, x]), np.array([np.nan]))
    assert analyser.model_correlation()[0, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(analyser.model_scales(), 0.5)
    assert analyser.asset_correlation()[0, 0] == 1.0


def test_book_scales_by_hand() -> None:
    limits = ExposureLimits(gross=1.5, net=1.0, asset=0.7, long=1.0, short=0.5, timeframe=1.0)
    scales = book_scales(np.array([0.8, -0.6, 0.5]), limits)
    # asset 0.7/0.8; long 1/1.3; short 0.5/0.6; gross 1.5/1.9: each symbol takes its tightest
    np.testing.assert_allclose(scales.asset, [1 / 1.3, 1.5 / 1.9, 1 / 1.3])
    assert scales.net == 1.0 and scales.binding["long"] and not scales.binding["net"]


def test_net_limit_counts_a_symbol_that_cannot_trade() -> None:
    limits = ExposureLimits(gross=2.0, net=0.5, asset=1.0, long=2.0, short=2.0)
    scales = book_scales(np.array([0.0, 0.6]), limits, tradable=np.array([False, True]), held=np.array([0.2, 0.0]))
    assert scales.net == pytest.approx(0.5)  # 0.2 held + 0.5 x 0.6 = 0.5
    assert scales.per_symbol[0] == 1.0


def test_timeframe_scales_by_hand() -> None:
    contributions = np.array([[0.4, -0.4], [0.1, 0.2]])
    np.testing.assert_allclose(timeframe_scales(contributions, 0.5), [0.625, 1.0])


def test_drawdown_scale_by_hand_and_the_defender_tracks_its_equity() -> None:
    args = {"start": 0.05, "limit": 0.15, "floor": 0.25, "emergency": 0.25, "emergency_scale": 0.0}
    np.testing.assert_allclose(drawdown_scale(np.array([0.0, 0.05, 0.10, 0.2, 0.25, 0.3]), **args),
                               [1.0, 1.0, 0.625, 0.25, 0.25, 0.0])
    defender = DrawdownDefender(OrchestrationConfig())
    for r in (0.1, -0.1, -0.1):
        defender.update(r)
    assert defender.depth == pytest.approx(1 - 0.81)
    assert defender.scale() == pytest.approx(0.25) and not defender.in_emergency
    defender.update(-0.1)
    assert defender.in_emergency and defender.scale() == 0.0


def test_rolling_peak_forgets_highs_older_than_the_lookback() -> None:
    peaks = RollingMax(3)
    assert [peaks.push(v) for v in (1.0, 3.0, 2.0, 1.0, 0.5, 0.7)] == [1.0, 3.0, 3.0, 3.0, 2.0, 1.0]
    forever = RollingMax(0)
    assert [forever.push(v) for v in (1.0, 3.0, 2.0, 1.0)] == [1.0, 3.0, 3.0, 3.0]
    defender = DrawdownDefender(OrchestrationConfig(drawdown_lookback=2))
    for r in (-0.3, 0.0, 0.0):
        defender.update(r)
    assert defender.depth == pytest.approx(0.0)  # the starting capital has left the window


def test_book_volatility_forecast_is_the_models_median_with_fallbacks() -> None:
    forecasts = np.array([[0.01, np.nan, 3.0, np.nan], [0.03, np.nan, 1.0, 5.0], [0.02, np.nan, np.nan, np.nan],
                          [0.05, np.nan, 2.0, np.nan]])
    vol = book_vol_forecast(forecasts, realised=np.array([9.0, 0.7, 9.0, 9.0]), previous=np.full(4, -1.0),
                            tradable=np.array([True, True, True, False]))
    np.testing.assert_allclose(vol, [0.025, 0.7, 2.0, -1.0])


def test_volatility_scale_uses_the_asset_correlation() -> None:
    vol = np.array([0.01, 0.01])
    assert portfolio_volatility(np.array([0.5, 0.5]), vol, np.ones((2, 2))) == pytest.approx(0.01)
    assert portfolio_volatility(np.array([0.5, 0.5]), vol, np.eye(2)) == pytest.approx(0.01 / math.sqrt(2))
    assert volatility_scale(np.array([1.0]), np.array([0.02]), np.eye(1), 0.01) == pytest.approx(0.5)
    assert volatility_scale(np.array([1.0]), np.array([np.nan]), np.eye(1), 0.01) == 1.0


def test_final_scale_is_the_minimum_of_the_components() -> None:
    manager = UnifiedRiskManager(OrchestrationConfig(max_timeframe_exposure=1.0), periods_per_year=1.0)
    decision = manager.apply(np.array([[0.5], [0.25]]), drawdown_scale=0.6, correlation_scales=np.array([0.8, 0.4]),
                             vol_forecast=np.array([0.01]), asset_correlation=np.eye(1))
    np.testing.assert_allclose(decision.model_scale, [0.6, 0.4])
    np.testing.assert_allclose(decision.contributions[:, 0], [0.3, 0.1])
    assert decision.components["final"] == pytest.approx(0.4 / 0.75)


# -- regime ---------------------------------------------------------------------------------------------


def test_regime_features_tell_trend_from_range_and_high_from_normal_volatility() -> None:
    rng = np.random.default_rng(0)
    index = pd.bdate_range("2020-01-01", periods=320)
    steps = rng.normal(0, 0.01, 320)
    steps[-21:] *= 3
    trend = pd.Series(100 * np.exp(np.cumsum(0.01 + 0.001 * rng.normal(size=320))), index=index)
    config = OrchestrationConfig()
    features = regime_features(pd.Series(100 * np.exp(np.cumsum(steps)), index=index), config)
    assert features["vol_ratio"].iloc[-1] > config.vol_high_ratio
    assert features["vol_ratio"].iloc[: config.vol_long_window].isna().all()
    last = regime_features(trend, config).iloc[-1]
    assert classify_regime(last["trend_strength"], last["vol_ratio"], last["volume_ratio"], config).trend == "trend"
    assert book_regime(np.full((2, 3), np.nan), config).key == "range/medium"


def test_regime_features_are_point_in_time() -> None:
    rng = np.random.default_rng(1)
    index = pd.bdate_range("2020-01-01", periods=400)
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400))), index=index)
    volume = pd.Series(rng.uniform(1e6, 2e6, 400), index=index)
    full = regime_features(close, OrchestrationConfig(), volume)
    cut = regime_features(close.iloc[:300], OrchestrationConfig(), volume.iloc[:300])
    pd.testing.assert_frame_equal(full.iloc[:300], cut)


# -- events ---------------------------------------------------------------------------------------------


def test_event_log_frame_has_stable_columns_and_dtypes() -> None:
    empty = EventLog().to_frame()
    assert tuple(empty.columns) == EVENT_COLUMNS and len(empty) == 0
    log = EventLog()
    log.record(OrchestrationEvent(timestamp=pd.Timestamp("2020-01-02"), component="conflicts", kind="conflict",
                                  rule="partial", symbol="SPX", value=0.1, detail={"long": 0.3, "x": math.nan}))
    frame = log.to_frame()
    assert tuple(frame.columns) == EVENT_COLUMNS
    assert dict(frame.dtypes.astype(str)) == dict(empty.dtypes.astype(str))
    assert json.loads(str(frame.loc[0, "detail"])) == {"long": 0.3, "x": None}
    assert log.counts() == {"conflict": 1}


def test_limit_watch_records_transitions_only() -> None:
    log = EventLog()
    watch = LimitWatch(log)
    for day, binding in enumerate([False, True, True, True, False, False, True]):
        watch.observe(pd.Timestamp("2020-01-01") + pd.Timedelta(days=day), "exposure", "gross", binding=binding,
                      value=0.5, threshold=1.0)
    assert [e.kind for e in log] == ["risk_limit_activated", "risk_limit_released", "risk_limit_activated"]
    assert [e.timestamp.day for e in log] == [2, 5, 7]


# -- adapter, timeframes, config ------------------------------------------------------------------------


def _stream(n: int = 5) -> pd.DataFrame:
    index = pd.bdate_range("2021-01-04", periods=n)
    return pd.DataFrame({"direction": [1, 0, -1, np.nan, 1][:n], "size": [0.5, 0.0, 1.0, 0.3, 0.2][:n],
                         "confidence": [0.4, 0.1, 0.9, 0.2, 0.3][:n], "vol_forecast": 0.01,
                         "score": [0.4, 0.05, -0.9, 0.2, 0.3][:n]}, index=index)


def test_precomputed_model_serves_one_bar_at_a_time_in_order() -> None:
    stream = _stream()
    spec = timeframe_specs(OrchestrationConfig())["short"]
    model = PrecomputedTimeframeModel(stream, spec=spec, symbol="SPX")
    assert isinstance(model, TimeframeModel)
    first = model.signal(stream.index[0])
    assert first is not None
    assert (first.direction, first.size, first.confidence, first.expected_holding) == (1, 0.5, 0.4, 5)
    assert first.position == 0.5 and (first.min_holding, first.max_holding) == (1, 20)
    assert model.signal(stream.index[3]) is None  # NaN direction: no call
    assert model.signal(stream.index[3] + pd.Timedelta(hours=1)) is None  # no such bar
    with pytest.raises(SignalEngineError, match="time order"):
        model.signal(stream.index[1])


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("direction", 2.0, "-1, 0 or 1"), ("size", 1.5, r"in \[0, 1\]"), ("confidence", -0.1, r"in \[0, 1\]"),
])
def test_precomputed_model_rejects_out_of_range_streams(column: str, value: float, expected: str) -> None:
    stream = _stream()
    stream.loc[stream.index[2], column] = value
    spec = timeframe_specs(OrchestrationConfig())["long"]
    with pytest.raises(SignalEngineError, match=f"column '{column}'.*{expected}"):
        PrecomputedTimeframeModel(stream, spec=spec, symbol="SPX")


def test_signal_frame_from_backtest_signals() -> None:
    backtest = pd.DataFrame({"timestamp": ["2020-01-02", "2020-01-03"], "position": [-0.4, 0.0],
                             "confidence": [0.3, 0.05], "vol_forecast": [0.01, 0.012], "score": [-0.3, 0.05]})
    frame = signal_frame(backtest)
    assert list(frame.index) == list(pd.to_datetime(backtest["timestamp"]))
    np.testing.assert_allclose(frame["direction"], [-1, 0])
    np.testing.assert_allclose(frame["size"], [0.4, 0.0])


def test_timeframes_and_their_backtest_configs() -> None:
    specs = timeframe_specs(OrchestrationConfig())
    assert [(s.name, s.rank, s.horizon) for s in specs.values()] == [
        ("scalping", 0, 1), ("short", 1, 5), ("medium", 2, 20), ("long", 3, 60)]
    assert (specs["long"].min_holding, specs["long"].max_holding) == (15, 240)
    assert timeframe_run_config(RunConfig(), specs["medium"]).labels.horizon == 20


def test_config_for_hourly_bars_and_invalid_settings() -> None:
    hourly = OrchestrationConfig.for_periods_per_year(252 * 24)
    assert hourly.timeframe_horizons == (1, 6, 24, 120)
    assert hourly.correlation_window == 63 * 24 and hourly.min_allocation == 0.1
    assert OrchestrationConfig.for_periods_per_year(252.0) == OrchestrationConfig()
    with pytest.raises(ConfigError, match="conflict_strategy"):
        OrchestrationConfig(conflict_strategy="vote")
    with pytest.raises(ConfigError, match="emergency_scale"):
        OrchestrationConfig(drawdown_basis="account")
    with pytest.raises(ConfigError, match="drawdown_start"):
        OrchestrationConfig(drawdown_start=0.2, drawdown_limit=0.1)


def test_per_symbol_short_limits_are_read_from_a_mapping_and_bad_ones_name_the_setting() -> None:
    config = OrchestrationConfig(max_asset_exposure=0.8,  # a mapping, as a config file gives it
                                 max_asset_short_exposure={"spx": 0, "GOOG": 0.3, "EURUSD": 2})  # type: ignore[arg-type]
    assert config.max_asset_short_exposure == (("EURUSD", 2.0), ("GOOG", 0.3), ("SPX", 0.0))
    assert [config.asset_short_limit(s) for s in ("SPX", "goog", "EURUSD", "IXIC")] == [0.0, 0.3, 0.8, 0.8]
    assert OrchestrationConfig(max_asset_short_exposure=config.max_asset_short_exposure) == replace(
        config, max_asset_exposure=1.0)
    limits = ExposureLimits.from_config(config, ["IXIC", "SPX"])
    assert limits.asset_short == (0.8, 0.0)
    np.testing.assert_array_equal(limits.asset_limits(np.array([-0.5, 0.5])), [0.8, 0.8])
    np.testing.assert_array_equal(limits.asset_limits(np.array([-0.5, -0.5])), [0.8, 0.0])
    assert ExposureLimits.from_config(config, ["IXIC", "EURUSD"]).asset_short is None  # nothing tighter
    for bad, named in (({"SPX": -0.1}, "of SPX must be a number of 0 or more"),
                       ({"SPX": "none"}, "of SPX must be a number"), ({"SPX": True}, "of SPX must be a number"),
                       ({3: 0.0}, "needs symbols as names"), (0.0, "must map symbols to limits")):
        with pytest.raises(ConfigError, match=named):
            OrchestrationConfig(max_asset_short_exposure=bad)  # type: ignore[arg-type]


def test_book_scales_hold_a_short_limit_per_symbol_by_hand() -> None:
    limits = ExposureLimits(gross=3.0, net=3.0, asset=1.0, long=3.0, short=3.0, asset_short=(0.0, 0.25, 1.0))
    scales = book_scales(np.array([-0.6, -0.5, -0.5]), limits)
    np.testing.assert_allclose(scales.per_symbol, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(scales.asset_limit, [0.0, 0.25, 1.0])
    long_side = book_scales(np.array([0.6, 0.5, 0.5]), limits)  # the long side keeps the asset limit
    np.testing.assert_allclose(long_side.per_symbol, [1.0, 1.0, 1.0])
