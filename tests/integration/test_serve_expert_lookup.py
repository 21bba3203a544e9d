"""The inference server finds a bundle's experts as the in-process client does: the symbol's own fit
(``kind/SYMBOL``), else the one fit for every symbol (``kind``, as ``tests/serving_support.py`` writes them)."""

from __future__ import annotations

import pytest

from sagemaker_jobs import serve
from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.serving.bundle_source import local_bundle
from signal_engine.serving.messages import ExpertQuery
from tests.serving_support import TRAIN_BARS, goog_registry, request_bars

pytestmark = pytest.mark.slow


def test_a_bundle_with_one_fit_per_expert_is_served_like_the_in_process_client() -> None:
    folder = local_bundle(goog_registry())
    model_dir, _ = serve.settings(["serve"], {"SM_MODEL_DIR": str(folder)})
    service = serve.ExpertService(model_dir)
    assert sorted(service.experts) == ["levels", "trend", "volatility"]
    rows = request_bars(TRAIN_BARS + 20)
    served = service.invoke({"symbol": "GOOG", "bars": rows, "history": 252,
                             "experts": ["trend", "levels", "volatility"]})
    client = InProcessExperts(folder / "experts")
    try:
        replies = client.ask(ExpertQuery("GOOG", "1d", rows, history=252), ("trend", "levels", "volatility"), 60.0)
    finally:
        client.close()
    for name, reply in replies.items():
        assert reply.ok and reply.answer == served["answers"][name]
    with pytest.raises(KeyError, match="neither trend/GOOG nor trend"):
        service.experts.pop("trend")
        service.invoke({"symbol": "GOOG", "bars": rows, "expert": "trend"})
