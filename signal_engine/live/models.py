"""A timeframe model of a whole-book bundle answering live: the Signal API's own MoE path, per symbol and bar.

The call at a bar is what ``POST /signals`` answers for the symbol's stored bars up to it (the same expert
query, the same combiner, calibration and risk layer), turned into the orchestrator's
:class:`~signal_engine.orchestration.adapter.TimeframeSignal` exactly as the backtest turns its MoE rows
(``signal_frame``): direction and size from the volatility-targeted position, with the model's own previous
position feeding the hold rule.
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
from signal_engine.ports import ExpertClient
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.combine import Combiner, NoExpertAnswered
from signal_engine.serving.messages import ExpertQuery
from signal_engine.serving.service import fingerprint_inputs

EXPERT_DEADLINE_S = 60.0


class ExpertFailure(SignalEngineError):
    """An expert of a timeframe model gave no usable answer: the book's step is not committed (retry it)."""


class LiveTimeframeModel:
    """One timeframe model (``spec``) of a book, answering from its bundle and an expert client."""

    def __init__(self, spec: TimeframeSpec, bundle: ServingBundle, experts: ExpertClient,
                 deadline_s: float = EXPERT_DEADLINE_S) -> None:
        self.spec = spec
        self.bundle = bundle
        self.experts = experts
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
        query = ExpertQuery(symbol, timeframe, rows, history=self.bundle.scores.volatility_window)
        replies = self.experts.ask(query, self.bundle.experts, self.deadline_s)
        answers: dict[str, Mapping[str, Any] | None] = {}
        for name in self.bundle.experts:
            reply = replies.get(name)
            if reply is None or not reply.ok or reply.answer is None:
                why = "not answered" if reply is None else (reply.error or "empty answer")
                raise ExpertFailure(f"{self.spec.name} model, {symbol} at {rows[-1]['timestamp']}: expert {name!r} "
                                    f"failed ({why}); the step is not committed, run it again")
            outputs = self.bundle.expert_outputs[name]  # a null output (no level yet) leaves the expert out, as
            answers[name] = reply.answer if all(_finite(reply.answer.get(o)) for o in outputs) else None  # the API
        closes = np.array([float(rows[-1]["close"])])
        fingerprint = self.combiner.fingerprint(*fingerprint_inputs(rows))
        try:
            decisions = self.combiner.decide([answers], closes, fingerprint.reshape(1, -1),
                                             np.array([previous_position], dtype=float),
                                             np.array([self.bundle.periods_per_year_of(symbol)]),
                                             learned=None if learner is None else learner.learned())
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


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)
