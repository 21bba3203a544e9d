"""Bars for the local server: the local price store first, then the real series shipped with the dependencies.

``signal-engine serve`` answers a request without ``bars`` from here: bars collected or ingested into the
local store (``out/store/signal_engine.db``; with ``implied_vol``, ``implied_term_slope`` and ``implied_skew`` on
the bars whose implied volatility derived from the stored option chains is stored, as the bars export writes them), or
else, for the symbols of ``signal-engine datasets`` (SPX, IXIC, GOOG, EURUSD), the data set that the demo trains
on. Prices are adjusted as the models were trained.
"""

from __future__ import annotations

import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from signal_engine.data.datasets import DATASETS, export_dataset
from signal_engine.data.loader import IMPLIED_VOL, IV_STRUCTURE, PriceSeries, load_prices
from signal_engine.errors import SignalEngineError
from signal_engine.storage.implied_vol import implied_vol_columns

if TYPE_CHECKING:
    from signal_engine.ports import MarketDataStore, PriceStore


class LocalBars:
    """The serving BarSource of the local server (see the module docstring)."""

    def __init__(self, prices: PriceStore | None, *, datasets: bool = True, market: MarketDataStore | None = None,
                 ) -> None:
        self._prices = prices
        self._market = market
        self._datasets = datasets
        self._cache: dict[str, PriceSeries] = {}
        self._lock = threading.Lock()

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None, count: int) -> list[dict[str, Any]]:
        stored = self._from_store(symbol, timeframe, end)
        series = stored or self._from_dataset(symbol, timeframe)
        if series is None:
            return []
        bars = series.bars
        if end is not None:
            bars = bars[bars.index <= pd.Timestamp(end)]
        bars = bars.iloc[-count:]
        volume = bars["volume"].to_numpy(dtype=float) if "volume" in bars.columns else None
        columns = {c: bars[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close")}
        values: dict[str, np.ndarray] = {}
        if stored is not None and self._market is not None and len(bars):
            readings = implied_vol_columns(self._market, symbol, timeframe, pd.DatetimeIndex(bars.index))
            values = {c: readings[c].to_numpy(dtype=float) for c in (IMPLIED_VOL, *IV_STRUCTURE)}
        rows = []
        for i, ts in enumerate(pd.DatetimeIndex(bars.index).to_pydatetime()):
            row = {"timestamp": ts.isoformat(), **{c: float(columns[c][i]) for c in columns},
                   "volume": None if volume is None or not np.isfinite(volume[i]) else float(volume[i])}
            row.update({c: float(v[i]) for c, v in values.items() if np.isfinite(v[i])})
            rows.append(row)
        return rows

    def _from_store(self, symbol: str, timeframe: str, end: datetime | None) -> PriceSeries | None:
        if self._prices is None:
            return None
        try:
            return self._prices.read_bars(symbol, timeframe, end=end)
        except SignalEngineError:
            return None

    def _from_dataset(self, symbol: str, timeframe: str) -> PriceSeries | None:
        dataset = DATASETS.get(symbol)
        if not self._datasets or dataset is None or dataset.timeframe != timeframe:
            return None
        with self._lock:
            if symbol not in self._cache:
                folder = Path(tempfile.mkdtemp(prefix="signal-engine-serve-"))
                self._cache[symbol] = load_prices(export_dataset(symbol, folder), symbol)
            return self._cache[symbol]
