"""The live book step's call with the news slot: the symbol's stored headlines known before the bar's close go to the
text expert and its score is the slot's input, as the Signal API answers the same bar; no document store or no
headline abstains; a bundle without the news slot decides as before, without reading the store.

The made-up bundle and text expert of tests/unit/test_serving_news_slot.py: gate weights (0.4, 0.3, 0.2, 0.1) over
trend, levels, volatility, news on every row; trend answers p_up 0.7, p_down 0.2 (score 0.5), levels and volatility
score 0; a "beats" headline reads +0.6, any other -0.4; half-life 24 h.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signal_engine.adapters.routed_experts import RoutedExperts
from signal_engine.live.models import ExpertFailure, LiveTimeframeModel
from signal_engine.orchestration.timeframes import TimeframeSpec
from signal_engine.serving.messages import ExpertQuery, ExpertReply
from signal_engine.serving.schema import SignalRequest
from signal_engine.serving.service import SignalService
from signal_engine.storage.records import Document
from tests.unit.test_serving_combine_by_hand import make_bundle
from tests.unit.test_serving_news_slot import BAR, IN_WINDOW, LATER, NEWS, Experts, T, headline, news_bundle, store

SPEC = TimeframeSpec.from_horizon("short", 0, 5)
ROWS = [{"timestamp": BAR, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0}]
WITH_NEWS = 0.4 * 0.5 + 0.1 * 0.2 / 0.75  # the 24 h old "beats" (weight 1/2) and the 48 h old "misses" (1/4)
WITHOUT_NEWS = 0.4 / 0.9 * 0.5  # the slot abstains: trend's weight renormalised over the three price experts
DECISIVE = (0.45, 0.025, 0.025, 0.5)
"""Gate weights where the news decides: 0.45 x 0.5 + 0.5 x 0.6 = 0.525 with one "beats" headline (long: over the
0.5 threshold), 0.45 / 0.5 x 0.5 = 0.45 without news (flat)."""
JUST_BEFORE = headline("just-before", T - timedelta(seconds=1), "X beats")


def live_call(bundle: Any, documents: Any, experts: Any = None) -> Any:
    model = LiveTimeframeModel(SPEC, bundle, experts or Experts(), documents=documents)
    call = model.call("X", "1d", ROWS, math.nan)
    assert call is not None
    return call


def api_answer(bundle: Any, documents: Any) -> Any:
    service = SignalService(bundle, Experts(), None, documents=documents)
    return service.signal(SignalRequest.model_validate({"symbol": "X", "bars": ROWS}))


def test_the_live_call_with_stored_headlines_is_the_apis_answer_at_the_same_bar(tmp_path: Path) -> None:
    documents = store(tmp_path, IN_WINDOW)
    call, served = live_call(news_bundle(), documents), api_answer(news_bundle(), documents)
    assert call.score == pytest.approx(WITH_NEWS, abs=1e-12)
    assert (call.score, call.confidence) == (served.score, served.confidence)
    bullish = store(tmp_path, [JUST_BEFORE])
    call, served = live_call(news_bundle(DECISIVE), bullish), api_answer(news_bundle(DECISIVE), bullish)
    assert call.score == pytest.approx(0.45 * 0.5 + 0.5 * 0.6, abs=1e-12)
    # long at the volatility target's size, 0.01 per bar / forecast 0.01; confidence 0.5 + 0.5 x |score|
    assert (call.direction, call.size) == (1, 1.0) and call.confidence == pytest.approx(0.7625, abs=1e-12)
    assert (served.position, served.score, served.confidence) == (1.0, call.score, call.confidence)


def test_a_headline_published_at_or_after_the_bars_close_does_not_reach_the_live_call(tmp_path: Path) -> None:
    assert live_call(news_bundle(), store(tmp_path, [*IN_WINDOW, *LATER])).score == pytest.approx(WITH_NEWS, abs=1e-12)
    later = store(tmp_path, LATER)  # two "beats" at and after the close: long, had they counted
    assert live_call(news_bundle(), later).score == pytest.approx(WITHOUT_NEWS, abs=1e-12)
    flat = live_call(news_bundle(DECISIVE), later)
    assert (flat.direction, flat.size) == (0, 0.0) and flat.score == pytest.approx(0.45 * 0.5 / 0.5, abs=1e-12)


@pytest.mark.parametrize("headlines", [None, []], ids=["no-document-store", "no-headline"])
def test_without_news_the_slot_abstains_and_the_text_expert_is_not_asked(
        tmp_path: Path, headlines: list[Document] | None) -> None:
    experts = Experts()
    call = live_call(news_bundle(), None if headlines is None else store(tmp_path, headlines), experts)
    assert call.score == pytest.approx(WITHOUT_NEWS, abs=1e-12)
    assert experts.asked == [("trend", "levels", "volatility")]


class Unreadable:
    def read_documents(self, *args: Any, **kwargs: Any) -> list[Document]:
        raise ConnectionError("DocumentDB is unreachable")


class FailingText(Experts):
    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        replies = dict(super().ask(query, experts, deadline_s))
        if "news" in replies:
            replies["news"] = ExpertReply("news", error="ModelError: the endpoint failed")
        return replies


def test_a_failing_text_expert_or_document_store_fails_the_step_where_the_api_abstains(tmp_path: Path) -> None:
    with pytest.raises(ExpertFailure, match=r"short model, X at 2024-01-05: expert 'news' failed \(ModelError"):
        live_call(news_bundle(), store(tmp_path, IN_WINDOW), FailingText())
    with pytest.raises(ExpertFailure, match=r"the document store failed .*ConnectionError"):
        live_call(news_bundle(), Unreadable())
    assert api_answer(news_bundle(), Unreadable()).score == pytest.approx(WITHOUT_NEWS, abs=1e-12)


@pytest.mark.parametrize("bundle", [make_bundle(), make_bundle(news=NEWS)], ids=["no-text-expert", "news-as-evidence"])
def test_a_bundle_without_the_news_slot_decides_as_before_without_reading_the_store(bundle: Any) -> None:
    experts = Experts()
    call = live_call(bundle, Unreadable(), experts)  # a store read would raise
    assert call.score == pytest.approx(0.5 * 0.5, abs=1e-12)  # trend's weight 0.5 x its score 0.5
    assert call == live_call(bundle, None)
    assert experts.asked == [("trend", "levels", "volatility")]


class Canned:
    def __init__(self, model: str) -> None:
        self.model = model
        self.asked: list[tuple[str, ...]] = []

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        self.asked.append(tuple(experts))
        return {name: ExpertReply(name, answer={"by": self.model}) for name in experts}

    def models(self) -> Mapping[str, str]:
        return {"trend": f"{self.model}/trend", "news": f"{self.model}/news"}


def test_the_routed_client_asks_the_text_expert_at_its_route_and_the_others_in_process() -> None:
    local, endpoint = Canned("local"), Canned("endpoint")
    client = RoutedExperts(local, {"news": endpoint})
    query = ExpertQuery("X", "1d", ROWS, decision_time=datetime(2024, 1, 5, 21).isoformat())
    replies = client.ask(query, ("trend", "news", "levels"), 1.0)
    assert list(replies) == ["trend", "news", "levels"]
    assert {name: r.answer for name, r in replies.items()} == {
        "trend": {"by": "local"}, "news": {"by": "endpoint"}, "levels": {"by": "local"}}
    assert local.asked == [("trend", "levels")] and endpoint.asked == [("news",)]
    assert client.ask(query, ("trend",), 1.0)["trend"].answer == {"by": "local"} and endpoint.asked == [("news",)]
    assert client.models() == {"trend": "local/trend", "news": "endpoint/news"}
    client.close()
