"""The gate's news slot (``moe.news``) served: the slot's input is the news block's score at the decision time, read
through the same aggregate the backtest and training read (``news_per_bar``); no news is an abstention (weight 0,
the others renormalised); a headline published at or after the bar's close never reaches the slot.

A made-up bundle (tests/unit/test_serving_combine_by_hand.py): a softmax gate with zero kernels, so its weights are
(0.4, 0.3, 0.2, 0.1) over trend, levels, volatility, news on every row; a text expert whose encoder maps a headline
with "beats" to (1, 0) and any other to (0, 1) and whose head's logits are log-probabilities, so a "beats" headline
reads p = (0.1, 0.7, 0.2) (direction +0.6) and any other p = (0.6, 0.2, 0.2) (direction -0.4). The documents are in
the local SQL document store (SQLite).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.moe.gate import SoftmaxGate
from signal_engine.moe.scores import weighted_score
from signal_engine.serving.bundle import BundleError, GateSpec, NewsSettings
from signal_engine.serving.combine import Combiner
from signal_engine.serving.export import softmax_gate_weights
from signal_engine.serving.messages import ExpertQuery, ExpertReply
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from signal_engine.storage.records import Document
from signal_engine.text.aggregate import NewsDecay, news_per_bar
from signal_engine.text.serving import NewsExpert, NewsHead
from tests.unit.test_serving_combine_by_hand import ALL, gate, levels, make_bundle, trend, vol

SLOTS = (*ALL, "news")
NEWS = NewsSettings(head_sha256="0" * 64, encoder="fake-encoder", half_life_hours=24.0, max_age_hours=168.0,
                    max_documents=50, headlines=3)
BAR = "2024-01-05"
T = datetime(2024, 1, 5, 21, 0)  # the daily bar's close: 16:00 in New York (EST)
BULLISH, BEARISH = 0.6, -0.4


class FakeEncoder:
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if "beats" in text else [0.0, 1.0] for text in texts])


def text_expert() -> NewsExpert:
    coef = np.log(np.array([[0.1, 0.6], [0.7, 0.2], [0.2, 0.2]]))  # column j: the log-probabilities of headline j
    head = NewsHead(coef, np.zeros(3), np.array([0, 1, 2]))
    decay = NewsDecay(half_life=timedelta(hours=24), max_age=timedelta(hours=168))
    return NewsExpert(head, FakeEncoder(), decay, {})  # type: ignore[arg-type]


def news_bundle(weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)) -> Any:
    return make_bundle(gate=gate(SLOTS, tuple(math.log(w) for w in weights)), news=NEWS)


class Experts:
    """The price experts' canned answers (trend 0.5, levels 0, volatility 0 at close 100) and the text expert."""

    def __init__(self) -> None:
        self.text = text_expert()
        self.asked: list[tuple[str, ...]] = []

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        self.asked.append(tuple(experts))
        canned = {"trend": trend(0.7, 0.2), "levels": levels(90.0, 110.0), "volatility": vol(0.01)}
        return {name: ExpertReply(name, answer=self.text.answer([dict(d) for d in query.documents],
                                                                query.decision_time) if name == "news"
                                  else canned[name]) for name in experts}

    def models(self) -> Mapping[str, str]:
        return {}


def headline(native: str, published: datetime, title: str) -> Document:
    return Document(Document.stable_id("test", "news", native), "news", "test", ("X",), published, title)


IN_WINDOW = [headline("a", T - timedelta(hours=24), "X beats forecasts"),
             headline("b", T - timedelta(hours=48), "X misses forecasts")]
LATER = [headline("at-close", T, "X beats every record"), headline("after", T + timedelta(hours=1), "X beats again"),
         headline("next-day", T + timedelta(days=1), "X misses badly")]


def store(tmp_path: Path, documents: list[Document]) -> Any:
    database = SqlDatabase.connect(f"sqlite:///{tmp_path / f'store-{len(documents)}.db'}")
    database.documents.write_documents(documents)
    return database.documents


def signal(tmp_path: Path, documents: list[Document] | None, bundle: Any = None) -> Any:
    service = SignalService(bundle or news_bundle(), Experts(), None,
                            documents=None if documents is None else store(tmp_path, documents))
    bars = [{"timestamp": BAR, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0}]
    return service.signal(SignalRequest.model_validate({"symbol": "X", "bars": bars}))


def test_the_news_blocks_score_is_the_slots_input_and_part_of_the_combined_score(tmp_path: Path) -> None:
    served = signal(tmp_path, IN_WINDOW)
    # weights 2^-1 and 2^-2 (24 h and 48 h old, half-life 24 h): (0.5 x 0.6 + 0.25 x -0.4) / 0.75 = 0.2 / 0.75
    assert served.news.score == pytest.approx(0.2 / 0.75, abs=1e-12)
    assert served.news.in_combined_score is True and served.news.count == 2
    assert served.gate == pytest.approx({"trend": 0.4, "levels": 0.3, "volatility": 0.2, "news": 0.1}, abs=1e-12)
    # 0.4 x 0.5 (trend) + 0.3 x 0 (levels) + 0.2 x 0 (volatility) + 0.1 x 0.2 / 0.75 (news)
    assert served.score == pytest.approx(0.2 + 0.1 * 0.2 / 0.75, abs=1e-12)
    assert set(served.experts) == set(ALL), "the news is answered in its own block, not as a bar expert"


@pytest.mark.parametrize("documents", [[], None], ids=["no-headline", "no-document-store"])
def test_without_news_the_slot_abstains_with_weight_zero_and_the_others_renormalised(
        tmp_path: Path, documents: list[Document] | None) -> None:
    served = signal(tmp_path, documents)
    assert served.news.abstained and served.news.score is None and served.news.in_combined_score is True
    assert served.gate == pytest.approx({"trend": 0.4 / 0.9, "levels": 0.3 / 0.9, "volatility": 0.2 / 0.9,
                                         "news": 0.0}, abs=1e-12)
    assert served.score == pytest.approx(0.4 / 0.9 * 0.5, abs=1e-12)
    assert served.degraded is False


def test_a_headline_published_at_or_after_the_bars_close_never_reaches_the_slot(tmp_path: Path) -> None:
    before = signal(tmp_path, IN_WINDOW)
    with_later = signal(tmp_path, [*IN_WINDOW, *LATER])
    assert (with_later.news.score, with_later.news.count, with_later.score, with_later.gate) == \
        (before.news.score, before.news.count, before.score, before.gate)
    only_later = signal(tmp_path, LATER)
    assert only_later.news.abstained and only_later.gate["news"] == 0.0
    one_second_before = signal(tmp_path, [headline("just-before", T - timedelta(seconds=1), "X beats")])
    assert one_second_before.news.score == pytest.approx(BULLISH, abs=1e-12) and one_second_before.gate["news"] > 0


def test_the_served_slot_input_is_the_per_bar_aggregate_the_backtest_and_training_read(tmp_path: Path) -> None:
    """``news_per_bar`` over the store (what ``backtest --news-from-store`` and ``train`` give each bar) at the
    served bar equals the served slot's input; with max_documents the most recent ones count, by hand."""
    documents = [headline(f"h{i}", T - timedelta(hours=30) + timedelta(hours=3 * i),
                          "X beats" if i % 3 else "X slips") for i in range(14)]  # i = 10..13 at or after T
    documents_store = store(tmp_path, documents)
    expert = text_expert()
    bars = pd.DatetimeIndex([pd.Timestamp("2024-01-04"), pd.Timestamp(BAR)])
    per_bar = expert.news_scores(documents_store, "X", bars, "1d", NEWS.max_documents)
    assert per_bar["news_score"].iloc[-1] == pytest.approx(
        news_per_bar(documents_store, "X", bars, "1d", expert.probabilities, decay=expert.decay,
                     max_documents=NEWS.max_documents)["news_score"].iloc[-1], abs=0)
    served = signal(tmp_path, documents)
    assert served.news.count == int(per_bar["news_count"].iloc[-1]) == 10
    assert served.news.score == pytest.approx(float(per_bar["news_score"].iloc[-1]), abs=1e-12)
    capped = signal(tmp_path, documents, make_bundle(gate=gate(SLOTS, tuple(math.log(w) for w in (0.4, 0.3, 0.2, 0.1))),
                                                     news=replace(NEWS, max_documents=2)))
    two = expert.news_scores(documents_store, "X", bars, "1d", 2)
    # the two most recent before T: i = 9, 3 h old, "X slips" (bearish), and i = 8, 6 h old, "X beats" (bullish)
    assert capped.news.count == 2 and capped.news.score == pytest.approx(float(two["news_score"].iloc[-1]), abs=1e-12)
    w3, w6 = 2 ** (-3 / 24), 2 ** (-6 / 24)
    assert capped.news.score == pytest.approx((w3 * BEARISH + w6 * BULLISH) / (w3 + w6), abs=1e-12)


def test_the_backtests_four_slot_gate_and_the_signal_api_decide_the_same_without_news() -> None:
    """The backtest with moe.news on and no news anywhere fits its gate on rows whose news score is NaN; exported as
    the bundle's four-slot gate, the served decision equals the backtest's at the same bars, the slot's weight is
    0, and it is what a three-expert gate fitted on the same rows decides."""
    rng = np.random.default_rng(5)
    prints = rng.normal(size=(400, len(FINGERPRINT_NAMES)))
    z = rng.normal(size=400)
    scores = np.column_stack((np.tanh(z + rng.normal(size=400)), rng.uniform(-1, 1, 400), rng.uniform(-1, 1, 400)))
    four = SoftmaxGate().fit(prints, z, expert_scores=np.column_stack((scores, np.full(400, np.nan))))
    three = SoftmaxGate().fit(prints, z, expert_scores=scores)
    bundle = make_bundle(gate=GateSpec("softmax", softmax_gate_weights(four, SLOTS), FINGERPRINT_NAMES), news=NEWS)
    assert bundle.news_slot
    answers = [{"trend": trend(0.6 + 0.02 * i, 0.2), "levels": levels(90.0, 110.0 + i), "volatility": vol(0.01)}
               for i in range(6)]
    rows = prints[:6]
    served = Combiner(bundle).decide(answers, np.full(6, 100.0), rows, news=np.full(6, np.nan))
    available = np.column_stack((np.ones((6, 3), dtype=bool), np.zeros(6, dtype=bool)))
    np.testing.assert_array_equal(served.gate, four.predict_proba(rows, available))  # the backtest's own call
    assert (served.gate[:, 3] == 0).all() and served.experts == SLOTS
    np.testing.assert_allclose(served.gate[:, :3], three.predict_proba(rows), rtol=0, atol=1e-12)
    backtest_score = weighted_score(np.where(served.available, served.scores, 0.0), served.gate)
    np.testing.assert_array_equal(served.combined, backtest_score)
    assert np.abs(served.combined).max() > 0.05, "the parity is not of zeros"


def test_a_gate_with_the_news_slot_needs_the_text_expert_in_the_bundle() -> None:
    with pytest.raises(BundleError, match=r"a news slot, but the bundle has no field 'news'"):
        make_bundle(gate=gate(SLOTS, (0.0, 0.0, 0.0, 0.0)))
    assert not make_bundle(news=NEWS).news_slot and news_bundle().news_slot
