"""Export stored bars as the training workflow's input: ``bars/<timeframe>/<SYMBOL>.csv`` in the Yahoo layout.

The collectors write bars into the price store (MySQL in AWS); the training workflow's prepare step reads one CSV
per symbol from the datasets bucket (its execution input's ``dataset_prefix``, ``bars/1d`` by default). This use
case bridges the two: it reads each symbol's bars, writes ``Date,Open,High,Low,Close[,Volume]`` (prices already
adjusted, as ``PriceStore.read_bars`` returns them) and checks the file with the same loader the prepare job uses
before it stores it, so a symbol without bars, or with bars the loader would reject, is reported and its previous
file is left as it was: a good file is never replaced by an empty or unreadable one. Nor by a shorter one: a file
that reaches further back than the stored bars (history uploaded by hand, while the collectors only store bars from
their first run on) is kept and reported until the store is backfilled (a Collect Request with an early ``start``,
or ``signal-engine ingest``) or the file is deleted.

Given the market store, the export first derives the implied volatility of the bars whose option chains are stored
(:func:`signal_engine.storage.implied_vol.derive_implied_volatility`: point in time, incremental) and joins the stored
series as the ``implied_vol`` column, empty on the bars without a value; a symbol without any value keeps the file it
had before (no such column), so only the symbols whose chains are collected feed the HAR-implied volatility expert.
The stored term slope and skew go beside it as the ``implied_term_slope`` and ``implied_skew`` columns (empty where
missing), each only when at least one bar has a value (``volatility.implied_terms`` reads them).

Given the document store, :func:`export_news` writes each symbol's stored news beside the bars, ``news/<SYMBOL>.jsonl``
(:mod:`signal_engine.storage.news_files`): the training workflow's prepare job scores it for the MoE's news slot
(``moe.news``). The same protection applies: a symbol without stored news, or whose file reaches further back than
the store's news, keeps its file.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from signal_engine.data.loader import IMPLIED_VOL, IV_STRUCTURE, PriceSeries, load_prices
from signal_engine.errors import ConfigError, InputError
from signal_engine.ports import DocumentStore, MarketDataStore, ObjectStore, PriceStore
from signal_engine.storage.implied_vol import derive_implied_volatility, implied_vol_columns
from signal_engine.storage.news_files import (
    NEWS_CONTENT_TYPE,
    NEWS_PREFIX,
    first_published,
    news_key,
    news_lines,
    read_news_lines,
)
from signal_engine.storage.times import naive_utc

BARS_PREFIX = "bars"
CSV_CONTENT_TYPE = "text/csv"
# The symbols the training workflow's execution input accepts (step_functions/training_workflow.py).
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9.^=_-]{1,20}$")
TIMEFRAME_PATTERN = re.compile(r"^[0-9]{1,4}[a-z]{1,3}$")


@dataclass(frozen=True)
class ExportedSeries:
    """One symbol's file: where it went, how many bars, their span, and whether it carries volume."""

    symbol: str
    key: str
    bars: int
    first: str
    last: str
    volume: bool
    implied_vol: int = 0  # bars with an implied volatility (0: the file has no implied_vol column)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote (``exported``), the symbols without usable stored bars (``missing``) and those whose
    existing file reaches further back than the stored bars (``kept``), each with why; those files are untouched."""

    timeframe: str
    exported: tuple[ExportedSeries, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.kept

    def as_dict(self) -> dict[str, Any]:
        return {
            "timeframe": self.timeframe,
            "exported": [vars(series) for series in self.exported],
            "missing": dict(self.missing),
            "kept": dict(self.kept),
        }


@dataclass(frozen=True)
class ExportedNews:
    """One symbol's news file: where it went, how many documents, the first and last publication times."""

    symbol: str
    key: str
    documents: int
    first: str
    last: str


@dataclass(frozen=True)
class NewsExportResult:
    """What a news export wrote, the symbols without stored news (``missing``) and those whose existing file reaches
    further back than the stored news (``kept``), each with why; those files are untouched."""

    exported: tuple[ExportedNews, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"exported": [vars(news) for news in self.exported], "missing": dict(self.missing),
                "kept": dict(self.kept)}


def bars_key(symbol: str, timeframe: str, prefix: str = BARS_PREFIX) -> str:
    """``bars/1d/SPY.csv``: where the training workflow (``dataset_prefix`` ``bars/<timeframe>``) reads a symbol."""
    return f"{prefix.strip('/')}/{timeframe}/{symbol}.csv" if prefix.strip("/") else f"{timeframe}/{symbol}.csv"


def series_csv(series: PriceSeries) -> bytes:
    """The series in the Yahoo layout, ``Date,Open,High,Low,Close[,Volume][,Implied_Vol][,Iv_Term_Slope][,Iv_Skew]``,
    as ``load_prices`` reads it back (the implied-volatility columns, empty where missing, are kept: the training
    workflow's datasets carry them).

    Prices are written with every digit (no rounding), so loading the file gives the stored values. Dates are
    ``YYYY-MM-DD`` for daily bars and ``YYYY-MM-DD HH:MM:SS`` (UTC) for intraday ones.
    """
    frame = series.bars.rename(columns=str.title)
    frame.index = pd.DatetimeIndex(frame.index).rename("Date")
    text = frame.to_csv(date_format="%Y-%m-%d %H:%M:%S" if series.intraday else "%Y-%m-%d", lineterminator="\n")
    return text.encode("utf-8")


def export_bars(prices: PriceStore, objects: ObjectStore, symbols: Iterable[str], timeframe: str = "1d", *,
                prefix: str = BARS_PREFIX, market: MarketDataStore | None = None) -> ExportResult:
    """Write each symbol's stored bars to ``objects`` at :func:`bars_key`; report the symbols it could not write.

    A symbol with no stored bars, or whose bars the price loader rejects (a missing volume is dropped instead, see
    below), lands in ``ExportResult.missing`` with the reason; its existing file, if any, is left untouched. A symbol
    whose existing file starts before the first stored bar lands in ``ExportResult.kept``: replacing that file would
    drop history.
    Volume is written only when every bar has it (the loader accepts no empty cells), else the column is left out.
    With ``market``, each symbol's missing implied volatility is derived from its stored chains first and the stored
    series is written as the ``implied_vol`` column when at least one bar has a value (see the module docstring).
    Raises :class:`ConfigError` for an empty symbol list or a symbol or timeframe that cannot name a file.
    """
    names = _symbols(symbols)
    if not TIMEFRAME_PATTERN.fullmatch(timeframe):
        raise ConfigError(f"timeframe {timeframe!r} is not a bar length; expected e.g. 1d, 1h or 5m")
    exported: list[ExportedSeries] = []
    missing: dict[str, str] = {}
    kept: dict[str, str] = {}
    for symbol in dict.fromkeys(names):
        try:
            series = prices.read_bars(symbol, timeframe)
        except InputError as exc:
            missing[symbol] = str(exc)
            continue
        if series.bars.empty:  # a store may answer an empty series rather than raise
            missing[symbol] = f"store:{symbol}/{timeframe}: no bars stored for this symbol and timeframe"
            continue
        series = _complete_columns(series)
        if market is not None:
            series = _with_implied_vol(series, prices, market, symbol, timeframe)
        data = series_csv(series)
        problem = _unreadable(data, symbol, series)
        if problem:
            missing[symbol] = problem
            continue
        key = bars_key(symbol, timeframe, prefix)
        index = pd.DatetimeIndex(series.bars.index)
        earlier = _earlier_history(objects, key, symbol, index[0])
        if earlier is not None:
            kept[symbol] = (f"{key} starts at {earlier}, before the first stored bar {index[0]}; kept so no history "
                            "is lost: backfill the store from that date or delete the file")
            continue
        objects.put(key, data, CSV_CONTENT_TYPE)
        exported.append(ExportedSeries(symbol, key, len(series), str(index[0]), str(index[-1]), series.has_volume,
                                       _implied_bars(series)))
    return ExportResult(timeframe, tuple(exported), missing, kept)


def export_news(documents: DocumentStore, objects: ObjectStore, symbols: Iterable[str], *,
                prefix: str = NEWS_PREFIX) -> NewsExportResult:
    """Write each symbol's stored news (kind ``news``, every stored one) to ``objects`` at
    :func:`signal_engine.storage.news_files.news_key`; report the symbols it could not write.

    A symbol without stored news lands in ``missing`` and one whose existing readable file starts before the first
    stored document in ``kept``; their files are left as they were (a good file is never replaced by an empty or a
    shorter one). Raises :class:`ConfigError` for a symbol that cannot name a file.
    """
    names = _symbols(symbols)
    exported: list[ExportedNews] = []
    missing: dict[str, str] = {}
    kept: dict[str, str] = {}
    for symbol in dict.fromkeys(names):
        stored = documents.read_documents("news", symbol)
        key = news_key(symbol, prefix)
        first = first_published(stored)
        if first is None:
            missing[symbol] = f"no news stored for {symbol}; {key} is left as it was"
            continue
        earlier = _earlier_news(objects, key)
        if earlier is not None and earlier < first:
            kept[symbol] = (f"{key} starts at {earlier}, before the first stored news {first}; kept so no news is "
                            "lost: restore the store's news or delete the file")
            continue
        data = news_lines(stored)
        objects.put(key, data, NEWS_CONTENT_TYPE)
        last = max(naive_utc(doc.published_at) for doc in stored)
        exported.append(ExportedNews(symbol, key, data.count(b"\n"), str(first), str(last)))
    return NewsExportResult(tuple(exported), missing, kept)


def _symbols(symbols: Iterable[str]) -> list[str]:
    names = [symbol.strip().upper() for symbol in symbols if symbol.strip()]
    if not names:
        raise ConfigError("no symbols to export; expected at least one, e.g. SPY,QQQ")
    bad = [symbol for symbol in names if not SYMBOL_PATTERN.fullmatch(symbol)]
    if bad:
        raise ConfigError(f"symbols {', '.join(bad)} cannot name a dataset file; expected letters, digits and "
                          "'.^=_-' (at most 20 characters), as the training workflow's input accepts")
    return names


def _earlier_news(objects: ObjectStore, key: str) -> datetime | None:
    """The first publication time of the news file at ``key`` when it is readable and names any, else None."""
    if key not in objects.keys(key):  # listed first, as _earlier_history explains
        return None
    try:
        existing = read_news_lines(objects.get(key), key)
    except (KeyError, InputError):  # an unreadable file is no news to keep
        return None
    return first_published(existing)


def _earlier_history(objects: ObjectStore, key: str, symbol: str, first: pd.Timestamp) -> pd.Timestamp | None:
    """The first bar of the file at ``key`` when it is readable and starts before ``first``, else None."""
    # Listed before it is read: S3 answers a GET of a missing key with 403 rather than 404 unless the caller may list
    # the whole bucket, and the export may list only its prefix.
    if key not in objects.keys(key):
        return None
    try:
        existing = objects.get(key)
    except KeyError:
        return None
    with tempfile.TemporaryDirectory(prefix="signal-engine-export-") as scratch:
        path = Path(scratch) / f"{symbol}.csv"
        path.write_bytes(existing)
        try:
            start = pd.DatetimeIndex(load_prices(path, symbol).bars.index)[0]
        except InputError:  # an unreadable file is no history to keep
            return None
    return start if start < first else None


def _with_implied_vol(series: PriceSeries, prices: PriceStore, market: MarketDataStore, symbol: str,
                      timeframe: str) -> PriceSeries:
    """The series with the stored implied volatility as its ``implied_vol`` column, derived first where missing, and
    the stored term slope and skew as ``implied_term_slope`` and ``implied_skew`` where any bar has one; the series
    unchanged when no bar has an implied volatility."""
    derive_implied_volatility(prices, market, symbol, timeframe)
    stored = implied_vol_columns(market, symbol, timeframe, pd.DatetimeIndex(series.bars.index))
    if not stored[IMPLIED_VOL].notna().any():
        return series
    kept = [IMPLIED_VOL, *(term for term in IV_STRUCTURE if stored[term].notna().any())]
    return PriceSeries(series.symbol, series.source,
                       series.bars.assign(**{c: stored[c].to_numpy() for c in kept}))


def _implied_bars(series: PriceSeries) -> int:
    return int(series.bars[IMPLIED_VOL].notna().sum()) if IMPLIED_VOL in series.bars.columns else 0


def _complete_columns(series: PriceSeries) -> PriceSeries:
    if series.has_volume and series.bars["volume"].isna().any():
        return PriceSeries(series.symbol, series.source, series.bars.drop(columns="volume"))
    return series


def _unreadable(data: bytes, symbol: str, series: PriceSeries) -> str:
    """Why ``load_prices`` would reject the file (empty when it reads back with every bar)."""
    with tempfile.TemporaryDirectory(prefix="signal-engine-export-") as scratch:
        path = Path(scratch) / f"{symbol}.csv"
        path.write_bytes(data)
        try:
            loaded = load_prices(path, symbol)
        except InputError as exc:
            return f"{series.source}: the stored bars do not make a valid price file ({exc.problem}" + (
                f", data line {exc.line - 1}" if exc.line is not None else "") + "); the previous file is kept"
    if len(loaded) != len(series):
        return f"{series.source}: {len(series)} bars stored but {len(loaded)} read back; the previous file is kept"
    return ""
