"""Point-in-time alignment of news and reports to bars (seed 003, section 4).

A document published at time p is usable at the first bar whose close is strictly after p: the signal
at bar t uses data up to t's close, so a headline that appeared during bar t's session counts at t, and
one that appeared after t's close counts from t+1. Daily bars close at the exchange's session close
(16:00 America/New_York by default); an intraday bar closes at its open time plus its length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time

import numpy as np
import pandas as pd

from signal_engine.storage.records import Document

EXCHANGE_TIMEZONE = "America/New_York"
SESSION_CLOSE = time(16, 0)
_TIMEFRAME = re.compile(r"^(\d+)(m|h)$")


def bar_close_times(index: pd.DatetimeIndex, timeframe: str, *, exchange_timezone: str = EXCHANGE_TIMEZONE,
                    session_close: time = SESSION_CLOSE) -> pd.DatetimeIndex:
    """The close time (naive UTC) of each bar in ``index`` (naive UTC open times, or session dates for 1d)."""
    index = pd.DatetimeIndex(index)
    if timeframe == "1d":
        local = index.normalize() + pd.Timedelta(hours=session_close.hour, minutes=session_close.minute)
        return local.tz_localize(exchange_timezone).tz_convert("UTC").tz_localize(None)
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise ValueError(f"timeframe {timeframe!r} is not supported; expected 1d or N m/N h such as 5m or 1h")
    count, unit = int(match.group(1)), match.group(2)
    return index + pd.Timedelta(minutes=count if unit == "m" else 60 * count)


def usable_at(published_at: Sequence[datetime] | pd.DatetimeIndex, index: pd.DatetimeIndex, timeframe: str, *,
              exchange_timezone: str = EXCHANGE_TIMEZONE, session_close: time = SESSION_CLOSE) -> pd.DatetimeIndex:
    """For each publication time, the timestamp of the first bar closing strictly after it (NaT if none)."""
    closes = bar_close_times(index, timeframe, exchange_timezone=exchange_timezone,
                             session_close=session_close).as_unit("ns").asi8
    published = pd.DatetimeIndex(list(published_at)).as_unit("ns").asi8
    positions = np.searchsorted(closes, published, side="right")
    stamps = pd.DatetimeIndex(index)
    result = [stamps[p] if p < len(stamps) else pd.NaT for p in positions]
    return pd.DatetimeIndex(result, name="timestamp")


def documents_per_bar(documents: Sequence[Document], index: pd.DatetimeIndex, timeframe: str, *,
                      exchange_timezone: str = EXCHANGE_TIMEZONE, session_close: time = SESSION_CLOSE) -> pd.DataFrame:
    """Per bar: how many documents became usable at it and their ids, for joining to features.

    Documents published after the last bar's close are left out (they belong to bars not yet seen).
    """
    stamps = pd.DatetimeIndex(index, name="timestamp")
    ids: dict[pd.Timestamp, list[str]] = {stamp: [] for stamp in stamps}
    if documents:
        at = usable_at([doc.published_at for doc in documents], stamps, timeframe,
                       exchange_timezone=exchange_timezone, session_close=session_close)
        for doc, stamp in zip(documents, at, strict=True):
            if not pd.isna(stamp):
                ids[stamp].append(doc.id)
    return pd.DataFrame({"documents": [len(ids[s]) for s in stamps], "document_ids": [ids[s] for s in stamps]},
                        index=stamps)
