"""The book step's text expert: asked on the endpoint that ``EXPERT_ENDPOINTS`` names for ``news`` (the combiner's
variable), in process where none is named."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
from signal_engine.errors import ConfigError


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    module = importlib.import_module("lambda_src.book_step.handler")
    module.text_expert.cache_clear()
    yield module
    module.text_expert.cache_clear()


def test_the_news_entry_of_expert_endpoints_is_the_text_experts_endpoint(handler: ModuleType) -> None:
    assert handler.text_endpoint('{"news": "prod-experts", "trend": "other"}') == "prod-experts"
    assert handler.text_endpoint('{"trend": "prod-experts"}') is None
    assert handler.text_endpoint("") is None
    with pytest.raises(ConfigError, match=r"EXPERT_ENDPOINTS is 'prod-experts'; expected a JSON object"):
        handler.text_endpoint("prod-experts")


def test_the_text_expert_is_asked_on_that_endpoint_or_in_process_without_one(
        handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPERT_ENDPOINTS", raising=False)
    assert handler.text_expert() is None
    handler.text_expert.cache_clear()
    monkeypatch.setenv("EXPERT_ENDPOINTS", '{"news": "prod-experts"}')
    client = handler.text_expert()
    assert isinstance(client, SageMakerExperts) and client.models() == {"news": "prod-experts"}
