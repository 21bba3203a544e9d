"""The book's seed when training reuses the state the caller's backtest ended in: the same state that orchestrating
the frames again gives, and refused (so the seed is orchestrated again) whenever it was built from anything else."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pytest

from signal_engine.data.loader import PriceSeries
from signal_engine.orchestration import orchestrate
from signal_engine.orchestration.state import BookState
from signal_engine.workflow.book import _orchestrated, _seed_state
from tests.unit.test_orchestration_runner import _config, _market

PPY = 252.0
COSTS = {"A": 5.0, "B": 7.5}
Frames = Mapping[str, Mapping[str, pd.DataFrame]]


@pytest.fixture(scope="module")
def book() -> tuple[Frames, list[PriceSeries], BookState]:
    signals, closes = _market(n=330)
    members = [PriceSeries(s, "synthetic", closes[s].rename_axis("timestamp").to_frame("close")) for s in ("A", "B")]
    state = orchestrate(signals, closes, _config(), PPY, cost_bps=COSTS).final_state
    assert state is not None
    return signals, members, state


def _reused(book: tuple[Frames, list[PriceSeries], BookState], **changes: object) -> BookState | None:
    signals, members, state = book
    given: dict[str, object] = {"states": {"daily": state}, "name": "daily", "members": members,
                                "models": list(signals["A"]), "settings": _config(), "ppy": PPY, "costs": COSTS,
                                "signals": signals}
    return _orchestrated(**{**given, **changes})  # type: ignore[arg-type]


def test_the_backtests_final_state_is_what_orchestrating_its_frames_again_gives(book: tuple[Frames, list[PriceSeries],
                                                                                            BookState]) -> None:
    signals, members, state = book
    assert _reused(book) is state
    runs = {model: [None, None] for model in signals["A"]}  # not read: every frame is given
    again = _seed_state(members, runs, _config(), PPY, COSTS, signals)  # type: ignore[arg-type]
    assert again.to_json() == state.to_json()


@pytest.mark.parametrize("change", [
    {"states": None},
    {"signals": None},
    {"name": "1h"},
    {"models": ["short", "medium"]},
    {"settings": _config(warmup_bars=21)},
    {"ppy": 260.0},
    {"costs": {"A": 5.0, "B": 7.0}},
], ids=["no states", "no frames", "another book", "other models", "other settings", "other periods per year",
        "other costs"])
def test_a_state_built_from_other_inputs_is_not_the_seed(book: tuple[Frames, list[PriceSeries], BookState],
                                                         change: dict[str, object]) -> None:
    assert _reused(book, **change) is None


def test_a_state_of_other_symbols_or_an_earlier_last_bar_is_not_the_seed(
        book: tuple[Frames, list[PriceSeries], BookState]) -> None:
    signals, members, _ = book
    assert _reused(book, members=members[::-1]) is None
    longer = members[0].bars.iloc[-1:].set_axis([members[0].bars.index[-1] + pd.offsets.BDay()])
    extended = PriceSeries("A", "synthetic", pd.concat([members[0].bars, longer]).rename_axis("timestamp"))
    assert _reused(book, members=[extended, members[1]]) is None
    assert _reused(book, signals={**signals, "B": {"short": signals["B"]["short"]}}) is None
