"""The monitoring section of the report, from a synthetic orchestrated book: tables agree with the event log."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from signal_engine.evaluation.portfolio import COMPARISONS, book_comparisons
from signal_engine.orchestration import OrchestrationConfig, OrchestrationResult, orchestrate
from signal_engine.report.html import _image, metric_table
from signal_engine.report.monitoring import activation_table, book_section, comparison_table, conflict_table
from tests.unit.test_portfolio import _closes, _streams


@dataclass
class _FakeBook:
    name: str
    symbols: tuple[str, ...]
    result: OrchestrationResult
    returns: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    comparisons: dict[str, dict[str, float]] = field(default_factory=dict)
    periods_per_year: float = 252.0
    cost_bps: dict[str, float] = field(default_factory=lambda: {"A": 5.0, "B": 5.0})


@pytest.fixture(scope="module")
def result() -> OrchestrationResult:
    closes = {"A": _closes(360, 3), "B": _closes(360, 4)}
    config = OrchestrationConfig(warmup_bars=20, allocation_update_every=10, correlation_window=30,
                                 drawdown_start=0.01, drawdown_limit=0.02, emergency_drawdown=0.03)
    return orchestrate({s: _streams(c, 80) for s, c in closes.items()}, closes, config, 252.0)


def test_activation_and_conflict_tables_count_the_event_log(result: OrchestrationResult) -> None:
    events = result.events
    activations = activation_table(result)
    fired = events["kind"].isin(("risk_limit_activated", "emergency_deleveraging", "correlation_warning"))
    assert activations["activations"].sum() == fired.sum() > 0
    drawdown = activations[(activations["component"] == "drawdown") & (activations["rule"] == "drawdown")]
    assert drawdown["bars_scaled_share"].iloc[0] == pytest.approx((result.risk_scales["drawdown"] < 1).mean())
    conflicts = conflict_table(result)
    assert conflicts["conflicts"].sum() == (events["kind"] == "conflict").sum() > 0
    assert (conflicts["mean_abs_net_after"] <= conflicts["mean_abs_net_before"] + 1e-12).all()


def test_book_section_draws_every_monitoring_figure(result: OrchestrationResult) -> None:
    returns = result.returns.rename(columns={"sum_of_parts": "timeframes_equal_weight"})
    # stand-ins for the strategies the book compares (the report draws what it is given)
    returns = returns.assign(moe=returns["model_short"], baseline_buy_and_hold=returns["coordinated"])
    metrics = {name: {"sharpe": float(np.mean(returns[name]))} for name in ("orchestrated", "timeframes_equal_weight")}
    comparisons = book_comparisons(returns, 252.0, seed=0)
    html = book_section(_FakeBook("daily", result.symbols, result, returns, metrics, comparisons), _image,
                        metric_table)
    for figure in ("synergy", "allocation history", "correlation heatmap", "risk-limit scales", "model contribution",
                   "signal alignment", "trade clustering"):
        assert f'alt="daily book {figure}" src="data:image/png;base64,' in html
    assert "risk-limit activations" in html and "latest conflicts" in html
    assert "each timeframe model's contribution" in html and "unanimous (1)" in html
    assert "long against short positions" in html
    table = comparison_table(comparisons)
    assert table["comparison"].tolist() == [f"{a} - {b}" for a, b in COMPARISONS]
    assert "orchestrated - timeframes_equal_weight" in html and "90% interval" in html
