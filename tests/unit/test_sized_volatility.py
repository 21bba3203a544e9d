"""The sizing volatility forecast apart from the MoE's volatility score: config, the served expert, the workflow."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine import components
from signal_engine.config import PROFILES, RunConfig, load_config
from signal_engine.errors import ConfigError
from signal_engine.evaluation.backtest import SCORE_VOL_COLUMN
from signal_engine.experts.har import HarVolatility
from signal_engine.experts.sized_volatility import SizedVolatility
from signal_engine.experts.volatility import VolatilityExpert
from signal_engine.serving.experts import answer, market_frame
from signal_engine.workflow.plan import expert_accelerator, expert_model
from signal_engine.workflow.training import _score_vol


def with_volatility(volatility: str, sizing: str) -> RunConfig:
    quick = PROFILES["quick"]
    experts = replace(quick.moe.experts, volatility=volatility, sizing_volatility=sizing)
    return replace(quick, moe=replace(quick.moe, experts=experts))


def test_the_sizing_forecast_is_its_own_setting_with_the_volatility_choices(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("moe:\n  experts: {volatility: vol_har, sizing_volatility: volatility_blend}\n")
    experts = load_config("quick", path).moe.experts
    assert (experts.volatility, experts.sizing_volatility) == ("vol_har", "volatility_blend")
    path.write_text("moe:\n  experts: {sizing_volatility: garch}\n")
    with pytest.raises(ConfigError, match=re.escape("'moe.experts.sizing_volatility' is 'garch'; expected one of "
                                                    "volatility_blend, vol_har")):
        load_config("quick", path)


def test_the_served_volatility_expert_carries_both_models_only_when_they_differ() -> None:
    same = with_volatility("volatility_blend", "volatility_blend")
    assert isinstance(expert_model("volatility", same), VolatilityExpert)
    assert isinstance(components.served_volatility_expert(with_volatility("vol_har", "vol_har")), HarVolatility)
    apart = expert_model("volatility", with_volatility("volatility_blend", "vol_har"))
    assert isinstance(apart, SizedVolatility)
    assert isinstance(apart.score, VolatilityExpert) and isinstance(apart.sizing, HarVolatility)
    assert expert_accelerator("volatility", with_volatility("volatility_blend", "vol_har")) == "cpu"


def _bars(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.012, n)))
    spread = np.abs(rng.normal(0, 0.006, n))
    return pd.DataFrame({"open": close * (1 + rng.normal(0, 0.002, n)), "high": close * (1 + spread + 0.003),
                         "low": close * (1 - spread - 0.003), "close": close, "volume": rng.integers(100, 900, n)},
                        index=pd.bdate_range("2010-01-04", periods=n))


def test_the_api_sizes_by_the_sizing_model_and_scores_by_the_moes_model() -> None:
    bars = _bars()
    frame = market_frame(bars)
    target = np.append(np.diff(np.log(bars["close"].to_numpy())) ** 2, np.nan)
    served = SizedVolatility(score=VolatilityExpert(), sizing=HarVolatility()).fit(frame, target)
    reply = answer("volatility", served, bars, history=10, frame=frame)

    har = np.sqrt(HarVolatility().fit(frame, target).predict_variance(frame))
    blend = np.sqrt(VolatilityExpert().fit(frame, target).predict_variance(frame))
    assert reply["vol_forecast"] == pytest.approx(har[-1], rel=1e-12)
    np.testing.assert_allclose(reply["vol_history"], blend[-10:], rtol=1e-12)
    assert abs(har[-1] - blend[-1]) > 1e-6  # the two models do differ here

    plain = answer("volatility", VolatilityExpert().fit(frame, target), bars, history=10, frame=frame)
    assert plain["vol_forecast"] == pytest.approx(blend[-1]) and plain["vol_history"][-1] == plain["vol_forecast"]


def test_the_workflows_gate_rows_read_the_forecast_the_score_read() -> None:
    signals = pd.DataFrame({"vol_forecast": [0.02, 0.03], SCORE_VOL_COLUMN: [0.01, 0.015]})
    assert _score_vol(signals).tolist() == [0.01, 0.015]
    written_before = signals.drop(columns=SCORE_VOL_COLUMN)  # a walk-forward written before the column existed
    assert _score_vol(written_before).tolist() == [0.02, 0.03]


def test_by_default_har_sizes_and_the_blend_scores() -> None:
    experts = PROFILES["quick"].moe.experts
    assert (experts.volatility, experts.sizing_volatility) == ("volatility_blend", "vol_har")
    assert PROFILES["full"].moe.experts.sizing_volatility == "vol_har"
    assert isinstance(expert_model("volatility", PROFILES["quick"]), SizedVolatility)
