"""The daily development panel shipped in signal_engine/data/files/development: files, loader and close-only bars."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.data.datasets import (
    DAILY_PANEL,
    DEVELOPMENT_DATASETS,
    dataset_costs,
    export_dataset,
    panel_bytes,
    panel_file,
)
from signal_engine.data.loader import close_only

FOLDER = resources.files("signal_engine.data").joinpath("files", "development")
SHIPPED = ("NDX", "N225", "JKSE", "BTCUSD-BITSTAMP", "LTCUSD-BITSTAMP", "EURUSD-BOC", "GBPUSD-BOC")
LEFT_OUT = ("JFC_1d.csv", "USDJPY-ECDAT_1d.csv", "GBPUSD-ECDAT_1d.csv")


def manifest() -> dict[str, dict[str, object]]:
    entries = json.loads(FOLDER.joinpath("manifest.json").read_text(encoding="utf-8"))
    return {entry["file"]: entry for entry in entries if entry.get("file")}


def test_the_panel_ships_the_permissively_licensed_series_and_leaves_out_the_gpl_and_ambiguous_ones() -> None:
    assert tuple(DAILY_PANEL) == SHIPPED
    assert all(symbol in DEVELOPMENT_DATASETS and DAILY_PANEL[symbol].timeframe == "1d" for symbol in SHIPPED)
    shipped = sorted(p.name for p in FOLDER.iterdir() if p.name.endswith(".csv.gz"))
    assert shipped == sorted(panel_file(symbol) for symbol in SHIPPED)
    assert set(manifest()) == {f"{symbol}_1d.csv" for symbol in SHIPPED} | set(LEFT_OUT)
    readme = FOLDER.joinpath("README.md").read_text(encoding="utf-8")
    for name in ("USDJPY-ECDAT", "GBPUSD-ECDAT", "JFC", "GPL-3.0", "left out"):
        assert name in readme


@pytest.mark.parametrize("symbol", SHIPPED)
def test_each_file_is_the_panels_csv_byte_for_byte(symbol: str) -> None:
    entry = manifest()[f"{symbol}_1d.csv"]
    data = panel_bytes(symbol)
    assert hashlib.sha256(data).hexdigest() == entry["output_sha256"]
    assert data.startswith(b"Date,Open,High,Low,Close,Volume\n")
    assert data.count(b"\n") == int(str(entry["rows"])) + 1


@pytest.mark.parametrize("symbol", SHIPPED)
def test_the_datasets_command_writes_the_panels_csv_unchanged(symbol: str, tmp_path: Path) -> None:
    path = export_dataset(symbol, tmp_path)
    assert path.name == f"{symbol}.csv"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest()[f"{symbol}_1d.csv"]["output_sha256"]


def test_the_loader_reads_each_series_as_valid_daily_bars_with_its_span(tmp_path: Path) -> None:
    spans = {"NDX": ("1990-01-02", "2001-04-30", 2862), "N225": ("1990-01-04", "2001-05-01", 2794),
             "JKSE": ("1997-07-01", "2001-05-01", 946), "BTCUSD-BITSTAMP": ("2014-11-28", "2020-01-16", 1851),
             "LTCUSD-BITSTAMP": ("2017-06-25", "2020-01-16", 921), "EURUSD-BOC": ("2017-01-03", "2023-01-27", 1516),
             "GBPUSD-BOC": ("2017-01-03", "2023-01-27", 1516)}
    for symbol, (first, last, rows) in spans.items():
        series = load_prices(export_dataset(symbol, tmp_path), symbol)
        bars = series.bars
        assert list(bars.columns) == ["open", "high", "low", "close", "volume"], symbol
        assert (str(bars.index[0].date()), str(bars.index[-1].date()), len(bars)) == (first, last, rows), symbol
        assert not series.intraday and (bars.index.to_series().diff().dropna() > pd.Timedelta(0)).all()
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all(), symbol
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all(), symbol
    # a few known prices: NDX's first close, BTC's December 2017 high, the euro's first BoC cross
    assert load_prices(export_dataset("NDX", tmp_path)).bars["close"].iloc[0] == pytest.approx(227.725006)
    btc = load_prices(export_dataset("BTCUSD-BITSTAMP", tmp_path)).bars
    assert btc.loc["2017-12", "high"].max() == pytest.approx(19666.0)
    euro = load_prices(export_dataset("EURUSD-BOC", tmp_path)).bars
    assert euro["close"].iloc[0] == pytest.approx(1.040045)


def test_the_bank_of_canada_crosses_are_marked_close_only_and_the_rest_are_not(tmp_path: Path) -> None:
    for symbol, dataset in DAILY_PANEL.items():
        series = load_prices(export_dataset(symbol, tmp_path), symbol)
        assert dataset.close_only == series.close_only == symbol.endswith("-BOC"), symbol
        if dataset.close_only:
            assert (series.bars["volume"] == 0).all()


def test_costs_follow_the_protocol_equities_5_crypto_8_currencies_1() -> None:
    costs = dataset_costs()
    assert {s: costs.get(s, 5.0) for s in SHIPPED} == {
        "NDX": 5.0, "N225": 5.0, "JKSE": 5.0, "BTCUSD-BITSTAMP": 8.0, "LTCUSD-BITSTAMP": 8.0,
        "EURUSD-BOC": 1.0, "GBPUSD-BOC": 1.0}
    assert costs["BTCUSD"] == costs["BTCUSD-BITSTAMP"] and costs["EURUSD"] == costs["EURUSD-BOC"]


def _bars(close: np.ndarray, spread: float) -> pd.DataFrame:
    index = pd.bdate_range("2001-01-01", periods=len(close))
    return pd.DataFrame({"open": close, "high": close * (1 + spread), "low": close * (1 - spread), "close": close},
                        index=index)


def test_close_only_means_every_bar_flat() -> None:
    close = np.array([1.0, 1.1, 1.05, 1.2])
    assert close_only(_bars(close, 0.0))
    assert not close_only(_bars(close, 0.01))
    one_real_bar = _bars(close, 0.0)
    one_real_bar.iloc[2, 1] = 1.06  # a single bar with a high above its close
    assert not close_only(one_real_bar)
    assert not close_only(_bars(close, 0.0).iloc[:0])


def test_on_close_only_bars_har_and_boosting_forecast_from_squared_returns_alone() -> None:
    from signal_engine.experts.boosted_volatility import BoostedLogVariance
    from signal_engine.experts.har import HarVolatility
    from signal_engine.experts.realised import usable_measures

    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    flat, ranged = _bars(close, 0.0), _bars(close, 0.004)
    target = np.append(np.diff(np.log(close)) ** 2, np.nan)
    everything = ("garman_klass", "parkinson", "squared_return")
    assert usable_measures(everything, flat) == ("squared_return",)
    assert usable_measures(("parkinson",), flat) == ("squared_return",)
    assert usable_measures(everything, ranged) == everything

    har = HarVolatility().fit(flat, target)
    assert har.fitted_measures == ("squared_return",)
    close_to_close = HarVolatility(measures=("squared_return",)).fit(flat, target)
    np.testing.assert_allclose(har.predict_variance(flat), close_to_close.predict_variance(flat), rtol=1e-12)
    assert HarVolatility().fit(ranged, target).fitted_measures == everything

    boosted = BoostedLogVariance(n_estimators=5).fit(flat, target)
    assert boosted.measures_ == ("squared_return",)
    assert np.isfinite(boosted.predict_variance(flat)).all()
