"""Export of stored bars as the training workflow's input: stored bars -> bars/<timeframe>/<SYMBOL>.csv -> the same
bars through the loader the prepare job uses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, Storage, bootstrap
from signal_engine.data.loader import load_prices
from signal_engine.errors import ConfigError
from signal_engine.storage.export import bars_key, export_bars
from signal_engine.storage.ingest import ingest_prices
from signal_engine.storage.records import Bar


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/store.db", object_store=str(tmp_path / "datasets")))


def _bar(day: int, close: float, volume: float | None = 1000.0, symbol: str = "MSFT") -> Bar:
    return Bar(symbol, "1d", datetime(2024, 1, day), close, close * 1.01, close * 0.99, close, volume, None, "test")


def test_stored_daily_bars_read_back_from_the_exported_file_as_stored(goog_csv: Path, storage: Storage,
                                                                      tmp_path: Path) -> None:
    ingest_prices(goog_csv, storage.prices)
    result = export_bars(storage.prices, storage.objects, ["goog"], "1d")
    (series,) = result.exported
    assert (series.key, series.bars, series.volume, result.missing) == ("bars/1d/GOOG.csv", 2148, True, {})
    exported = load_prices(tmp_path / "datasets" / "bars" / "1d" / "GOOG.csv", "GOOG")
    pd.testing.assert_frame_equal(exported.bars, storage.prices.read_bars("GOOG", "1d").bars, check_names=False,
                                  check_exact=False, rtol=1e-12)
    assert storage.objects.get("bars/1d/GOOG.csv").startswith(b"Date,Open,High,Low,Close,Volume\n2004-08-19,")


def test_intraday_bars_keep_their_times(eurusd_csv: Path, storage: Storage, tmp_path: Path) -> None:
    ingest_prices(eurusd_csv, storage.prices)
    (series,) = export_bars(storage.prices, storage.objects, ["EURUSD"], "1h").exported
    exported = load_prices(tmp_path / "datasets" / series.key)
    assert exported.intraday and len(exported) == 5000
    pd.testing.assert_frame_equal(exported.bars, storage.prices.read_bars("EURUSD", "1h").bars, check_names=False,
                                  check_exact=False, rtol=1e-12)


def test_a_symbol_without_bars_is_reported_and_its_previous_file_kept(goog_csv: Path, storage: Storage) -> None:
    ingest_prices(goog_csv, storage.prices)
    storage.objects.put(bars_key("MSFT", "1d"), b"Date,Open,High,Low,Close\n2024-01-02,1,2,1,2\n")
    result = export_bars(storage.prices, storage.objects, ["MSFT", "GOOG"], "1d")
    assert [s.symbol for s in result.exported] == ["GOOG"]
    assert list(result.missing) == ["MSFT"] and "no bars stored" in result.missing["MSFT"]
    assert not result.complete
    assert storage.objects.get("bars/1d/MSFT.csv") == b"Date,Open,High,Low,Close\n2024-01-02,1,2,1,2\n"
    assert result.as_dict()["missing"] == result.missing


def test_bars_of_another_timeframe_do_not_count(goog_csv: Path, storage: Storage) -> None:
    ingest_prices(goog_csv, storage.prices)
    result = export_bars(storage.prices, storage.objects, ["GOOG"], "1h")
    assert (result.exported, list(result.missing)) == ((), ["GOOG"])
    assert list(storage.objects.keys("bars/")) == []


def test_bars_the_loader_would_reject_are_reported_not_written(storage: Storage) -> None:
    storage.prices.write_bars([_bar(2, 370.0), _bar(3, -1.0), _bar(4, 372.0)])
    storage.objects.put("bars/1d/MSFT.csv", b"previous")
    result = export_bars(storage.prices, storage.objects, ["MSFT"], "1d")
    assert "not positive" in result.missing["MSFT"] and "data line 2" in result.missing["MSFT"]
    assert storage.objects.get("bars/1d/MSFT.csv") == b"previous"


def test_volume_is_left_out_when_a_bar_lacks_it(storage: Storage, tmp_path: Path) -> None:
    storage.prices.write_bars([_bar(2, 370.0), _bar(3, 371.0, volume=None), _bar(4, 372.0)])
    (series,) = export_bars(storage.prices, storage.objects, ["MSFT"]).exported
    loaded = load_prices(tmp_path / "datasets" / series.key)
    assert (series.volume, loaded.has_volume, len(loaded), series.first) == (False, False, 3, "2024-01-02 00:00:00")
    assert loaded.bars["close"].tolist() == [370.0, 371.0, 372.0]


@pytest.mark.parametrize(("symbols", "timeframe", "named"), [
    ([], "1d", "no symbols"), ([" "], "1d", "no symbols"), (["../etc"], "1d", "../ETC"), (["SPY"], "1 d", "'1 d'"),
])
def test_names_that_cannot_make_a_dataset_file_are_refused(storage: Storage, symbols: list[str], timeframe: str,
                                                          named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        export_bars(storage.prices, storage.objects, symbols, timeframe)


def test_a_file_with_longer_history_is_kept_and_reported(storage: Storage, goog_csv: Path) -> None:
    long_history = goog_csv.read_bytes()
    storage.objects.put("bars/1d/GOOG.csv", long_history)
    storage.prices.write_bars([_bar(2, 370.0, symbol="GOOG"), _bar(3, 371.0, symbol="GOOG")])
    result = export_bars(storage.prices, storage.objects, ["GOOG"])
    assert (result.exported, list(result.kept), result.missing, result.complete) == ((), ["GOOG"], {}, False)
    assert "starts at 2004-08-19" in result.kept["GOOG"] and "backfill" in result.kept["GOOG"]
    assert storage.objects.get("bars/1d/GOOG.csv") == long_history


@pytest.mark.parametrize("previous", [b"Date,Open,High,Low,Close\n2024-01-03,1,2,1,2\n", b"not a price file"])
def test_a_file_starting_later_or_unreadable_is_replaced(storage: Storage, previous: bytes) -> None:
    storage.objects.put("bars/1d/MSFT.csv", previous)
    storage.prices.write_bars([_bar(2, 370.0), _bar(3, 371.0), _bar(4, 372.0)])
    (series,) = export_bars(storage.prices, storage.objects, ["MSFT"]).exported
    assert series.bars == 3 and storage.objects.get("bars/1d/MSFT.csv").startswith(b"Date,Open,High,Low,Close,Volume")
