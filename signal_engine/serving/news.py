"""The news beside a signal, on the combiner's side: which stored headlines the text expert reads, at which
decision time, and how its answer becomes the response's ``news`` block.

Imported by the combiner Lambda: the standard library, NumPy-free and pandas-free. The text expert itself (encoder
and head) runs on the experts' endpoint (:mod:`signal_engine.text.serving`); this module never imports it.

The rule is :mod:`signal_engine.text.aggregate`'s: at the decision time T, the close of the bar decided (a daily
bar closes at 16:00 New York, an intraday bar at its open time plus its length, as
:func:`signal_engine.storage.timeline.bar_close_times`), a headline counts when published strictly before T and at
most ``max_age_hours`` earlier. The service reads only those (the most recent ``max_documents``) and sends them;
no headline is an abstention, answered without asking the expert.

The Signal API (:class:`~signal_engine.serving.service.SignalService`) and the live book step
(:class:`~signal_engine.live.models.LiveTimeframeModel`) read a bar's news with :func:`bar_news` and turn the text
expert's reply into the news block with :func:`answered_news`, so both give the news slot the same input.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from signal_engine.serving.bundle import NewsSettings
from signal_engine.serving.messages import ExpertReply
from signal_engine.serving.schema import NewsHeadline, NewsView

if TYPE_CHECKING:
    from signal_engine.ports import DocumentStore
    from signal_engine.storage.records import Document

EXCHANGE_TIMEZONE = "America/New_York"
SESSION_CLOSE = time(16, 0)
"""As :mod:`signal_engine.storage.timeline` (which needs pandas); a test checks they agree."""
_INTRADAY = re.compile(r"^(\d+)(m|h)$")


def decision_time(bar_time: str | datetime, timeframe: str) -> datetime:
    """The close (naive UTC) of the bar at ``bar_time`` (naive UTC open time, or the session date for ``1d``)."""
    stamp = bar_time if isinstance(bar_time, datetime) else datetime.fromisoformat(str(bar_time))
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    if timeframe == "1d":
        close = datetime.combine(stamp.date(), SESSION_CLOSE, tzinfo=ZoneInfo(EXCHANGE_TIMEZONE))
        return close.astimezone(UTC).replace(tzinfo=None)
    match = _INTRADAY.match(timeframe)
    if match is None:
        raise ValueError(f"timeframe {timeframe!r}: the news window is defined for 1d and N m / N h bars only")
    count = int(match.group(1))
    return stamp + timedelta(minutes=count if match.group(2) == "m" else 60 * count)


@dataclass(frozen=True)
class BarNews:
    """The headlines read for one bar: at the decision time ``at`` (None: the timeframe has no close), the documents
    sent to the text expert (``rows``, :func:`document_rows`), or why none could be read (``error``;
    ``unreadable``: the document store failed, rather than there being none to read)."""

    at: datetime | None
    rows: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    unreadable: bool = False

    @property
    def asks(self) -> bool:
        """Whether the text expert is asked: headlines were read and nothing went wrong."""
        return bool(self.rows) and self.error is None and self.at is not None


def bar_news(store: DocumentStore | None, symbol: str, timeframe: str, bar_time: str | datetime,
             settings: NewsSettings) -> BarNews:
    """The headlines of ``symbol`` that can count at the close of its bar at ``bar_time`` (:func:`decision_time`,
    :func:`read_news`). A timeframe without a close, no store (None) or a store that cannot be read is a
    :class:`BarNews` with the error, never an exception."""
    try:
        at = decision_time(bar_time, timeframe)
    except ValueError as exc:
        return BarNews(None, error=str(exc))
    if store is None:
        return BarNews(at, error="no document store is configured here, so no stored headline can be read")
    try:
        documents = read_news(store, symbol, at, settings)
    except Exception as exc:  # the signal does not depend on the news: answer it, saying why there is none
        return BarNews(at, error=f"the document store could not be read ({type(exc).__name__}: {exc})",
                       unreadable=True)
    return BarNews(at, document_rows(documents))


def answered_news(news: BarNews, reply: ExpertReply | None, settings: NewsSettings,
                  in_combined_score: bool) -> NewsView:
    """The news block of one answer: abstaining when ``news`` has an error or no headline (``reply`` None: the text
    expert was not asked), else :func:`news_view` of the text expert's ``reply``."""
    if news.error is not None or news.at is None:
        view = abstaining(news.at, error=news.error)
    elif reply is None:
        view = abstaining(news.at)
    else:
        view = news_view(news.rows, reply, news.at, settings.headlines)
    return view.model_copy(update={"in_combined_score": in_combined_score})


def read_news(store: DocumentStore, symbol: str, at: datetime, settings: NewsSettings) -> list[Document]:
    """The symbol's news that can count at ``at`` (naive UTC): published in ``[at - max_age, at)``, the most recent
    ``max_documents`` of them, oldest first. Nothing published at or after ``at`` is returned."""
    read = store.read_documents("news", symbol, start=at - settings.max_age, end=at)
    before = [doc for doc in read if _naive(doc.published_at) < at]
    before.sort(key=lambda doc: (_naive(doc.published_at), doc.id))
    return before[-settings.max_documents:]


def document_rows(documents: Sequence[Document]) -> list[dict[str, str]]:
    """The documents as the text expert's request reads them: ``{id, published_at (ISO UTC), title}``."""
    return [{"id": doc.id, "published_at": _naive(doc.published_at).isoformat(), "title": doc.title}
            for doc in documents]


def documents_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """A SHA-256 of the documents sent (canonical JSON): the id of that input in the audit log."""
    canonical = json.dumps([[r["id"], r["published_at"], r["title"]] for r in rows], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def abstaining(at: datetime | None, *, error: str | None = None, model: str = "", latency_ms: float = 0.0) -> NewsView:
    """The news block when no headline counts (``error`` None) or the text expert could not be asked."""
    return NewsView(ok=error is None, abstained=True, score=None, confidence=0.0, count=0, decision_time=at,
                    headlines=[], error=error, latency_ms=round(latency_ms, 3), model=model)


def news_view(rows: Sequence[Mapping[str, Any]], reply: ExpertReply, at: datetime, headlines: int) -> NewsView:
    """The news block from the text expert's reply to ``rows``; a failed or malformed reply abstains with the
    error. The headlines that weigh most are ranked by |weight share x score|, then by share, then newest."""
    latency = round(reply.elapsed_ms, 3)
    if not reply.ok or reply.answer is None:
        return abstaining(at, error=reply.error or "no answer", model=reply.model, latency_ms=latency)
    try:
        score, confidence, count, documents = _parsed(reply.answer, len(rows))
    except (KeyError, TypeError, ValueError) as exc:
        return abstaining(at, error=f"malformed answer: {exc}", model=reply.model, latency_ms=latency)
    total = sum(weight for _, weight in documents)
    ranked: list[NewsHeadline] = []
    if score is not None and total > 0:
        for row, (direction, weight) in zip(rows, documents, strict=True):
            if weight > 0:
                share = weight / total
                ranked.append(NewsHeadline(id=str(row["id"]), title=str(row["title"]),
                                           published_at=datetime.fromisoformat(str(row["published_at"])),
                                           score=direction, weight=share, contribution=share * direction))
        ranked.sort(key=lambda h: (-abs(h.contribution), -h.weight, -h.published_at.timestamp()))
    return NewsView(ok=True, abstained=score is None, score=score, confidence=confidence if score is not None else 0.0,
                    count=count if score is not None else 0, decision_time=at, headlines=ranked[:headlines],
                    error=None, latency_ms=latency, model=reply.model)


def _parsed(answer: Mapping[str, Any], sent: int) -> tuple[float | None, float, int, list[tuple[float, float]]]:
    """``news_score`` (None: abstained), ``news_confidence``, ``news_count`` and each document's (score, weight)."""
    raw = answer["news_score"]
    score = None if raw is None else _bounded(raw, "news_score", -1.0, 1.0)
    confidence = _bounded(answer["news_confidence"], "news_confidence", 0.0, 1.0)
    count = answer["news_count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"news_count is {count!r}; expected a whole number >= 0")
    documents = answer["documents"]
    if not isinstance(documents, list) or len(documents) != sent:
        raise ValueError(f"documents: expected a list of {sent} answers, one per document sent")
    return score, confidence, count, [(_bounded(d["score"], "documents[].score", -1.0, 1.0),
                                       _bounded(d["weight"], "documents[].weight", 0.0, 1.0)) for d in documents]


def _bounded(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name} is {value!r}; expected a number in [{low:g}, {high:g}]")
    return float(value)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
