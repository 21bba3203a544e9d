"""The shipped real series: the evaluation series of make demo and the development series defaults are chosen on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.data.datasets import DATASETS, DEVELOPMENT_DATASETS, DEVELOPMENT_END, export_dataset
from signal_engine.errors import SignalEngineError


def test_the_development_series_ends_before_every_evaluation_series_begins() -> None:
    end = pd.Timestamp(DEVELOPMENT_END)
    for symbol, dataset in DEVELOPMENT_DATASETS.items():
        bars = dataset.load()
        assert bars.index[-1] <= end, symbol
    for symbol, dataset in DATASETS.items():
        assert pd.DatetimeIndex(dataset.load().index)[0] > end, symbol


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


def test_unknown_dataset_lists_both_catalogues(tmp_path: Path) -> None:
    with pytest.raises(SignalEngineError, match="expected one of SPX, IXIC, GOOG, EURUSD, MSFT"):
        export_dataset("AAPL", tmp_path)


def test_the_datasets_command_exports_the_development_series_on_request(tmp_path: Path) -> None:
    from signal_engine.cli import main

    assert main(["datasets", "--out", str(tmp_path / "dev"), "--development"]) == 0
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["MSFT.csv"]
    assert len(load_prices(tmp_path / "dev" / "MSFT.csv", "MSFT").bars) == 3237
