"""The shipped real series: the evaluation series of make demo and the development series defaults are chosen on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.data.datasets import (
    DAILY_PANEL,
    DATASETS,
    DEVELOPMENT_DATASETS,
    DEVELOPMENT_END,
    Dataset,
    dataset_costs,
    export_dataset,
)
from signal_engine.errors import SignalEngineError


def _span(dataset: Dataset) -> tuple[pd.Timestamp, pd.Timestamp]:
    index = pd.DatetimeIndex(dataset.load().index)
    return index[0], index[-1]


def test_every_development_series_is_outside_the_evaluation_series_of_its_bar_frequency() -> None:
    for symbol, development in DEVELOPMENT_DATASETS.items():
        if symbol in DAILY_PANEL:
            continue  # other markets in the same years: the next test
        first, last = _span(development)
        same_frequency = [d for d in DATASETS.values() if d.timeframe == development.timeframe]
        assert same_frequency, symbol
        for evaluation in same_frequency:
            begins, ends = _span(evaluation)
            assert last < begins or first > ends, (symbol, evaluation.symbol)


# The daily panel's markets: none trades on an evaluation series' exchange but the NASDAQ-100 (the IXIC's)
PANEL_MARKETS = {"NDX": "US equities", "N225": "Japanese equities", "JKSE": "Indonesian equities",
                 "BTCUSD-BITSTAMP": "crypto", "LTCUSD-BITSTAMP": "crypto", "EURUSD-BOC": "currencies",
                 "GBPUSD-BOC": "currencies"}


def test_the_us_equity_panel_series_ends_before_every_daily_evaluation_test_span_begins() -> None:
    from signal_engine.config import PROFILES

    assert set(PANEL_MARKETS) == set(DAILY_PANEL)
    first_test_bar = min(PROFILES[p].walk_forward.test_start for p in PROFILES)
    for evaluation in (d for d in DATASETS.values() if d.timeframe == "1d"):
        test_begins = pd.DatetimeIndex(evaluation.load().index)[first_test_bar]
        for symbol in (s for s, market in PANEL_MARKETS.items() if market == "US equities"):
            assert _span(DAILY_PANEL[symbol])[1] < test_begins, (symbol, evaluation.symbol)
    assert _span(DAILY_PANEL["NDX"])[1] == pd.Timestamp("2001-04-30")


def test_the_daily_development_series_ends_before_every_evaluation_series_begins() -> None:
    end = pd.Timestamp(DEVELOPMENT_END)
    assert _span(DEVELOPMENT_DATASETS["MSFT"])[1] <= end
    for symbol, dataset in DATASETS.items():
        assert _span(dataset)[0] > end, symbol


def test_the_hourly_development_series_exports_real_coinbase_bitcoin_bars(tmp_path: Path) -> None:
    series = load_prices(export_dataset("BTCUSD", tmp_path), "BTCUSD")
    bars = series.bars
    assert series.intraday
    assert (bars.index[0], bars.index[-1]) == (pd.Timestamp("2018-02-08 00:00"), pd.Timestamp("2019-10-17 09:00"))
    assert len(bars) == 14794
    assert (bars.index.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()  # around the clock, no gaps
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert bars["close"].iloc[0] == pytest.approx(7709.51)
    assert bars["close"].min() == pytest.approx(3139.83)  # the December 2018 low
    assert bars["close"].iloc[-1] == pytest.approx(8035.88)
    assert dataset_costs()["BTCUSD"] == 8.0


def test_the_development_series_exports_real_microsoft_bars(tmp_path: Path) -> None:
    series = load_prices(export_dataset("MSFT", tmp_path), "MSFT")
    bars = series.bars
    assert (bars.index[0], bars.index[-1]) == (pd.Timestamp("1986-03-13"), pd.Timestamp("1998-12-31"))
    assert len(bars) == 3237
    assert list(bars.columns[:5]) == ["open", "high", "low", "close", "volume"]
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1) - 1e-9).all()
    # the adjusted close rose from 7.5 cents to 26 dollars: the 1990s bull market the study is chosen on
    assert bars["close"].iloc[0] == pytest.approx(0.07533)
    assert bars["close"].iloc[-1] == pytest.approx(26.088)


def test_the_second_hourly_development_series_exports_real_apple_session_bars(tmp_path: Path) -> None:
    series = load_prices(export_dataset("AAPL", tmp_path), "AAPL")
    bars = series.bars
    assert series.intraday
    assert (bars.index[0], bars.index[-1]) == (pd.Timestamp("2024-08-06 13:30"), pd.Timestamp("2026-08-06 13:30"))
    assert len(bars) == 3479
    spacing = bars.index.to_series().diff().dropna()
    assert (spacing == pd.Timedelta(hours=1)).mean() > 0.8  # seven bars a session, then the overnight gap
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert bars["close"].iloc[0] == pytest.approx(204.890106)
    assert bars["close"].iloc[-1] == pytest.approx(313.5)
    assert dataset_costs()["AAPL"] == 7.0


def test_unknown_dataset_lists_both_catalogues(tmp_path: Path) -> None:
    with pytest.raises(SignalEngineError, match="expected one of SPX, IXIC, GOOG, EURUSD, MSFT, BTCUSD, AAPL, NDX, "):
        export_dataset("TSLA", tmp_path)


def test_the_datasets_command_exports_the_development_series_on_request(tmp_path: Path) -> None:
    from signal_engine.cli import main

    assert main(["datasets", "--out", str(tmp_path / "dev"), "--development"]) == 0
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == [
        "AAPL.csv", "BTCUSD-BITSTAMP.csv", "BTCUSD.csv", "EURUSD-BOC.csv", "GBPUSD-BOC.csv", "JKSE.csv",
        "LTCUSD-BITSTAMP.csv", "MSFT.csv", "N225.csv", "NDX.csv"]
    assert len(load_prices(tmp_path / "dev" / "MSFT.csv", "MSFT").bars) == 3237
