"""The tuning study: the rule by hand, and the study at each refit given only that refit's training rows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import RunConfig, WalkForwardConfig
from signal_engine.evaluation import tuning_study
from signal_engine.evaluation.pooled_walkforward import PanelSeries, common_schedule, panel_series
from signal_engine.labels import make_labels
from signal_engine.tuning import lightgbm


def _pooled(high: float) -> dict[str, Any]:
    return {"differences": {"log_loss": {"tuned-default": {"difference": high - 0.01, "low": high - 0.02,
                                                           "high": high}}}}


@pytest.mark.parametrize(("high", "decision"), [(-0.001, "tuning qualifies"), (0.0, "default settings stay"),
                                                (0.004, "default settings stay")])
def test_decide(high: float, decision: str) -> None:
    assert tuning_study.decide(_pooled(high)) == decision


def test_each_study_sees_only_its_refits_training_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    index = pd.bdate_range("2019-01-01", periods=260)
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, len(index))))
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "f": np.arange(len(index))},
                         index=index)
    labels = make_labels(frame, np.full(len(index), 0.01), horizon=5, threshold=0.5)
    series: PanelSeries = panel_series("S", frame, labels.trend, labels.known_at_horizon())
    config = RunConfig(walk_forward=WalkForwardConfig(initial_window=150, refit_every=50, embargo=2))
    config = replace(config, trend=replace(config.trend, momentum=False))
    seen: list[tuple[pd.Timestamp, int, int]] = []
    real = lightgbm.tune_trend_expert

    def spy(expert: Any, X: pd.DataFrame, y: np.ndarray, bars: np.ndarray, known_at: np.ndarray,
            **kwargs: Any) -> Any:
        seen.append((X.index.max(), int(known_at.max()), int(bars.max())))
        return real(expert, X, y, bars, known_at, **kwargs)

    monkeypatch.setattr(lightgbm, "tune_trend_expert", spy)
    settings = lightgbm.TuningSettings(trials=2, max_estimators=5, embargo=2)
    blocks = common_schedule({"S": index}, config.walk_forward)
    monkeypatch.setattr(tuning_study.components, "trend_features", lambda _c: ("f",))
    for block in blocks:
        seen.clear()
        tuning_study.tuned_series(series, "S", block, config, settings, None)
        start = block.decide["S"][0]
        last_date, last_known, last_bar = seen[0]
        # every row given to the study is before the block, with its label known by the fit bar less 2
        assert last_date < index[start]
        assert last_bar <= block.fit_at["S"] and last_known <= block.fit_at["S"] - 2
