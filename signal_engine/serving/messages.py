"""What the combiner asks an expert and what comes back (the ExpertClient port's values; JSON-ready)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExpertQuery:
    """One symbol's recent bars, oldest first, as JSON rows ``{timestamp, open, high, low, close[, volume]}``.

    ``history`` asks the volatility expert for that many past forecasts (``vol_history``). ``documents`` (JSON rows
    ``{id, published_at, title}``, oldest first) and ``decision_time`` (ISO-8601 UTC) are what the experts named
    in ``document_experts`` (the text expert, ``news``) read instead of the bars.
    """

    symbol: str
    timeframe: str
    bars: Sequence[Mapping[str, Any]]
    history: int = 252
    documents: Sequence[Mapping[str, Any]] = ()
    decision_time: str | None = None
    document_experts: tuple[str, ...] = ()

    def payload(self, expert: str | None = None) -> dict[str, Any]:
        """The JSON body sent to an expert endpoint (``signal_engine.serving.experts.respond`` reads it).

        ``expert`` names the expert asked, so an endpoint can check it (or hold several experts).
        """
        body: dict[str, Any] = {"symbol": self.symbol, "timeframe": self.timeframe, "history": self.history,
                                "bars": list(self.bars)}
        if expert is not None:
            body["expert"] = expert
        return body

    def documents_payload(self) -> dict[str, Any]:
        """The JSON body for the document experts: the documents and the decision time, without the bars."""
        return {"symbol": self.symbol, "timeframe": self.timeframe, "decision_time": self.decision_time,
                "documents": list(self.documents)}


@dataclass(frozen=True)
class ExpertReply:
    """One expert's answer (``answer``) or why there is none (``error``: failed, timed out, malformed)."""

    expert: str
    answer: Mapping[str, Any] | None = None
    error: str | None = None
    elapsed_ms: float = 0.0
    model: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.error is None
