"""The Signal API's use cases: one signal, a batch, the live books, the models in use, health.

A symbol held by a live book (``books``: a BookReader), asked without bars, is answered from the book
(``source: book``, :mod:`signal_engine.serving.book`): the book's position at its latest stepped bar (or the last
at or before ``as_of``) and every event of that bar, with the Mixture of Experts at the same bar beside it. Any
other request gets the unmanaged Mixture of Experts (``source: unmanaged``). Bars come from the request body or,
when absent, from a :class:`BarSource` (the price store); the experts are asked in parallel through the
ExpertClient port; the NumPy :class:`~signal_engine.serving.combine.Combiner` decides; every signal served is
written to the audit log with its inputs' ids and model versions before it is returned (a signal that cannot be
audited is not served: 503).

When the bundle carries the text expert (``bundle.news``) and the service has a DocumentStore, each answer also
reads the symbol's stored headlines that can count at the decision time (the close of the bar decided;
:mod:`signal_engine.serving.news`), asks the text expert about them beside the other experts, and answers its
reading as ``news``. When the bundle's gate has the news slot (``moe.news``; ``ServingBundle.news_slot``) that
reading's score is the slot's input, so the news is part of the combined score (``news.in_combined_score`` true,
its weight ``gate.news``); otherwise it is evidence shown beside the signal. No headline, a failed text expert or no
document store is an abstention (null score, count 0; the slot's weight 0 and the others renormalised), answered
without asking the expert where there is nothing to ask.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from signal_engine.serving.book import RECENT_BARS, BookAnswer, BookBarMissing, BookDesk, book_timeframe
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.combine import Combiner, Decisions
from signal_engine.serving.messages import ExpertQuery, ExpertReply
from signal_engine.serving.news import BarNews, answered_news, bar_news, documents_digest
from signal_engine.serving.schema import (
    Adjustment,
    BatchItemError,
    BatchRequest,
    BatchResponse,
    BookResponse,
    ExpertView,
    FieldProblem,
    HealthResponse,
    ModelsResponse,
    MoeView,
    NewsView,
    RiskView,
    SignalRequest,
    SignalResponse,
    utc_naive,
)
from signal_engine.storage.records import SignalAudit

IMPLIED_VOL = "implied_vol"  # a bar's optional implied volatility (the loader's column; no pandas here)
IV_STRUCTURE = ("implied_term_slope", "implied_skew")  # a bar's optional option term slope and skew (% points)

if TYPE_CHECKING:
    from signal_engine.ports import AuditLog, BookReader, DocumentStore, ExpertClient


class BarSource(Protocol):
    """Recent bars of a symbol as JSON rows ``{timestamp, open, high, low, close[, volume]}``, oldest first."""

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None, count: int) -> list[dict[str, Any]]:
        """At most ``count`` bars up to ``end`` (naive UTC, inclusive; None for the latest); [] when none."""
        ...


@dataclass
class ServingError(Exception):
    """A request that cannot be answered: HTTP status, a short error name, the message and the fields at fault."""

    status: int
    error: str
    message: str
    fields: list[FieldProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


BATCH_WORKERS = 1


@dataclass(frozen=True)
class _Query:
    request: SignalRequest
    symbol: str
    timeframe: str
    rows: list[dict[str, Any]]
    source: str
    query: ExpertQuery
    news: BarNews | None = None


@dataclass(frozen=True)
class _Prepared:
    request: SignalRequest
    symbol: str
    timeframe: str
    rows: list[dict[str, Any]]
    source: str
    replies: Mapping[str, ExpertReply]
    news: BarNews | None = None
    news_view: NewsView | None = None


class SignalService:
    """Serves one bundle.

    Parameters
    ----------
    bundle : the model version to serve.
    experts : the ExpertClient (SageMaker runtime or in-process).
    audit : where every served signal is recorded; None only where auditing is switched off on purpose.
    bars : where bars come from when a request carries none (None: requests must carry bars).
    deadline_s : how long the experts get, together, per request.
    books : the live books (None: no book; every answer is the unmanaged one and ``GET /book`` answers 404).
    batch_workers : items of ``POST /signals/batch`` whose experts are asked at the same time (default 1: one item
        after another). Each item asks every expert at once, and the expert client's own pool (16 threads for the
        SageMaker endpoints) runs the calls, so keep ``batch_workers`` x experts within it: a call waiting in that
        pool counts against its deadline. More than 1 pays only where the experts can answer in parallel (several
        endpoint instances): against one inference server (a single Python process) it measured no faster
        (``benchmarks/bench_batch_scale.py``).
    documents : where the symbols' news is stored (DocumentDB in AWS, the local store in ``serve``), read when the
        bundle carries the text expert; None: its ``news`` block abstains, saying no document store is configured.
    """

    def __init__(self, bundle: ServingBundle, experts: ExpertClient, audit: AuditLog | None,
                 bars: BarSource | None = None, *, deadline_s: float = 2.0,
                 clock: Callable[[], datetime] | None = None, books: BookReader | None = None,
                 batch_workers: int = BATCH_WORKERS, documents: DocumentStore | None = None) -> None:
        self.bundle = bundle
        self.documents = documents
        self.batch_workers = batch_workers
        self.combiner = Combiner(bundle)
        self.experts = experts
        self.audit = audit
        self.bars = bars
        self.deadline_s = deadline_s
        self.books = books
        self._clock = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))

    # -- use cases -----------------------------------------------------------------------------------

    def health(self) -> HealthResponse:
        return HealthResponse(status="ok", model_version=self.bundle.version)

    def models(self) -> ModelsResponse:
        b = self.bundle
        served_by = self.experts.models()
        return ModelsResponse(model_version=b.version, created_at=b.created_at, profile=b.profile,
                              timeframe=b.timeframe, symbols=list(b.served_symbols), withheld=dict(b.withheld),
                              trained_through=dict(b.trained_through),
                              min_bars=b.min_bars, experts={e: served_by.get(e, "") for e in b.experts},
                              gate=b.gate.kind, combiner=b.combiner.kind,
                              news=served_by.get(b.news.expert, "") if b.news is not None else None)

    def signal(self, request: SignalRequest, request_id: str | None = None) -> SignalResponse:
        request_id = request_id or str(uuid.uuid4())
        book = self._book_of(request, "")
        if book is not None:
            return self._book_signal(request, book, "", request_id)
        prepared = self._prepare(request, "")
        answers = self._answers(prepared.replies)
        if not any(a is not None for a in answers.values()):
            raise ServingError(503, "experts_unavailable", _all_failed(prepared.replies))
        decisions = self._decide([prepared], [answers])
        return self._respond(prepared, answers, decisions, 0, request_id)

    def book(self, name: str | None = None, recent_bars: int = RECENT_BARS) -> BookResponse:
        """The live books (or the one called ``name``) at their latest stepped bar."""
        stored = self.books.books() if self.books is not None else []
        if not stored:
            where = "this deployment has no book store" if self.books is None else "the store holds no live book"
            raise ServingError(404, "no_book", f"no live book to answer: {where}; the book step (or `signal-engine "
                               "paper`) writes one after each collected bar")
        if name is not None and name not in stored:
            raise ServingError(404, "unknown_book", f"query parameter 'name': no book {name!r}; the store holds "
                               f"{', '.join(stored)}", [FieldProblem(field="name", problem="no such book")])
        assert self.books is not None
        desk = BookDesk(self.books)
        return BookResponse(books=[desk.view(b, recent_bars) for b in stored if name is None or b == name])

    def batch(self, request: BatchRequest, request_id: str | None = None) -> BatchResponse:
        """Every item of ``request``: those of a live book from the book, the others through the experts
        (``batch_workers`` items in flight), decided together, answered in the request's order."""
        request_id = request_id or str(uuid.uuid4())
        queries: list[tuple[int, _Query]] = []
        errors: list[BatchItemError] = []
        from_books: list[tuple[int, SignalResponse]] = []
        for index, item in enumerate(request.requests):
            try:
                book = self._book_of(item, f"requests[{index}].")
                if book is not None:
                    from_books.append((index, self._book_signal(item, book, f"requests[{index}].",
                                                                f"{request_id}/{index}")))
                    continue
                queries.append((index, self._query(item, f"requests[{index}].")))
            except ServingError as exc:
                errors.append(BatchItemError(index=index, symbol=item.symbol, status=exc.status, message=exc.message))
        prepared: list[tuple[int, _Prepared, dict[str, Mapping[str, Any] | None]]] = []
        for index, ready in zip((i for i, _ in queries), self._ask_all([q for _, q in queries]), strict=True):
            answers = self._answers(ready.replies)
            if not any(a is not None for a in answers.values()):
                errors.append(BatchItemError(index=index, symbol=ready.symbol, status=503,
                                             message=_all_failed(ready.replies)))
                continue
            prepared.append((index, ready, answers))
        signals: list[tuple[int, SignalResponse]] = list(from_books)
        if prepared:
            decisions = self._decide([p for _, p, _ in prepared], [a for _, _, a in prepared])
            for row, (index, ready, answers) in enumerate(prepared):
                try:
                    signals.append((index, self._respond(ready, answers, decisions, row, f"{request_id}/{index}")))
                except ServingError as exc:
                    errors.append(BatchItemError(index=index, symbol=ready.symbol, status=exc.status,
                                                 message=exc.message))
        return BatchResponse(signals=[r for _, r in sorted(signals, key=lambda pair: pair[0])],
                             errors=sorted(errors, key=lambda e: e.index))

    def _ask_all(self, queries: Sequence[_Query]) -> list[_Prepared]:
        """The experts' replies for every query, ``batch_workers`` queries at a time, in the queries' order."""
        if len(queries) <= 1 or self.batch_workers <= 1:
            return [self._ask(q) for q in queries]
        with ThreadPoolExecutor(max_workers=min(self.batch_workers, len(queries)),
                                thread_name_prefix="signal-batch") as pool:
            return list(pool.map(self._ask, queries))

    def _ask(self, query: _Query) -> _Prepared:
        news, settings = query.news, self.bundle.news
        asked = self.bundle.experts
        if settings is not None and news is not None and news.asks:
            asked = (*asked, settings.expert)
        replies = dict(self.experts.ask(query.query, asked, self.deadline_s))
        view = None
        if settings is not None and news is not None:
            view = answered_news(news, replies.pop(settings.expert, None), settings, self.bundle.news_slot)
        return _Prepared(query.request, query.symbol, query.timeframe, query.rows, query.source, replies, news, view)

    def _news(self, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]]) -> BarNews | None:
        """The headlines that can count at the close of the last bar (None when the bundle has no text expert)."""
        if self.bundle.news is None:
            return None
        return bar_news(self.documents, symbol, timeframe, str(rows[-1]["timestamp"]), self.bundle.news)

    # -- the book ------------------------------------------------------------------------------------

    def _book_of(self, request: SignalRequest, prefix: str) -> str | None:
        """The live book that answers ``request``: one holding its symbol, when the request sends no bars."""
        if self.books is None or request.bars is not None:
            return None
        symbol = request.symbol.upper()
        holders = BookDesk(self.books).holders(symbol)
        wanted = request.timeframe
        if wanted is None and len(holders) > 1 and symbol in self.bundle.symbols:
            wanted = self.bundle.timeframe_of(symbol)
        if wanted is not None:
            holders = [b for b in holders if book_timeframe(b) == wanted]
        if len(holders) > 1:
            frames = ", ".join(f"{b} ({book_timeframe(b) or 'timeframe unknown'})" for b in holders)
            raise ServingError(422, "validation_error", f"field '{prefix}timeframe': {symbol} is held by the books "
                               f"{frames}; send the timeframe of the one to answer",
                               [FieldProblem(field=f"{prefix}timeframe", problem="several books hold the symbol")])
        return holders[0] if holders else None

    def _book_signal(self, request: SignalRequest, book: str, prefix: str, request_id: str) -> SignalResponse:
        assert self.books is not None
        symbol = request.symbol.upper()
        try:
            answer = BookDesk(self.books).answer(book, symbol, utc_naive(request.as_of) if request.as_of else None)
        except BookBarMissing as exc:
            raise ServingError(404, "bar_not_stepped", str(exc).replace("field 'as_of'", f"field '{prefix}as_of'"),
                               [FieldProblem(field=f"{prefix}as_of", problem="before the book's first stepped bar")]
                               ) from None
        moe, prepared, unavailable = self._moe_at(request, book_timeframe(book), answer.bar_time)
        timeframe = (book_timeframe(book) or (self.bundle.timeframe_of(symbol) if symbol in self.bundle.symbols
                                              else book))
        context = answer.context.model_copy(update={"symbol_bar_time": self._last_bar(symbol, timeframe,
                                                                                      answer.bar_time)})
        response = SignalResponse(
            symbol=symbol, timeframe=timeframe, as_of=answer.bar_time, signal=answer.signal,  # type: ignore[arg-type]
            score=answer.score, confidence=answer.confidence, position=answer.position.position,
            experts=moe.experts if moe else {}, gate=moe.gate if moe else {},
            risk=RiskView(adjustments=answer.adjustments(), vol_forecast=answer.vol_forecast,
                          held=answer.held),  # type: ignore[arg-type]
            model_version=self.bundle.version, degraded=moe.degraded if moe else False,
            degraded_experts=moe.degraded_experts if moe else [], request_id=request_id, source="book",
            book=context,
            moe=MoeView(signal=moe.signal, score=moe.score, confidence=moe.confidence, position=moe.position,
                        risk=moe.risk) if moe else None,
            moe_unavailable=unavailable, news=moe.news if moe else None)
        self._record_book(request, response, answer, prepared)
        return response

    def _last_bar(self, symbol: str, timeframe: str, bar_time: datetime) -> datetime | None:
        """The symbol's latest stored bar at or before the book's bar, in UTC (None without a bar source or bars)."""
        if self.bars is None:
            return None
        rows = self.bars.recent_bars(symbol, timeframe, utc_naive(bar_time), 1)
        if not rows:
            return None
        stamp = datetime.fromisoformat(str(rows[-1]["timestamp"]))
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)

    def _moe_at(self, request: SignalRequest, timeframe: str | None, bar_time: datetime,
                ) -> tuple[SignalResponse | None, _Prepared | None, str | None]:
        """The unmanaged answer from the stored bars up to the book's bar (not audited), or why there is none."""
        asked = SignalRequest(symbol=request.symbol, timeframe=timeframe, as_of=bar_time, position=request.position)
        try:
            prepared = self._prepare(asked, "")
            answers = self._answers(prepared.replies)
            if not any(a is not None for a in answers.values()):
                return None, prepared, _all_failed(prepared.replies)
            decisions = self._decide([prepared], [answers])
            return self._unmanaged(prepared, answers, decisions, 0, ""), prepared, None
        except ServingError as exc:
            return None, None, exc.message

    def _record_book(self, request: SignalRequest, response: SignalResponse, answer: BookAnswer,
                     prepared: _Prepared | None) -> None:
        assert response.book is not None
        inputs: dict[str, Any] = {
            "request_id": response.request_id,
            "source": "book",
            "book": {"name": answer.book, "bar_time": answer.bar_time.isoformat(),
                     "contributions": response.book.contributions},
            "as_of_requested": request.as_of.isoformat() if request.as_of else None,
            "position_before": request.position,
            "risk": [a.model_dump() for a in response.risk.adjustments],
            "moe": response.moe.model_dump(mode="json") if response.moe else None,
            "moe_unavailable": response.moe_unavailable,
        }
        if prepared is not None:
            inputs["bars"] = _bars_inputs(prepared)
            if prepared.news_view is not None:
                inputs["news"] = _news_inputs(prepared)
        self._audit(response, {**inputs, **self._expert_inputs(response)})

    # -- steps ---------------------------------------------------------------------------------------

    def _prepare(self, request: SignalRequest, prefix: str) -> _Prepared:
        return self._ask(self._query(request, prefix))

    def _query(self, request: SignalRequest, prefix: str) -> _Query:
        symbol, timeframe = self._symbol(request, prefix)
        rows, source = self._bars(request, symbol, timeframe, prefix)
        news = self._news(symbol, timeframe, rows)
        query = expert_query(self.bundle, symbol, timeframe, rows, news)
        return _Query(request, symbol, timeframe, rows, source, query, news)

    def _symbol(self, request: SignalRequest, prefix: str) -> tuple[str, str]:
        symbol = request.symbol.upper()
        served = ", ".join(self.bundle.served_symbols) or "no symbol"
        if symbol not in self.bundle.symbols:
            raise ServingError(404, "unknown_symbol", f"field '{prefix}symbol': model {self.bundle.version} is not "
                               f"trained for {request.symbol!r}; it serves {served}",
                               [FieldProblem(field=f"{prefix}symbol", problem="not served by this model")])
        if symbol in self.bundle.withheld:
            raise ServingError(404, "symbol_withheld", f"field '{prefix}symbol': {symbol} failed the quality gate of "
                               f"model {self.bundle.version}, so it is not served ({self.bundle.withheld[symbol]}); "
                               f"this model serves {served}",
                               [FieldProblem(field=f"{prefix}symbol", problem="withheld by the quality gate")])
        timeframe = self.bundle.timeframe_of(symbol)
        if request.timeframe is not None and request.timeframe != timeframe:
            raise ServingError(422, "validation_error", f"field '{prefix}timeframe' is {request.timeframe!r}; model "
                               f"{self.bundle.version} serves {symbol} on {timeframe!r} bars (leave it out or send "
                               f"{timeframe!r})",
                               [FieldProblem(field=f"{prefix}timeframe", problem=f"expected {timeframe}")])
        return symbol, timeframe

    def _bars(self, request: SignalRequest, symbol: str, timeframe: str, prefix: str,
              ) -> tuple[list[dict[str, Any]], str]:
        end = utc_naive(request.as_of) if request.as_of is not None else None
        need = self.bundle.min_bars
        if request.bars is not None:
            rows = [_row(bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.implied_vol,
                         {IV_STRUCTURE[0]: bar.implied_term_slope, IV_STRUCTURE[1]: bar.implied_skew})
                    for bar in request.bars]
            if end is not None:
                rows = [r for r in rows if r["timestamp"] <= end.isoformat()]
            source = "request"
        elif self.bars is not None:
            rows = self.bars.recent_bars(symbol, timeframe, end, 2 * need)
            source = "store"
            if not rows:
                raise ServingError(404, "no_bars", f"symbol {symbol!r} ({timeframe}) has no "
                                   "stored bars" + (f" at or before {end.isoformat()}" if end else "") +
                                   "; send its recent bars in the field 'bars' or collect them first",
                                   [FieldProblem(field=f"{prefix}symbol", problem="no stored bars")])
        else:
            raise ServingError(422, "validation_error", f"field '{prefix}bars' is required here: this deployment "
                               f"has no price store; send at least {need} recent bars, oldest first",
                               [FieldProblem(field=f"{prefix}bars", problem="required")])
        if len(rows) < need:
            where = f"field '{prefix}bars'" if source == "request" else f"the price store for {symbol!r}"
            raise ServingError(422, "validation_error", f"{where} holds {len(rows)} bars"
                               + (f" at or before as_of {end.isoformat()}" if end else "")
                               + f"; model {self.bundle.version} needs at least {need} (GET /models: min_bars)",
                               [FieldProblem(field=f"{prefix}bars", problem=f"needs at least {need} bars")])
        return rows, source

    def _answers(self, replies: Mapping[str, ExpertReply]) -> dict[str, Mapping[str, Any] | None]:
        answers: dict[str, Mapping[str, Any] | None] = {}
        for name in self.bundle.experts:
            reply = replies.get(name)
            if reply is None or not reply.ok or reply.answer is None:
                answers[name] = None
                continue
            missing = [o for o in self.bundle.expert_outputs[name] if _finite(reply.answer.get(o)) is None]
            answers[name] = None if missing else reply.answer
        return answers

    def _decide(self, prepared: Sequence[_Prepared], answers: Sequence[Mapping[str, Mapping[str, Any] | None]],
                ) -> Decisions:
        closes = np.array([p.rows[-1]["close"] for p in prepared], dtype=float)
        fingerprints = np.vstack([self._fingerprint(p.rows) for p in prepared])
        positions = np.array([np.nan if p.request.position is None else p.request.position for p in prepared])
        periods = np.array([self.bundle.periods_per_year_of(p.symbol) for p in prepared])
        news = np.array([news_slot_input(p.news_view) for p in prepared]) if self.bundle.news_slot else None
        return self.combiner.decide(answers, closes, fingerprints, positions, periods, news=news)

    def _fingerprint(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.combiner.fingerprint(*fingerprint_inputs(rows))

    def _respond(self, prepared: _Prepared, answers: Mapping[str, Mapping[str, Any] | None], d: Decisions, row: int,
                 request_id: str) -> SignalResponse:
        response = self._unmanaged(prepared, answers, d, row, request_id)
        self._record(prepared, response)
        return response

    def _unmanaged(self, prepared: _Prepared, answers: Mapping[str, Mapping[str, Any] | None], d: Decisions,
                   row: int, request_id: str) -> SignalResponse:
        replies = prepared.replies
        served_by = self.experts.models()
        experts: dict[str, ExpertView] = {}
        for j, name in enumerate(self.bundle.experts):
            reply = replies.get(name) or ExpertReply(name, error="not asked")
            answer = answers.get(name)
            error = reply.error
            if answer is None and error is None:
                error = f"malformed answer: expected finite {list(self.bundle.expert_outputs[name])}"
            outputs = {o: _finite(answer.get(o)) for o in self.bundle.expert_outputs[name]} if answer else {}
            experts[name] = ExpertView(ok=answer is not None, outputs=outputs, score=_finite(d.scores[row, j]),
                                       error=error, latency_ms=round(reply.elapsed_ms, 3),
                                       model=reply.model or served_by.get(name, ""))
        degraded = [name for name, view in experts.items() if not view.ok]
        held = {1: "long", -1: "short", 0: "flat"}[int(d.held_direction[row])]
        as_of = datetime.fromisoformat(prepared.rows[-1]["timestamp"])
        response = SignalResponse(
            symbol=prepared.symbol, timeframe=prepared.timeframe, as_of=as_of, signal=d.signal(row),  # type: ignore[arg-type]
            score=float(d.combined[row]), confidence=float(d.confidence[row]), position=float(d.position[row]),
            experts=experts, gate={name: float(d.gate[row, j]) for j, name in enumerate(d.experts)},
            risk=RiskView(adjustments=[Adjustment(**a) for a in d.adjustments[row]],
                          vol_forecast=_finite(d.vol_forecast[row]), held=held),  # type: ignore[arg-type]
            model_version=self.bundle.version, degraded=bool(degraded), degraded_experts=degraded,
            request_id=request_id, source="unmanaged", news=prepared.news_view,
        )
        return response

    def _record(self, prepared: _Prepared, response: SignalResponse) -> None:
        inputs = {
            "request_id": response.request_id,
            "source": "unmanaged",
            "bars": _bars_inputs(prepared),
            "as_of_requested": prepared.request.as_of.isoformat() if prepared.request.as_of else None,
            "position_before": prepared.request.position,
            **self._expert_inputs(response),
            "risk": [a.model_dump() for a in response.risk.adjustments],
            **({"news": _news_inputs(prepared)} if prepared.news_view is not None else {}),
        }
        self._audit(response, inputs)

    def _expert_inputs(self, response: SignalResponse) -> dict[str, Any]:
        served_by = self.experts.models() if response.experts else {}
        return {"experts": {name: {"model": view.model or served_by.get(name, ""), "ok": view.ok, "error": view.error,
                                   "outputs": view.outputs, "score": view.score}
                            for name, view in response.experts.items()},
                "gate": response.gate, "degraded": response.degraded_experts}

    def _audit(self, response: SignalResponse, inputs: dict[str, Any]) -> None:
        if self.audit is None:
            return
        entry = SignalAudit(symbol=response.symbol, timeframe=response.timeframe, as_of=utc_naive(response.as_of),
                            signal=response.signal, score=response.score, confidence=response.confidence,
                            position=response.position, model_version=response.model_version, inputs=inputs,
                            served_at=self._clock())
        try:
            self.audit.record_signal(entry)
        except Exception as exc:
            raise ServingError(503, "audit_unavailable", f"the signal could not be written to the audit log "
                               f"({type(exc).__name__}); it is not served unaudited, retry later") from exc


def _bars_inputs(prepared: _Prepared) -> dict[str, Any]:
    rows = prepared.rows
    return {"source": prepared.source, "count": len(rows), "first": rows[0]["timestamp"], "last": rows[-1]["timestamp"],
            "sha256": bars_digest(rows)}


def expert_query(bundle: ServingBundle, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]],
                 news: BarNews | None) -> ExpertQuery:
    """What the experts are asked about the last of ``rows``: the bars, and the headlines ``news`` read for the
    bundle's text expert (the Signal API's and the live book step's query)."""
    return ExpertQuery(symbol, timeframe, rows, history=bundle.scores.volatility_window,
                       documents=news.rows if news is not None else (),
                       decision_time=news.at.isoformat() if news is not None and news.at is not None else None,
                       document_experts=(bundle.news.expert,) if bundle.news is not None else ())


def news_slot_input(view: NewsView | None) -> float:
    """The news slot's score for one answer: the news block's aggregate score, NaN (the slot abstains) when it
    abstained or there is no block."""
    return float("nan") if view is None or view.score is None else float(view.score)


def _news_inputs(prepared: _Prepared) -> dict[str, Any]:
    """What the news block was read from: the decision time, the documents sent (count and SHA-256) and the answer."""
    view, news = prepared.news_view, prepared.news
    assert view is not None and news is not None
    return {"decision_time": view.decision_time.isoformat() if view.decision_time else None,
            "documents": len(news.rows), "sha256": documents_digest(news.rows), "ok": view.ok, "error": view.error,
            "score": view.score, "confidence": view.confidence, "count": view.count, "model": view.model,
            "in_combined_score": view.in_combined_score, "headlines": [h.id for h in view.headlines]}


def bars_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    """A SHA-256 of the bars a signal was computed from (canonical JSON): the id of that input. A bar's
    ``implied_vol`` is part of it where the bar carries one, and the term slope and skew by name where it carries
    either (bars without them hash as before they existed)."""
    canonical = json.dumps([[r["timestamp"], r["open"], r["high"], r["low"], r["close"], r.get("volume"),
                             *([r[IMPLIED_VOL]] if r.get(IMPLIED_VOL) is not None else []),
                             *([{t: r.get(t) for t in IV_STRUCTURE}] if any(r.get(t) is not None for t in IV_STRUCTURE)
                               else [])]
                            for r in rows], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint_inputs(rows: Sequence[Mapping[str, Any]],
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """High, low, close and (when every row has one) volume of JSON bar rows, for ``Combiner.fingerprint``."""
    high = np.array([r["high"] for r in rows], dtype=float)
    low = np.array([r["low"] for r in rows], dtype=float)
    close = np.array([r["close"] for r in rows], dtype=float)
    volume = (np.array([r["volume"] for r in rows], dtype=float)
              if all(r.get("volume") is not None for r in rows) else None)
    return high, low, close, volume


def _row(timestamp: datetime, open_: float, high: float, low: float, close: float,
         volume: float | None, implied_vol: float | None = None,
         surface: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """A request bar as the experts' JSON row; ``implied_vol`` and each option-surface term (``surface``: the term
    slope and skew) only when the bar carries one."""
    row = {"timestamp": utc_naive(timestamp).isoformat(), "open": open_, "high": high, "low": low, "close": close,
           "volume": volume}
    extra = {IMPLIED_VOL: implied_vol, **(surface or {})}
    return {**row, **{name: value for name, value in extra.items() if value is not None}}


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _all_failed(replies: Mapping[str, ExpertReply]) -> str:
    reasons = "; ".join(f"{name}: {reply.error or 'malformed answer'}" for name, reply in replies.items())
    return f"no expert answered, so there is no signal to give ({reasons}); retry later"
