"""The text expert's output per symbol and bar: a point-in-time, age-decayed aggregate of scored documents.

At a bar's decision time T (its close: :func:`signal_engine.storage.timeline.bar_close_times`) only the
documents published strictly before T count (the timeline's rule: a headline at exactly the close counts
from the next bar), and only those at most ``max_age`` old. Each counts with weight ``w = 2 ** (-age /
half_life)``; with ``W`` the sum of the weights and ``s`` each document's direction (``p_bullish -
p_bearish``, in [-1, 1]):

- ``news_score = sum(w * s) / W``: the direction, in [-1, 1];
- ``news_confidence = W / (W + prior_weight)``: 0 without documents, towards 1 with many fresh ones;
- ``news_count``: the documents in the window; ``news_weight``: W.

A bar without any document in its window *abstains*: ``news_score`` is NaN (never 0, which would claim
neutral news) and ``news_confidence`` 0, so a gate sees "no news" as missing evidence, not as evidence.

With ``max_documents`` only the most recent that many documents of the window count (ties in publication time
ordered by the document's id), as the Signal API sends at most the bundle's ``news.max_documents`` headlines to
the text expert (:func:`signal_engine.serving.news.read_news`). :func:`news_per_bar` is the one function that
gives the MoE's news slot its input from stored documents: in the backtest (``--news-from-store``), in training
(the gate's rows) and, one bar at a time, in serving (the text expert's answer to the headlines the combiner read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import numpy as np
import pandas as pd

from signal_engine.ports import DocumentStore
from signal_engine.storage.records import Document, DocumentKind
from signal_engine.storage.timeline import EXCHANGE_TIMEZONE, SESSION_CLOSE, bar_close_times
from signal_engine.storage.times import naive_utc

COLUMNS = ("news_score", "news_confidence", "news_count", "news_weight")


@dataclass(frozen=True)
class NewsDecay:
    """How documents age: their weight halves every ``half_life``; older than ``max_age`` they drop out."""

    half_life: timedelta = timedelta(days=1)
    max_age: timedelta = timedelta(days=7)
    prior_weight: float = 1.0

    def __post_init__(self) -> None:
        if not pd.Timedelta(self.half_life) > pd.Timedelta(0):
            raise ValueError(f"half_life must be positive, got {self.half_life}")
        if not pd.Timedelta(self.max_age) > pd.Timedelta(0):
            raise ValueError(f"max_age must be positive, got {self.max_age}")
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight must be positive, got {self.prior_weight}")


def aggregate_news(published_at: Sequence[datetime] | pd.DatetimeIndex, directions: Sequence[float] | np.ndarray,
                   decision_times: Sequence[datetime] | pd.DatetimeIndex,
                   decay: NewsDecay | None = None, max_documents: int | None = None) -> pd.DataFrame:
    """Per decision time (naive UTC, increasing), the decayed aggregate of the documents published strictly
    before it and at most ``decay.max_age`` earlier (the most recent ``max_documents`` of them when given; among
    documents published at the same time, the later in the given order counts); columns ``COLUMNS``, indexed by
    the decision times."""
    decay = decay or NewsDecay()
    published = pd.DatetimeIndex(list(published_at)).as_unit("ns")
    s = np.asarray(directions, dtype=float)
    times = pd.DatetimeIndex(list(decision_times)).as_unit("ns")
    if len(published) != len(s):
        raise ValueError(f"{len(published)} publication times but {len(s)} directions")
    if published.tz is not None or times.tz is not None:
        raise ValueError("expected naive UTC times (signal_engine.storage.times.naive_utc)")
    if not np.all(np.isfinite(s)) or np.any(np.abs(s) > 1.0):
        raise ValueError("document directions must be finite and in [-1, 1] (p_bullish - p_bearish)")
    if len(times) > 1 and not times.is_monotonic_increasing:
        raise ValueError("decision times must be increasing")
    if max_documents is not None and max_documents < 1:
        raise ValueError(f"max_documents must be at least 1, got {max_documents}")
    order = np.argsort(published.asi8, kind="stable")
    stamps, s = published.asi8[order], s[order]
    half_life = pd.Timedelta(decay.half_life).value
    max_age = pd.Timedelta(decay.max_age).value
    out = np.zeros((len(times), len(COLUMNS)))
    for row, t in enumerate(times.asi8):
        lo = np.searchsorted(stamps, t - max_age, side="left")
        hi = np.searchsorted(stamps, t, side="left")  # strictly before t
        if max_documents is not None:
            lo = max(lo, hi - max_documents)
        if hi <= lo:
            out[row] = (np.nan, 0.0, 0.0, 0.0)
            continue
        weights = np.exp2(-(t - stamps[lo:hi]) / half_life)
        total = float(weights.sum())
        out[row] = (float(weights @ s[lo:hi]) / total, total / (total + decay.prior_weight), hi - lo, total)
    frame = pd.DataFrame(out, index=pd.DatetimeIndex(times, name="decision_time"), columns=list(COLUMNS))
    frame["news_count"] = frame["news_count"].astype(int)
    return frame


def document_weights(published_at: Sequence[datetime] | pd.DatetimeIndex, decision_time: datetime,
                     decay: NewsDecay | None = None) -> np.ndarray:
    """Each document's weight in :func:`aggregate_news` at ``decision_time`` (naive UTC): ``2 ** (-age /
    half_life)`` when it counts (published strictly before, at most ``max_age`` earlier), else 0. Their sum is
    the aggregate's ``news_weight``."""
    decay = decay or NewsDecay()
    published = pd.DatetimeIndex(list(published_at)).as_unit("ns")
    at = pd.Timestamp(decision_time)
    if published.tz is not None or at.tz is not None:
        raise ValueError("expected naive UTC times (signal_engine.storage.times.naive_utc)")
    age = at.as_unit("ns").value - published.asi8
    counts = (age > 0) & (age <= pd.Timedelta(decay.max_age).value)
    return np.where(counts, np.exp2(-age / pd.Timedelta(decay.half_life).value), 0.0)


Scorer = Callable[[Sequence[str]], np.ndarray]
"""Texts to class probabilities (texts x 3: p_bearish, p_bullish, p_neutral)."""


def news_per_bar(store: DocumentStore, symbol: str, index: pd.DatetimeIndex, timeframe: str, scorer: Scorer, *,
                 kind: DocumentKind = "news", decay: NewsDecay | None = None, max_documents: int | None = None,
                 exchange_timezone: str = EXCHANGE_TIMEZONE, session_close: time = SESSION_CLOSE) -> pd.DataFrame:
    """The text expert's output for ``symbol``'s bars (``index``: naive UTC open times, or dates for 1d):
    its stored documents (read through the DocumentStore port), each title scored by ``scorer``, aggregated
    at each bar's close (point in time: only documents published strictly before it; the most recent
    ``max_documents`` when given, as the Signal API reads them). Indexed by the bars' timestamps."""
    decay = decay or NewsDecay()
    bars = pd.DatetimeIndex(index, name="timestamp")
    closes = bar_close_times(bars, timeframe, exchange_timezone=exchange_timezone, session_close=session_close)
    documents: list[Document] = []
    if len(bars):
        start = (closes[0] - pd.Timedelta(decay.max_age)).to_pydatetime()
        documents = store.read_documents(kind, symbol, start=start, end=closes[-1].to_pydatetime())
        documents = sorted(documents, key=lambda doc: (naive_utc(doc.published_at), doc.id))
    proba = np.asarray(scorer([doc.title for doc in documents]), dtype=float).reshape(len(documents), 3)
    directions = np.clip(proba[:, 1] - proba[:, 0], -1.0, 1.0)
    frame = aggregate_news([naive_utc(doc.published_at) for doc in documents], directions, closes, decay,
                           max_documents)
    frame.index = bars
    return frame
