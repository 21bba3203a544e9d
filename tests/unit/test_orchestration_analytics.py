"""The book analyses (seed 004 section 6): model contributions add up to the book, alignment frequency,
the impact of alignment on performance, and trade clustering, on a hand-worked book and an orchestrated one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.portfolio import book_returns
from signal_engine.orchestration import EVENT_COLUMNS, OrchestrationConfig, OrchestrationResult, orchestrate
from signal_engine.orchestration.analytics import (
    HARMONY_LABELS,
    agreement_matrix,
    analytics_section,
    harmony_buckets,
    model_attribution,
    side_split,
    trade_clustering,
    trade_log,
    with_book,
)
from tests.unit.test_orchestration_runner import _market

PPY = 252.0


def _frame(values: dict[str, list[float]], index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame(values, index=index).rename_axis("timestamp")


@pytest.fixture()
def worked() -> OrchestrationResult:
    """One symbol, two models, five bars, every number worked out by hand in the tests below."""
    index = pd.bdate_range("2020-01-06", periods=5)
    models = ("m1", "m2")
    empty = _frame({m: [0.5] * 5 for m in models}, index)
    return OrchestrationResult(
        symbols=("A",), models=models,
        positions=_frame({"A": [0.2, 0.1, -0.3, -0.3, 0.0]}, index),
        bars=_frame({"A": [True] * 5}, index).astype(bool),
        contributions={"A": _frame({"m1": [0.1, 0.1, -0.15, -0.15, 0.0], "m2": [0.1, 0.0, -0.15, -0.15, 0.0]}, index)},
        unmanaged={"A": _frame({"m1": [0.5, 0.5, -0.5, 0.0, 0.5], "m2": [0.5, -0.5, -0.5, 0.5, 0.0]}, index)},
        allocations=empty, target_allocations=empty, risk_scales=_frame({"final": [1.0] * 5}, index),
        harmony=_frame({"A": [1.0, 0.0, 1.0, 0.5, 0.9]}, index),
        regimes=_frame({"trend": [0.0] * 5}, index), returns=_frame({"orchestrated": [0.0] * 5}, index),
        asset_returns=_frame({"A": [math.nan, 0.01, -0.02, 0.03, -0.01]}, index),
        events=pd.DataFrame(columns=list(EVENT_COLUMNS)), event_counts={},
        performance=pd.DataFrame(index=list(models)),
    )


def test_each_model_earns_its_part_and_shares_the_costs_of_what_it_traded(worked: OrchestrationResult) -> None:
    attribution = model_attribution(worked, {"A": 10.0})
    np.testing.assert_allclose(attribution.gross["m1"], [0.0, 0.001, -0.002, -0.0045, 0.0015], atol=1e-15)
    np.testing.assert_allclose(attribution.gross["m2"], [0.0, 0.001, 0.0, -0.0045, 0.0015], atol=1e-15)
    # traded at bar 1: only m2's part moved, so m2 pays all of it; at bar 2 the parts moved 0.25 and 0.15
    np.testing.assert_allclose(attribution.costs["m1"], [0.0, 1e-4, 0.0, 2.5e-4, 0.0], atol=1e-15)
    np.testing.assert_allclose(attribution.costs["m2"], [0.0, 1e-4, 1e-4, 1.5e-4, 0.0], atol=1e-15)
    book = book_returns(worked.positions, worked.asset_returns, np.array([10.0]))
    np.testing.assert_allclose(attribution.net.sum(axis=1), book, atol=1e-15)
    summary = attribution.summary(PPY)
    assert summary["m1"]["net_return"] == pytest.approx(attribution.net["m1"].iloc[1:].mean() * PPY)
    assert sum(s["share_of_net"] for s in summary.values()) == pytest.approx(1.0)


def test_attribution_names_a_symbol_without_a_cost(worked: OrchestrationResult) -> None:
    with pytest.raises(KeyError, match=r"\['A'\]"):
        model_attribution(worked, {"B": 1.0})


def test_agreement_counts_bars_where_both_models_have_a_view(worked: OrchestrationResult) -> None:
    agreement = agreement_matrix(worked)
    values = agreement.loc[["m1", "m2"], ["m1", "m2"]].to_numpy(dtype=float)
    assert values[0, 1] == values[1, 0] == pytest.approx(2 / 3)
    assert values[0, 0] == values[1, 1] == pytest.approx(4 / 5)
    sided = with_book(worked)
    assert sided["m1"] == pytest.approx(1.0) and sided["m2"] == pytest.approx(0.5)


def test_harmony_buckets_split_the_books_gross_pnl(worked: OrchestrationResult) -> None:
    buckets = harmony_buckets(worked, PPY).set_index("harmony")
    assert list(buckets.index) == list(HARMONY_LABELS)
    assert buckets["positions"].tolist() == [1, 1, 0, 2]
    unanimous = buckets.loc[HARMONY_LABELS[3]]
    assert unanimous["hit_rate"] == pytest.approx(0.5)
    assert unanimous["return_per_exposure"] == pytest.approx((0.002 - 0.009) / 0.5 * PPY)
    assert unanimous["share_of_gross_pnl"] == pytest.approx(-0.007 / -0.006)
    assert buckets["share_of_gross_pnl"].sum() == pytest.approx(1.0)
    assert math.isnan(buckets["hit_rate"].to_numpy(dtype=float)[list(buckets.index).index(HARMONY_LABELS[2])])


def test_the_side_split_puts_longs_and_shorts_apart(worked: OrchestrationResult) -> None:
    sides = side_split(worked, PPY).set_index("side")
    assert sides["positions"].tolist() == [2, 2]
    assert sides.loc["long", "return_per_exposure"] == pytest.approx((0.002 - 0.002) / 0.3 * PPY)
    assert sides.loc["short", "share_of_gross_pnl"] == pytest.approx((-0.009 + 0.003) / -0.006)
    assert sides.loc["short", "hit_rate"] == pytest.approx(0.5)


def test_trades_are_every_position_change_and_their_spacing(worked: OrchestrationResult) -> None:
    log = trade_log(worked)
    np.testing.assert_allclose(log["traded"], [0.2, -0.1, -0.4, 0.3])
    np.testing.assert_allclose(log["position"], [0.2, 0.1, -0.3, 0.0])
    clustering = trade_clustering(worked, PPY)
    assert clustering["trades"] == 4
    assert clustering["mean_bars_between_trades"] == pytest.approx(4 / 3)
    assert clustering["share_of_trades_one_bar_apart"] == pytest.approx(2 / 3)
    assert clustering["share_of_trading_bars_multi_symbol"] == 0.0
    assert clustering["max_traded_in_one_bar"] == pytest.approx(0.4)
    assert clustering["mean_traded_per_trading_bar"] == pytest.approx(0.25)


def test_on_an_orchestrated_book_the_parts_add_up_to_the_orchestrators_own_accounting() -> None:
    signals, closes = _market()
    costs = {"A": 5.0, "B": 12.0}
    result = orchestrate(signals, closes, OrchestrationConfig(), PPY, cost_bps=costs)
    attribution = model_attribution(result, costs)
    np.testing.assert_allclose(attribution.net.sum(axis=1), result.returns["orchestrated"], atol=1e-12)
    section = analytics_section(result, costs, PPY)
    assert set(section) == {"contribution", "alignment", "sides", "trading"}
    net = sum(m["net_return"] for m in section["contribution"].values())
    assert net == pytest.approx(result.returns["orchestrated"].iloc[1:].mean() * PPY)
    buckets = pd.DataFrame(section["alignment"]["harmony_buckets"])
    assert buckets["share_of_gross_pnl"].sum() == pytest.approx(1.0)
    assert buckets["positions"].sum() == sum(
        int(((result.positions[s].abs() > 1e-9) & result.bars[s].shift(-1, fill_value=False)).sum())
        for s in result.symbols)
    agreement = pd.DataFrame(section["alignment"]["agreement"])
    np.testing.assert_allclose(agreement.to_numpy(), agreement.to_numpy().T)
    assert section["trading"]["trades"] == len(trade_log(result)) > 0
