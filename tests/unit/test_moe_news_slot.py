"""``moe.news``: a fourth MoE expert whose score is the market frame's ``news_score`` (NaN: no news, it abstains).

Off by default, and then nothing of the default MoE changes (its experts, signals.csv's columns, the config's
document). On synthetic bars with an informative news score on every third bar the gate learns to weigh it
there, gives it 0 elsewhere, and the explanations name its contribution.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import (
    GateConfig,
    RunConfig,
    WalkForwardConfig,
    apply_overrides,
    load_config,
    moe_experts,
)
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.errors import ConfigError, InputError
from signal_engine.evaluation.backtest import SIGNAL_COLUMNS, SymbolResult, run_symbol, signal_columns
from signal_engine.workflow.news import NewsTraining
from signal_engine.workflow.training import check_exportable

NEWS_ON = {"moe": {"news": True}}


def test_the_news_slot_is_off_by_default_and_adds_one_expert_when_on() -> None:
    default = load_config("quick")
    assert moe_experts(default) == ("trend", "levels", "volatility")
    assert signal_columns(default) == SIGNAL_COLUMNS
    assert "news" not in default.to_dict()["moe"]  # configs, bundles and run hashes read as before the setting
    on = apply_overrides(default, NEWS_ON)
    assert moe_experts(on) == ("trend", "levels", "volatility", "news")
    assert signal_columns(on) == (*SIGNAL_COLUMNS, "gate_news")
    assert on.to_dict()["moe"]["news"] is True


@pytest.mark.parametrize("setting", ["gate", "combiner"])
def test_the_rule_gate_and_combiner_read_no_scores_so_the_news_slot_refuses_them(setting: str) -> None:
    with pytest.raises(ConfigError, match=f"'moe.news' adds the news expert, but the rule {setting} reads no"):
        apply_overrides(load_config("quick"), {"moe": {"news": True, setting: "rule"}})


def test_training_refuses_the_news_slot_without_the_text_expert_naming_the_setting_and_the_fix() -> None:
    on = apply_overrides(load_config("quick"), NEWS_ON)
    for news in (None, NewsTraining(), NewsTraining(enabled=False, max_documents=9)):
        with pytest.raises(ConfigError, match=re.escape("moe.news is true, but the bundle would not carry the text "
                                                        "expert")) as refused:
            check_exportable(on, news)
        assert "add 'news: {enabled: true}'" in str(refused.value) and "or set moe.news: false" in str(refused.value)
    check_exportable(on, NewsTraining(enabled=True))
    check_exportable(load_config("quick"))


def test_training_takes_the_news_slot_into_the_whole_book_and_online_learning_with_the_text_expert() -> None:
    on = apply_overrides(load_config("quick"), NEWS_ON)
    online = apply_overrides(on, {"moe": {"online": {"enabled": True}}})
    for config in (on, online):
        check_exportable(config, NewsTraining(enabled=True), book=True)
        with pytest.raises(ConfigError, match=re.escape("moe.news is true, but the bundle would not carry")):
            check_exportable(config, None, book=True)


def test_the_price_file_news_score_column_is_read_with_empty_cells_as_abstentions(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Date,Open,High,Low,Close,News_Score\n2020-01-02,1,1,1,1,0.25\n2020-01-03,1,1,1,1,\n"
                    "2020-01-06,1,1,1,1,-1\n", encoding="utf-8")
    np.testing.assert_array_equal(load_prices(path).bars["news_score"], [0.25, np.nan, -1.0])
    path.write_text("Date,Open,High,Low,Close,news_score\n2020-01-02,1,1,1,1,0.25\n2020-01-03,1,1,1,1,1.5\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=re.escape("'1.5' is not a news score; expected a number in [-1, 1]")):
        load_prices(path)


N, HORIZON, EVERY = 900, 5, 3


def synthetic(news: bool = True) -> PriceSeries:
    """A random walk; on every third bar a news score that is the sign of the next 5 bars' move, times 0.8."""
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, N)))
    bars = pd.DataFrame({"open": close, "high": close * 1.004, "low": close * 0.996, "close": close,
                         "volume": rng.uniform(1e6, 2e6, N)}, index=pd.bdate_range("2012-01-02", periods=N))
    forward = np.append(np.log(close[HORIZON:] / close[:-HORIZON]), np.full(HORIZON, np.nan))
    score = np.full(N, np.nan)
    score[::EVERY] = 0.8 * np.sign(forward[::EVERY])
    if news:
        bars["news_score"] = score
    return PriceSeries("SYN", "synthetic", bars)


def small(combiner: str) -> RunConfig:
    config = replace(load_config("quick"), walk_forward=WalkForwardConfig(
        initial_window=250, validation_bars=150, refit_every=100, min_test_bars=100), gate=GateConfig(min_rows=50))
    return apply_overrides(config, {"moe": {"news": True, "k": 4, "multistage": False, "combiner": combiner}})


@pytest.fixture(scope="module")
def weighted() -> SymbolResult:
    return run_symbol(synthetic(), small("weighted"))


def test_the_gate_weighs_an_informative_news_score_where_there_is_news_and_gives_it_zero_elsewhere(
        weighted: SymbolResult) -> None:
    signals, test_start = weighted.signals, small("weighted").walk_forward.test_start
    news = synthetic().bars["news_score"].to_numpy()[test_start:]
    present = np.isfinite(news)
    assert present.sum() > 150
    np.testing.assert_array_equal(signals["gate_news"].to_numpy()[~present], 0.0)
    gates = signals.loc[:, ["gate_trend", "gate_levels", "gate_volatility", "gate_news"]].to_numpy()
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-12)
    # dense routing over four experts starts at 1/4 each: the news expert, right on every bar it speaks, gets more
    assert signals["gate_news"].to_numpy()[present].mean() > 0.4
    assert (signals["gate_news"].to_numpy()[present] > gates[present, :3].max(axis=1)).mean() > 0.9
    assert weighted.diagnostics["moe"]["experts"]["news"] == "news_score"


def test_the_news_contribution_is_named_and_is_its_score_times_its_gate_weight(weighted: SymbolResult) -> None:
    explanations, signals = weighted.explanations, weighted.signals
    test_start = small("weighted").walk_forward.test_start
    news = synthetic().bars["news_score"].to_numpy()[test_start:]
    present = np.isfinite(news)
    contribution = explanations["contrib_news"].to_numpy()
    np.testing.assert_allclose(contribution[present], news[present] * signals["gate_news"].to_numpy()[present],
                               rtol=1e-12)
    np.testing.assert_array_equal(contribution[~present], 0.0)
    parts = explanations.loc[:, ["contrib_trend", "contrib_levels", "contrib_volatility", "contrib_news"]]
    np.testing.assert_allclose(parts.sum(axis=1), explanations["score"], atol=1e-12)


def test_the_meta_combiner_reads_the_news_score_and_its_gate_weight() -> None:
    result = run_symbol(synthetic(), small("meta"))
    assert result.diagnostics["moe"]["meta_training_rows"][-1] > 0
    news = synthetic().bars["news_score"].to_numpy()[small("meta").walk_forward.test_start:]
    present = np.isfinite(news)
    contribution = result.explanations["contrib_news"].to_numpy()
    # with news the meta-model's call follows it: its part of the margin has the news score's sign
    assert (np.sign(contribution[present]) == np.sign(news[present])).mean() > 0.9


def test_the_news_slot_without_its_column_is_refused_naming_the_column_and_the_fix() -> None:
    with pytest.raises(InputError, match=re.escape("has no 'news_score' column, which the news expert of moe.news "
                                                   "reads")):
        run_symbol(synthetic(news=False), small("weighted"))
