"""The price-file loader: good files load, each kind of bad file fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from signal_engine.data import load_prices
from signal_engine.errors import InputError

GOOD = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,10.0,11.0,9.5,10.5,5.25,1000
2024-01-03,10.5,11.5,10.0,11.0,5.5,1200
2024-01-04,11.0,11.2,10.4,10.8,5.4,900
"""


def write(tmp_path: Path, text: str | bytes, name: str = "ACME.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_good_file_loads_adjusted_bars_and_takes_symbol_from_name(tmp_path: Path) -> None:
    series = load_prices(write(tmp_path, GOOD, "acme.csv"))
    assert series.symbol == "ACME"
    assert list(series.bars.columns) == ["open", "high", "low", "close", "volume"]
    np.testing.assert_allclose(series.bars["close"], [5.25, 5.5, 5.4])
    np.testing.assert_allclose(series.bars["high"], [5.5, 5.75, 5.6])
    assert not series.intraday


def test_column_names_are_case_insensitive_and_volume_optional(tmp_path: Path) -> None:
    text = "date,OPEN,high,LOW,close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1.5,2,1,1.8\n"
    series = load_prices(write(tmp_path, text), symbol="xyz")
    assert series.symbol == "XYZ"
    assert not series.has_volume


def test_an_implied_volatility_column_is_kept_unadjusted_with_empty_cells_missing(tmp_path: Path) -> None:
    text = ("Date,Open,High,Low,Close,Adj Close,Implied_Vol\n2024-01-02,10,11,9.5,10.5,5.25,15.3\n"
            "2024-01-03,10.5,11.5,10,11,5.5,\n2024-01-04,11,11.2,10.4,10.8,5.4,NaN\n2024-01-05,11,11.2,10.4,10.8,5.4,9\n")
    bars = load_prices(write(tmp_path, text)).bars
    assert list(bars.columns) == ["open", "high", "low", "close", "implied_vol"]
    np.testing.assert_array_equal(bars["implied_vol"], [15.3, np.nan, np.nan, 9.0])
    np.testing.assert_allclose(bars["close"], [5.25, 5.5, 5.4, 5.4])


@pytest.mark.parametrize("cell", ["0", "-3", "abc", "inf"])
def test_a_bad_implied_volatility_names_the_line_and_the_column(tmp_path: Path, cell: str) -> None:
    text = f"Date,Open,High,Low,Close,implied_vol\n2024-01-02,1,2,0.5,1.5,14\n2024-01-03,1,2,0.5,1.5,{cell}\n"
    with pytest.raises(InputError, match=f"line 3: column 'implied_vol': '{cell}' is not an implied volatility; "
                                         "expected a number > 0 in annualised %"):
        load_prices(write(tmp_path, text))


def test_intraday_timestamps_are_kept(tmp_path: Path) -> None:
    text = "Datetime,Open,High,Low,Close\n2024-01-02 09:30:00,1,2,0.5,1.5\n2024-01-02 10:30:00,1.5,2,1,1.8\n"
    series = load_prices(write(tmp_path, text))
    assert series.intraday
    assert str(series.bars.index[1]) == "2024-01-02 10:30:00"


@pytest.mark.parametrize("separator", [";", "\t"])
def test_spreadsheet_separators_load_like_commas(tmp_path: Path, separator: str) -> None:
    text = GOOD.replace(",", separator)
    series = load_prices(write(tmp_path, text))
    np.testing.assert_allclose(series.bars["close"], [5.25, 5.5, 5.4])


def test_semicolon_file_with_decimal_commas_loads(tmp_path: Path) -> None:
    text = "Date;Open;High;Low;Close;Volume\n2024-01-02;10,0;11,0;9,5;10,5;1000\n2024-01-03;10,5;11,5;10;11,0;1200\n"
    series = load_prices(write(tmp_path, text))
    np.testing.assert_allclose(series.bars["close"], [10.5, 11.0])
    np.testing.assert_allclose(series.bars["volume"], [1000, 1200])


@pytest.mark.parametrize(("header", "cause"), [
    ("Datum;Eröffnung;Hoch;Tief;Schluss;Volumen", "the header looks German ('datum' -> Date, 'eröffnung' -> Open"),
    ("Date;Ouverture;Plus haut;Plus bas;Clôture;Volume", "the header looks French ('ouverture' -> Open"),
    ("Fecha,Apertura,Máximo,Mínimo,Cierre,Volumen", "the header looks Spanish ('fecha' -> Date"),
    ("Date|Open|High|Low|Close|Volume", "the header's fields are separated by '|'"),
    ("Date Open High Low Close Volume", "the header's fields are separated by space"),
])
def test_a_header_in_another_language_or_with_another_separator_is_named(
    tmp_path: Path, header: str, cause: str
) -> None:
    separator = ";" if ";" in header else ","
    row = separator.join(["2024-01-02", "10", "11", "9", "10.5", "1000"])
    with pytest.raises(InputError) as error:
        load_prices(write(tmp_path, f"{header}\n{row}\n"))
    assert cause in str(error.value)
    assert "Date,Open,High,Low,Close" in str(error.value)


def test_a_header_missing_a_column_still_says_which(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_prices(write(tmp_path, "Date,Open,High,Close\n2024-01-02,10,11,10.5\n"))
    assert "missing column" in str(error.value) and "Low" in str(error.value)


def test_real_shipped_files_load(goog_csv: Path, eurusd_csv: Path) -> None:
    assert len(load_prices(goog_csv)) == 2148
    assert load_prices(eurusd_csv).intraday


BAD_INPUTS: dict[str, tuple[str | bytes, str]] = {
    "missing column": ("Date,Open,Low,Close\n2024-01-02,1,0.5,1.5\n", "column 'High': missing column"),
    "non-increasing dates": (
        "Date,Open,High,Low,Close\n2024-01-03,1,2,0.5,1.5\n2024-01-02,1,2,0.5,1.5\n",
        "line 3: column 'Date': 2024-01-02 00:00:00 is not after the previous bar's",
    ),
    "repeated date": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-02,1,2,0.5,1.5\n",
        "line 3: column 'Date'",
    ),
    "unparsable date": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-13-45,1,2,0.5,1.5\n",
        "line 3: column 'Date': '2024-13-45' is not a date",
    ),
    "non-positive price": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5,-1.5\n",
        "line 3: column 'Close': price -1.5 is not positive",
    ),
    "empty cell": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,,0.5,1.5\n",
        "line 3: column 'High': is empty",
    ),
    "NaN price": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,NaN\n",
        "line 2: column 'Close': is empty ('NaN')",
    ),
    "not a number": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,abc\n",
        "line 2: column 'Close': 'abc' is not a finite number",
    ),
    "high below low": (
        "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,0.4,0.5,0.45\n",
        "line 3: column 'High': High 0.4 is below Low 0.5",
    ),
    "empty file": ("", "is empty; expected a header line"),
    "header only": ("Date,Open,High,Low,Close\n", "has a header but no bars"),
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "is a binary file, not CSV text"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_names_file_place_and_expectation(tmp_path: Path, kind: str) -> None:
    text, expected = BAD_INPUTS[kind]
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_prices(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_prices(tmp_path / "nope.csv")


@pytest.mark.parametrize("kind", ["empty cell", "binary file", "high below low"])
def test_cli_prints_one_line_and_exits_non_zero_without_traceback(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, BAD_INPUTS[kind][0])
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "backtest", "--prices", str(path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"signal-engine: error: {path}")
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "o").exists()


def test_too_few_rows_for_the_profile_fails_before_any_work(tmp_path: Path, goog_csv: Path) -> None:
    short = tmp_path / "SHORT.csv"
    short.write_text("".join(goog_csv.read_text().splitlines(keepends=True)[:301]))
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "backtest", "--prices", str(short), "--out", str(tmp_path / "o"),
         "--profile", "quick"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"signal-engine: error: {short}: has 300 bars; profile 'quick' needs at least 1008 (initial window 504 "
        "+ validation 252 + test 252); use a longer file or smaller walk_forward settings in --config"
    )


def test_the_implied_volatility_slot_without_the_column_fails_before_any_work(tmp_path: Path, goog_csv: Path) -> None:
    config = write(tmp_path, "moe: {experts: {volatility: vol_har_implied}}\n", "iv.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "signal_engine", "backtest", "--prices", str(goog_csv), "--out", str(tmp_path / "o"),
         "--config", str(config)],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith(
        f"signal-engine: error: {goog_csv}: has no 'implied_vol' column, which moe.experts.volatility "
        "'vol_har_implied' reads; add the column to the price file")
    assert not (tmp_path / "o").exists()


def test_an_input_error_survives_pickling_as_the_walk_forwards_workers_send_it() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(InputError("a.csv", "bad value", line=3, column="High")))
    assert isinstance(error, InputError) and str(error) == "a.csv: line 3: column 'High': bad value"
    assert (error.source, error.problem, error.line, error.column) == ("a.csv", "bad value", 3, "High")
