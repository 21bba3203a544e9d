"""`signal-engine train` with the config's ``news:`` section: the bundle carries the cached text-train head (not
retrained), `signal-engine serve`'s wiring loads it in-process, and a bundle trained without the section has none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from signal_engine.cli import main
from signal_engine.commands.serve import news_expert
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.text import model as text_model
from signal_engine.text.serving import NewsHead
from tests.serving_support import text_model_folder

LENIENT = {"max_sharpe_shortfall": 100.0, "max_confidence_ece": 1.0, "max_log_loss_excess": 100.0,
           "max_qlike_excess": 100.0}


def test_train_puts_the_cached_text_head_into_the_bundle(goog_csv: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cached = text_model_folder()
    before = {p.name: p.stat().st_mtime_ns for p in cached.rglob("*")}
    monkeypatch.setattr(text_model, "train_text_model", lambda **_: pytest.fail("the cached head was retrained"))
    config = tmp_path / "news.json"
    config.write_text(json.dumps({"walk_forward": {"refit_every": 504}, "quality": LENIENT,
                                  "news": {"enabled": True, "model": str(cached), "max_documents": 40}}))
    registry = tmp_path / "models"
    assert main(["train", "--no-book", "--prices", str(goog_csv), "--end", "2010-06-30", "--config", str(config),
                 "--registry", str(registry)]) == 0
    folder = read_current(registry)
    bundle = ServingBundle.load(folder)
    assert bundle.news is not None and bundle.news.max_documents == 40 and bundle.experts == (
        "trend", "levels", "volatility")
    head = NewsHead.from_bytes((folder / "news" / "head.npz").read_bytes(), "head.npz")
    np.testing.assert_array_equal(head.intercept, text_model.load_text_model(cached).head.intercept_)
    assert {p.name: p.stat().st_mtime_ns for p in cached.rglob("*")} == before
    loaded = news_expert(folder, bundle)
    assert loaded is not None and loaded[0] == "news"
    answer = loaded[1].answer([], "2010-06-30T20:00:00Z")
    assert answer["news_score"] is None and answer["news_count"] == 0
