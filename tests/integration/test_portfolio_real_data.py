"""The multi-asset backtest on real prices: one book per bar frequency, the orchestrated position in
``signals.csv``, the portfolio section, events as data, the monitoring report, and no look-ahead across symbols."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import load_config
from signal_engine.evaluation.backtest import SIGNAL_COLUMNS
from signal_engine.evaluation.portfolio import BOOK_STRATEGIES, COMPARISONS, SYMBOL_COMPARISONS
from signal_engine.orchestration import EVENT_COLUMNS
from signal_engine.pipeline import BacktestOutput, run_backtest
from tests.fixtures.configs import FEW_REFITS

pytestmark = pytest.mark.slow

TOL = 1e-9
# The first ROWS bars of GOOG (daily) and EURUSD (hourly): three refits of FEW_REFITS (bars 300, 800, 1,300) and
# 950 decided bars per book, enough for the books' events, bootstrap intervals and figures; the claims do not
# depend on the length, which set most of the time (GOOG's 2,148 bars and 2,500 of EURUSD's took twice as long).
ROWS = 1400


@pytest.fixture(scope="module")
def few_refits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "few-refits.yaml"
    path.write_text(FEW_REFITS)
    return path


@pytest.fixture(scope="module")
def two_books(goog_csv: Path, eurusd_csv: Path, few_refits: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> BacktestOutput:
    """The first ROWS bars of GOOG's daily bars and of EURUSD's hourly ones (two books)."""
    folder = tmp_path_factory.mktemp("prices")
    heads = [_head(source, folder, ROWS) for source in (goog_csv, eurusd_csv)]
    return run_backtest(heads, tmp_path_factory.mktemp("books"), load_config("quick", few_refits))


def _head(source: Path, folder: Path, rows: int) -> Path:
    path = folder / source.name
    path.write_text("".join(source.read_text().splitlines(keepends=True)[: rows + 1]))
    return path


def test_each_bar_frequency_is_its_own_book(two_books: BacktestOutput) -> None:
    portfolio = json.loads(two_books.metrics_path.read_text())["portfolio"]
    assert set(portfolio) == {"daily", "1h"}
    assert portfolio["daily"]["symbols"] == ["GOOG"] and portfolio["1h"]["symbols"] == ["EURUSD"]
    assert portfolio["daily"]["horizons"] == {"scalping": 1, "short": 5, "medium": 20, "long": 60}
    assert portfolio["1h"]["horizons"] == {"scalping": 1, "short": 6, "medium": 24, "long": 120}
    for book in portfolio.values():
        assert set(book["strategies"]) == set(BOOK_STRATEGIES)
        for metrics in book["strategies"].values():
            assert {"sharpe", "gross_sharpe", "cagr", "max_drawdown", "turnover", "cost_drag"} <= set(metrics)
        assert book["strategies"]["baseline_buy_and_hold"]["trades"] == 1
        assert sum(book["mean_allocation"].values()) == pytest.approx(1.0)
        assert set(book["synergy"]) >= {"sharpe_difference", "return_correlation"}
        assert set(book["alignment"]) == {"agreement", "with_book", "harmony_buckets"}
        assert book["trading"]["trades"] >= book["strategies"]["orchestrated"]["trades"]
    assert two_books.portfolio is not None
    for run in two_books.portfolio.books:
        net = sum(part["net_return"] for part in portfolio[run.name]["contribution"].values())
        assert net == pytest.approx(run.returns["orchestrated"].iloc[1:].mean() * run.periods_per_year, abs=1e-12)
        comparisons = book["comparisons"]
        assert set(comparisons) == {f"{a}_vs_{b}" for a, b in COMPARISONS}
        for name, c in comparisons.items():
            a, b = name.split("_vs_")
            assert c["difference"] == pytest.approx(book["strategies"][a]["sharpe"] - book["strategies"][b]["sharpe"])
            assert c["low"] <= c["high"] and 0.0 <= c["p_value"] <= 1.0 and c["block"] >= 1
    document = json.loads(two_books.metrics_path.read_text())
    per_symbol, data = document["per_symbol"], document["data"]["symbols"]
    assert data["GOOG"]["trend_expert"] == "trend_calibrated"  # moe.experts.trend
    assert data["EURUSD"]["trend_expert"] == "trend_linear"  # moe.experts.intraday_trend
    assert {"trend_linear", "baseline_majority"} <= set(per_symbol["EURUSD"]["trend"])
    for symbol, metrics in per_symbol.items():
        assert set(metrics["comparisons"]) == {f"{a}_vs_{b}" for a, b in SYMBOL_COMPARISONS}, symbol
        versus = metrics["comparisons"]["orchestrated_vs_baseline_buy_and_hold"]
        strategies = metrics["strategies"]
        assert versus["difference"] == pytest.approx(
            strategies["orchestrated"]["sharpe"] - strategies["baseline_buy_and_hold"]["sharpe"], abs=1e-9)


def test_signals_carry_the_orchestrated_position(two_books: BacktestOutput) -> None:
    signals = pd.read_csv(two_books.signals_path)
    assert tuple(signals.columns) == SIGNAL_COLUMNS
    assert signals["symbol"].value_counts().to_dict() == {"GOOG": ROWS - 450, "EURUSD": ROWS - 450}
    assert signals["position"].between(-1, 1).all()
    assert two_books.portfolio is not None
    for book in two_books.portfolio.books:
        for symbol in book.symbols:
            rows = signals[signals["symbol"] == symbol]
            expected = book.result.positions[symbol].reindex(pd.to_datetime(rows["timestamp"]))
            np.testing.assert_allclose(rows["position"].to_numpy(), expected.to_numpy(), rtol=1e-9)
        allocations = book.result.allocations.to_numpy()
        assert np.all(allocations >= book.config.min_allocation - TOL)
        assert np.all(allocations <= book.config.max_allocation + TOL)
        assert np.all(np.abs(np.diff(allocations, axis=0)) <= book.config.max_allocation_change + TOL)
        assert np.all(np.abs(book.result.positions.to_numpy()).sum(axis=1) <= book.config.max_gross_exposure + TOL)
    strategies = json.loads(two_books.metrics_path.read_text())["per_symbol"]["GOOG"]["strategies"]
    assert {"moe", "orchestrated", "timeframe_scalping", "timeframe_long", "baseline_buy_and_hold"} <= set(strategies)
    assert strategies["timeframe_short"] == strategies["moe"]  # the short model is the MoE baseline's run


def test_events_are_kept_as_a_table(two_books: BacktestOutput) -> None:
    assert two_books.events_path is not None
    events = pd.read_csv(two_books.events_path)
    assert tuple(events.columns) == ("book", *EVENT_COLUMNS)
    portfolio = json.loads(two_books.metrics_path.read_text())["portfolio"]
    for name, book in portfolio.items():
        assert (events["book"] == name).sum() == sum(book["event_counts"].values())
    assert {"allocation_change", "conflict"} <= set(events["kind"])
    assert all(isinstance(json.loads(d), dict) for d in events["detail"])


def test_report_shows_the_monitoring_of_each_book(two_books: BacktestOutput) -> None:
    report = two_books.report_path.read_text()
    for text in ("Portfolio: daily book (GOOG)", "Portfolio: 1h book (EURUSD)", "risk-limit activations",
                 "Sharpe differences: could the ranking be noise?", "orchestrated - baseline_buy_and_hold",
                 "conflict events", "timeframes_equal_weight", "orchestrated"):
        assert text in report
    for book in ("daily book", "1h book"):
        for figure in ("synergy", "allocation history", "correlation heatmap", "risk-limit scales",
                       "model contribution", "signal alignment", "trade clustering"):
            assert f'alt="{book} {figure}" src="data:image/png;base64,' in report


def test_truncating_every_file_after_t_changes_no_orchestrated_row_at_or_before_t(
    goog_csv: Path, spx_csv: Path, few_refits: Path, tmp_path: Path
) -> None:
    """Two daily symbols in one book: the book's decisions at t use both symbols' data up to t only (GOOG held
    long or flat by its own short limit, SPX free to go short). Both run from GOOG's start (SPX from 2005) to
    LAST: GOOG's 1,414 bars and SPX's 1,320 each refit at their bar 1,300 (October 2009, March 2010), after the cut,
    which falls inside the block of their refits at bar 800 (late 2007, early 2008). The years after LAST only
    lengthened the runs."""
    last = "2010-03-31"
    spx = pd.read_csv(spx_csv)
    (tmp_path / "SPX.csv").write_text(spx[(spx["Date"] >= "2005-01-01") & (spx["Date"] <= last)].to_csv(index=False))
    goog = pd.read_csv(goog_csv)
    (tmp_path / "GOOG.csv").write_text(goog[goog["Date"] <= last].to_csv(index=False))
    config = load_config("quick", few_refits)
    two = {"timeframes": ("short", "long"), "max_asset_short_exposure": {"GOOG": 0.0}}
    full = run_backtest([tmp_path / "GOOG.csv", tmp_path / "SPX.csv"], tmp_path / "full", config, orchestration=two)
    cut = "2008-12-31"
    for name in ("GOOG.csv", "SPX.csv"):
        frame = pd.read_csv(tmp_path / name)
        (tmp_path / f"cut-{name}").write_text(frame[frame["Date"] <= cut].to_csv(index=False))
    short = run_backtest([tmp_path / "cut-GOOG.csv", tmp_path / "cut-SPX.csv"], tmp_path / "short", config,
                         symbols=["GOOG", "SPX"], orchestration=two)
    before = pd.read_csv(full.signals_path)
    after = pd.read_csv(short.signals_path)
    assert len(after) > 1000 and after["timestamp"].max() == cut and before["timestamp"].max() == last
    expected = before[before["timestamp"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(after, expected)
    by_symbol = before.groupby("symbol")["position"]
    assert by_symbol.min()["GOOG"] >= 0.0 and by_symbol.min()["SPX"] < 0.0
