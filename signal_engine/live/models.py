"""A timeframe model of a whole-book bundle answering live: the Signal API's own MoE path, per symbol and bar.

The call at a bar is what ``POST /signals`` answers for the symbol's stored bars up to it (the same expert
query, the same combiner, calibration and risk layer), turned into the orchestrator's
:class:`~signal_engine.orchestration.adapter.TimeframeSignal` exactly as the backtest turns its MoE rows
(``signal_frame``): direction and size from the volatility-targeted position, with the model's own previous
position feeding the hold rule.

A bundle whose gate has the news slot (``moe.news``; ``ServingBundle.news_slot``) reads the news as the API does:
the symbol's stored headlines that can count at the bar's decision time (its close), read from the document store
(:func:`~signal_engine.serving.news.bar_news`), are sent to the text expert beside the other experts, and the news
block's score is the slot's input (:func:`~signal_engine.serving.service.news_slot_input`). No document store, no
headline, or a timeframe without a close is an abstention (the slot's weight 0), as the API answers it. A text
expert that fails, or a document store that cannot be read, raises :class:`ExpertFailure` like a failing price
expert, where the API abstains: a committed bar is never stepped again, and once the text expert answers (the
step is retried) the book's call is the one the API then answers for that bar and the one the backtest measured
with the news; a book that abstained would keep a position neither gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.live.online import LiveLearner
from signal_engine.orchestration.adapter import TimeframeSignal
from signal_engine.orchestration.timeframes import TimeframeSpec
from signal_engine.ports import DocumentStore, ExpertClient
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.combine import Combiner, NoExpertAnswered
from signal_engine.serving.messages import ExpertReply
from signal_engine.serving.news import BarNews, answered_news, bar_news
from signal_engine.serving.service import expert_query, fingerprint_inputs, news_slot_input

EXPERT_DEADLINE_S = 60.0


class ExpertFailure(SignalEngineError):
    """An expert of a timeframe model gave no usable answer: the book's step is not committed (retry it)."""


class LiveTimeframeModel:
    """One timeframe model (``spec``) of a book, answering from its bundle and an expert client; ``documents`` is
    where a bundle with the news slot reads the headlines (None: its slot abstains at every bar)."""

    def __init__(self, spec: TimeframeSpec, bundle: ServingBundle, experts: ExpertClient,
                 deadline_s: float = EXPERT_DEADLINE_S, documents: DocumentStore | None = None) -> None:
        self.spec = spec
        self.bundle = bundle
        self.experts = experts
        self.documents = documents
        self.deadline_s = deadline_s
        self.combiner = Combiner(bundle)

    @property
    def bars_needed(self) -> int:
        """Bars the model reads up to the decision bar: what the Signal API reads from the store."""
        return 2 * self.bundle.min_bars

    def call(self, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]],
             previous_position: float) -> TimeframeSignal | None:
        """The model's call on ``symbol`` at the last of ``rows`` (oldest first; at most ``bars_needed`` are read).

        ``previous_position`` is the model's own position at the previous bar (NaN when unknown). None when the
        model has no call: too few bars, or a position that is not a number (no volatility forecast yet).
        A bundle that learns online decides here with its trained weights (the book step carries the learnt
        ones: :meth:`call_learning`).
        """
        return self._call(symbol, timeframe, rows, previous_position, None)

    def call_learning(self, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]],
                      previous_position: float, state: Mapping[str, Any] | None,
                      ) -> tuple[TimeframeSignal | None, dict[str, Any] | None]:
        """:meth:`call` for the book step: with a bundle that learns online (``bundle.online``), first learn the
        bars whose label is now known, decide with the learnt weights and keep this bar until its label is known
        (:mod:`signal_engine.live.online`); ``state`` is the learner's stored state (None at the start), and the
        new state is returned with the call (None for a bundle that does not learn online)."""
        if self.bundle.online is None:
            return self._call(symbol, timeframe, rows, previous_position, None), None
        learner = LiveLearner(self.bundle, state)
        learner.learn_known(list(rows)[-self.bars_needed:])
        signal = self._call(symbol, timeframe, rows, previous_position, learner)
        return signal, learner.to_json()

    def _call(self, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]], previous_position: float,
              learner: LiveLearner | None) -> TimeframeSignal | None:
        rows = list(rows)[-self.bars_needed:]
        if len(rows) < self.bundle.min_bars:
            return None
        news = self._news(symbol, timeframe, rows)
        asked = self.bundle.experts
        if news is not None and news.asks and self.bundle.news is not None:
            asked = (*asked, self.bundle.news.expert)
        replies = self.experts.ask(expert_query(self.bundle, symbol, timeframe, rows, news), asked, self.deadline_s)
        answers: dict[str, Mapping[str, Any] | None] = {}
        for name in self.bundle.experts:
            reply = replies.get(name)
            if reply is None or not reply.ok or reply.answer is None:
                why = "not answered" if reply is None else (reply.error or "empty answer")
                raise self._failure(symbol, rows, f"expert {name!r}", why)
            outputs = self.bundle.expert_outputs[name]  # a null output (no level yet) leaves the expert out, as
            answers[name] = reply.answer if all(_finite(reply.answer.get(o)) for o in outputs) else None  # the API
        closes = np.array([float(rows[-1]["close"])])
        fingerprint = self.combiner.fingerprint(*fingerprint_inputs(rows))
        try:
            decisions = self.combiner.decide([answers], closes, fingerprint.reshape(1, -1),
                                             np.array([previous_position], dtype=float),
                                             np.array([self.bundle.periods_per_year_of(symbol)]),
                                             learned=None if learner is None else learner.learned(),
                                             news=self._slot_input(news, replies, symbol, rows))
        except NoExpertAnswered:
            return None
        if learner is not None:
            learner.remember(str(rows[-1]["timestamp"]), fingerprint, decisions.scores[0], decisions.gate[0],
                             float(closes[0]))
        position = float(decisions.position[0])
        if not math.isfinite(position):
            return None
        vol = float(decisions.vol_forecast[0])
        return TimeframeSignal(
            model=self.spec.name, symbol=symbol, timestamp=pd.Timestamp(str(rows[-1]["timestamp"])),
            direction=int(np.sign(position)), size=min(abs(position), 1.0),
            confidence=float(np.clip(decisions.confidence[0], 0.0, 1.0)),
            expected_holding=self.spec.expected_holding, min_holding=self.spec.min_holding,
            max_holding=self.spec.max_holding, vol_forecast=vol, score=float(decisions.combined[0]),
        )

    def _news(self, symbol: str, timeframe: str, rows: Sequence[Mapping[str, Any]]) -> BarNews | None:
        """The headlines that can count at the last bar's close, for a bundle with the news slot (else None)."""
        if not self.bundle.news_slot or self.bundle.news is None:
            return None
        news = bar_news(self.documents, symbol, timeframe, str(rows[-1]["timestamp"]), self.bundle.news)
        if news.unreadable:
            raise self._failure(symbol, rows, "the document store", news.error or "unreadable")
        return news

    def _slot_input(self, news: BarNews | None, replies: Mapping[str, ExpertReply], symbol: str,
                    rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        """The news slot's input (NaN: it abstains), as the API's; None for a bundle without the slot."""
        settings = self.bundle.news
        if news is None or settings is None:
            return None
        if not news.asks:
            return np.array([news_slot_input(answered_news(news, None, settings, True))])
        reply = replies.get(settings.expert)
        view = answered_news(news, reply or ExpertReply(settings.expert, error="not answered"), settings, True)
        if not view.ok:
            raise self._failure(symbol, rows, f"expert {settings.expert!r}", view.error or "no answer")
        return np.array([news_slot_input(view)])

    def _failure(self, symbol: str, rows: Sequence[Mapping[str, Any]], what: str, why: str) -> ExpertFailure:
        return ExpertFailure(f"{self.spec.name} model, {symbol} at {rows[-1]['timestamp']}: {what} failed ({why}); "
                             "the step is not committed, run it again")


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)
