"""Ingest a price file (Yahoo export layout) into the price store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.ports import PriceStore
from signal_engine.storage.records import Bar, WriteResult

INGEST_SOURCE = "csv"
_NAMED_MINUTES = {1: "1m", 2: "2m", 5: "5m", 15: "15m", 30: "30m", 60: "1h", 90: "90m", 240: "4h"}


@dataclass(frozen=True)
class IngestResult:
    """What one file added to the store."""

    symbol: str
    timeframe: str
    bars: int
    result: WriteResult


def ingest_prices(path: str | Path, prices: PriceStore, *, symbol: str | None = None,
                  timeframe: str | None = None) -> IngestResult:
    """Validate a price file with the CSV loader and upsert its bars (already adjusted by Adj Close).

    The timeframe is ``1d`` for daily files and the most common bar spacing for intraday ones, unless given.
    Re-ingesting the same file writes nothing; a corrected file updates the changed bars and records them.
    """
    series = load_prices(path, symbol)
    frame = timeframe or infer_timeframe(series)
    bars = bars_from_series(series, frame)
    return IngestResult(series.symbol, frame, len(bars), prices.write_bars(bars))


def bars_from_series(series: PriceSeries, timeframe: str, source: str = INGEST_SOURCE) -> list[Bar]:
    """The series' rows as Bar records."""
    frame = series.bars
    volume = frame["volume"].to_numpy(dtype=float) if series.has_volume else np.full(len(frame), np.nan)
    stamps = pd.DatetimeIndex(frame.index).to_pydatetime()
    values = frame[["open", "high", "low", "close"]].to_numpy(dtype=float)
    return [Bar(series.symbol, timeframe, stamp, float(o), float(h), float(low), float(c),
                None if np.isnan(v) else float(v), None, source)
            for stamp, (o, h, low, c), v in zip(stamps, values, volume, strict=True)]


def infer_timeframe(series: PriceSeries) -> str:
    """``1d`` for daily bars, else the median spacing in minutes (``1h``, ``5m``, ...)."""
    if not series.intraday:
        return "1d"
    steps = np.diff(pd.DatetimeIndex(series.bars.index).as_unit("ns").asi8) / 60e9
    minutes = round(float(np.median(steps))) if len(steps) else 0
    return _NAMED_MINUTES.get(minutes, f"{minutes}m")
