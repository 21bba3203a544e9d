"""`signal-engine ingest` and the embedded store: real price files in, the same PriceSeries out."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.cli import main
from signal_engine.data.loader import load_prices
from signal_engine.storage.ingest import ingest_prices


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/store.db", object_store=str(tmp_path / "objects"))


def test_an_ingested_file_reads_back_as_the_loaded_series(goog_csv: Path, settings: Settings) -> None:
    storage = bootstrap(settings)
    done = ingest_prices(goog_csv, storage.prices)
    stored = storage.prices.read_bars("GOOG", "1d")
    assert (done.timeframe, done.result.inserted) == ("1d", 2148)
    pd.testing.assert_frame_equal(stored.bars, load_prices(goog_csv).bars, check_exact=True)


def test_ingesting_the_same_file_again_writes_nothing(goog_csv: Path, settings: Settings) -> None:
    storage = bootstrap(settings)
    ingest_prices(goog_csv, storage.prices)
    again = ingest_prices(goog_csv, storage.prices).result
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2148)
    assert storage.prices.count_bars("GOOG") == 2148


def test_a_corrected_bar_is_updated_in_place_and_recorded(goog_csv: Path, settings: Settings, tmp_path: Path) -> None:
    storage = bootstrap(settings)
    ingest_prices(goog_csv, storage.prices)
    lines = goog_csv.read_text().splitlines()
    cells = lines[10].split(",")
    cells[4] = f"{float(cells[4]) * 1.001:.6f}"
    corrected = tmp_path / "GOOG.csv"
    corrected.write_text("\n".join([*lines[:10], ",".join(cells), *lines[11:]]) + "\n")
    result = ingest_prices(corrected, storage.prices).result
    (restated,) = storage.prices.restatements("GOOG", "1d")
    assert (result.updated, result.unchanged) == (1, 2147)
    assert restated.after.close == pytest.approx(restated.before.close * 1.001, rel=1e-6)


def test_hourly_files_are_stored_as_1h_bars(eurusd_csv: Path, settings: Settings) -> None:
    done = ingest_prices(eurusd_csv, bootstrap(settings).prices)
    assert (done.symbol, done.timeframe, done.bars) == ("EURUSD", "1h", 5000)


def test_the_cli_ingests_into_the_given_database(goog_csv: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["ingest", "--prices", str(goog_csv), "--database", url, "--objects", str(tmp_path / "o")]) == 0
    assert "GOOG 1d, 2148 bars: 2148 new" in capsys.readouterr().err
    assert bootstrap(Settings(database_url=url)).prices.count_bars("GOOG") == 2148


def test_a_bad_file_is_one_line_and_stores_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "BAD.csv"
    bad.write_text("Date,Open,High,Low,Close\n2024-01-02,10,9,9.5,9.8\n")
    url = f"sqlite:///{tmp_path}/cli.db"
    assert main(["ingest", "--prices", str(bad), "--database", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 2: column 'High': High 9 is below Low 9.5" in err
    assert bootstrap(Settings(database_url=url)).prices.count_bars() == 0


def test_collect_offline_fails_with_one_line_naming_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    # curl_cffi resolves names itself; the urllib transport goes through the patched resolver, so no request leaves
    from signal_engine import bootstrap
    from signal_engine.adapters.urllib_transport import UrllibTransport

    monkeypatch.setattr(bootstrap, "_transport", UrllibTransport)
    code = main(["collect", "--source", "nasdaq", "--symbols", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05",
                 "--database", f"sqlite:///{tmp_path}/c.db", "--objects", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err == ("signal-engine: error: cannot reach api.nasdaq.com: name resolution failed: "
                                       "Name or service not known (is the machine offline?)\n")


def test_collect_refuses_a_kind_the_source_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["collect", "--source", "yahoo", "--kind", "earnings", "--symbols", "AAPL", "--start", "2024-01-02",
                 "--end", "2024-01-05"])
    assert code == 2 and "yahoo has no kind 'earnings'" in capsys.readouterr().err


def test_reading_a_symbol_that_was_never_stored_says_what_to_do(settings: Settings) -> None:
    with pytest.raises(Exception, match=r"store:MSFT/1d: no bars stored.*signal-engine ingest"):
        bootstrap(settings).prices.read_bars("MSFT", "1d")
