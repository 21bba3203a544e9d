"""Labels with timelines: each stored document labelled by the price move that followed it.

A document counts from the first bar that closes strictly after its publication (the point-in-time rule of
:mod:`signal_engine.text.aggregate` and :func:`signal_engine.storage.timeline.usable_at`); its label over
horizon ``H`` is that bar's trend label (:func:`signal_engine.labels.make_labels`): the log return from that
bar's close to the close ``H`` bars later against ``threshold`` times the bar's point-in-time volatility, so only
prices after publication decide it. ``bearish`` for DOWN, ``bullish`` for UP, ``neutral`` otherwise, in the text
expert's classes (:data:`signal_engine.text.LABELS`); a document whose horizon runs past the stored bars, or
published after the last bar closed, is ``unknown`` until enough bars are stored.

These labels train the text head on collected news where no labelled corpus fits (``text-train --corpus``), and
are reported beside a corpus's labels where one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from signal_engine.data.loader import PriceSeries
from signal_engine.labels import DOWN, UP, make_labels
from signal_engine.storage.records import Document
from signal_engine.storage.timeline import bar_close_times
from signal_engine.storage.times import naive_utc
from signal_engine.text import LABELS

UNKNOWN = "unknown"
COLUMNS = ("id", "published_at", "bar", "known_at", "forward_return", "label", "text")


def document_text(document: Document) -> str:
    """What the text expert reads of a document: its title, and a report's summary when it has one."""
    summary = document.body.get("summary") if isinstance(document.body, dict) else None
    return f"{document.title}. {summary}" if isinstance(summary, str) and summary else document.title


def timeline_labels(documents: Sequence[Document], series: PriceSeries, sigma: np.ndarray, *, timeframe: str,
                    horizon: int, threshold: float) -> pd.DataFrame:
    """One row per document (in the order given): ``bar`` (the first bar closing after publication, NaT if
    none), ``known_at`` (the bar at whose close the label is known), ``forward_return``, ``label`` (a text class
    or ``unknown``) and ``text``. ``sigma`` is the bars' point-in-time volatility (``vol30``, as the walk-forward
    labels use)."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
    index = pd.DatetimeIndex(series.bars.index)
    labels = make_labels(series.bars, np.asarray(sigma, dtype=float), horizon=horizon, threshold=threshold)
    closes = bar_close_times(index, timeframe).as_unit("ns").asi8
    published = pd.DatetimeIndex([naive_utc(d.published_at) for d in documents]).as_unit("ns")
    positions = np.searchsorted(closes, published.asi8, side="right")
    rows = []
    for document, at, position in zip(documents, published, positions, strict=True):
        inside = position < len(index)
        known = position + horizon
        trend = int(labels.trend[position]) if inside else -1
        rows.append({
            "id": document.id, "published_at": at,
            "bar": index[position] if inside else pd.NaT,
            "known_at": index[known] if inside and known < len(index) else pd.NaT,
            "forward_return": float(labels.forward_return[position]) if inside else float("nan"),
            "label": _text_label(trend), "text": document_text(document),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _text_label(trend: int) -> str:
    if trend < 0:
        return UNKNOWN
    return LABELS[0] if trend == DOWN else LABELS[1] if trend == UP else LABELS[2]


def corpus_rows(labelled: pd.DataFrame) -> pd.DataFrame:
    """The known labels as a corpus (``text``, ``label`` as the index in :data:`LABELS`), for ``text-train``."""
    known = labelled[labelled["label"] != UNKNOWN]
    return pd.DataFrame({"text": known["text"].to_numpy(),
                         "label": [LABELS.index(label) for label in known["label"]]})
