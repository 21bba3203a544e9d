"""The text expert's per-bar output: point in time, decayed by age, counted, and NaN (abstention) without news."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.storage.records import Document
from signal_engine.text.aggregate import NewsDecay, aggregate_news, news_per_bar

DAY = NewsDecay(half_life=pd.Timedelta(days=1), max_age=pd.Timedelta(days=3), prior_weight=1.0)


def test_hand_computed_weights_scores_and_confidence() -> None:
    published = [datetime(2024, 1, 1, 12), datetime(2024, 1, 2, 0), datetime(2024, 1, 2, 12)]
    directions = [1.0, -0.5, 0.25]
    times = [datetime(2024, 1, 2, 12), datetime(2024, 1, 3, 12)]
    frame = aggregate_news(published, directions, times, DAY)
    # at Jan 2 12:00: the first (1 day old, w 1/2) and second (12 h, w 2^-0.5); the third is published at the
    # decision time itself and does not count yet
    w1, w2 = 0.5, 2 ** -0.5
    assert frame["news_count"].tolist() == [2, 3]
    assert frame["news_weight"].iloc[0] == pytest.approx(w1 + w2)
    assert frame["news_score"].iloc[0] == pytest.approx((w1 * 1.0 + w2 * -0.5) / (w1 + w2))
    assert frame["news_confidence"].iloc[0] == pytest.approx((w1 + w2) / (w1 + w2 + 1.0))
    # at Jan 3 12:00: ages 2 days, 1.5 days, 1 day
    w = np.array([0.25, 2 ** -1.5, 0.5])
    assert frame["news_score"].iloc[1] == pytest.approx(float(w @ directions) / w.sum())
    assert frame["news_confidence"].iloc[1] == pytest.approx(w.sum() / (w.sum() + 1.0))


def test_no_news_abstains_with_nan_not_zero() -> None:
    frame = aggregate_news([datetime(2024, 1, 1)], [0.8], [datetime(2023, 12, 31), datetime(2024, 1, 1),
                                                          datetime(2024, 1, 4, 0, 0, 1)], DAY)
    # before publication, at the exact publication time, and once it is older than max_age (3 days)
    assert frame["news_score"].isna().all()
    assert frame["news_confidence"].tolist() == [0.0, 0.0, 0.0]
    assert frame["news_count"].tolist() == [0, 0, 0]


def test_a_document_exactly_max_age_old_still_counts() -> None:
    frame = aggregate_news([datetime(2024, 1, 1)], [-1.0], [datetime(2024, 1, 4)], DAY)
    assert frame["news_count"].iloc[0] == 1
    assert frame["news_weight"].iloc[0] == pytest.approx(0.125)
    assert frame["news_score"].iloc[0] == -1.0


def test_later_documents_never_change_earlier_rows() -> None:
    times = [datetime(2024, 1, d, 21) for d in (2, 3, 4)]
    early = aggregate_news([datetime(2024, 1, 2, 9)], [0.5], times, DAY)
    late = aggregate_news([datetime(2024, 1, 2, 9), datetime(2024, 1, 3, 22)], [0.5, -1.0], times, DAY)
    pd.testing.assert_frame_equal(early.iloc[:2], late.iloc[:2])
    assert late["news_score"].iloc[2] < early["news_score"].iloc[2]


@pytest.mark.parametrize(("published", "directions", "times", "message"), [
    ([datetime(2024, 1, 1)], [1.5], [datetime(2024, 1, 2)], r"\[-1, 1\]"),
    ([datetime(2024, 1, 1)], [math.nan], [datetime(2024, 1, 2)], "finite"),
    ([datetime(2024, 1, 1)], [0.1, 0.2], [datetime(2024, 1, 2)], "2 directions"),
    ([], [], [datetime(2024, 1, 2), datetime(2024, 1, 1)], "increasing"),
])
def test_bad_input_is_refused(published: list[datetime], directions: list[float], times: list[datetime],
                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate_news(published, directions, times, DAY)


def test_decay_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="half_life"):
        NewsDecay(half_life=pd.Timedelta(0))
    with pytest.raises(ValueError, match="prior_weight"):
        NewsDecay(prior_weight=0.0)


def test_per_bar_reads_the_symbols_documents_through_the_store_at_each_bars_close(tmp_path: Path) -> None:
    storage = bootstrap(Settings.from_env(database_url=f"sqlite:///{tmp_path / 'store.db'}"))

    def news(native: str, symbols: tuple[str, ...], published: datetime, title: str) -> Document:
        return Document(Document.stable_id("yahoo", "news", native), "news", "yahoo", symbols, published, title)

    try:
        storage.documents.write_documents([
            news("a", ("AAPL",), datetime(2024, 1, 5, 15, 0), "good"),    # Friday 10:00 New York: Friday's bar
            news("b", ("AAPL",), datetime(2024, 1, 5, 21, 0), "bad"),     # at Friday's close: Monday's bar
            news("c", ("MSFT",), datetime(2024, 1, 5, 15, 0), "bad"),     # another symbol
        ])
        scored: list[str] = []

        def scorer(texts: Sequence[str]) -> np.ndarray:
            scored.extend(texts)
            return np.array([[0.1, 0.7, 0.2] if t == "good" else [0.6, 0.1, 0.3] for t in texts])

        bars = pd.DatetimeIndex(["2024-01-04", "2024-01-05", "2024-01-08"])
        frame = news_per_bar(storage.documents, "AAPL", bars, "1d", scorer, decay=DAY)
    finally:
        storage.close()
    assert sorted(scored) == ["bad", "good"]
    assert list(frame.index) == list(bars)
    assert math.isnan(frame["news_score"].iloc[0]) and frame["news_count"].iloc[0] == 0
    assert frame["news_count"].iloc[1] == 1 and frame["news_score"].iloc[1] == pytest.approx(0.6)
    # Monday's close (21:00 UTC on the 8th): "good" is 3 days 6 h old (past max_age), "bad" 3 days old (counts)
    assert frame["news_count"].iloc[2] == 1 and frame["news_score"].iloc[2] == pytest.approx(-0.5)


def test_max_documents_keeps_the_most_recent_documents_of_each_window_by_hand() -> None:
    """Documents 1 h, 2 h and 3 h before T with directions +1, -1, +1 (half-life 1 h: weights 1/2, 1/4, 1/8): all
    three give (1/2 - 1/4 + 1/8) / (7/8) = 3/7; the two most recent (1/2 - 1/4) / (3/4) = 1/3; one: +1."""
    at = datetime(2024, 1, 5, 21, 0)
    published = [datetime(2024, 1, 5, 18, 0), datetime(2024, 1, 5, 19, 0), datetime(2024, 1, 5, 20, 0)]
    decay = NewsDecay(half_life=pd.Timedelta(hours=1), max_age=pd.Timedelta(days=1))
    scores = [float(aggregate_news(published, [1.0, -1.0, 1.0], [at], decay, cap)["news_score"].iloc[0])
              for cap in (None, 3, 2, 1)]
    assert scores == pytest.approx([3 / 7, 3 / 7, 1 / 3, 1.0], abs=1e-12)
    counts = [int(aggregate_news(published, [1.0, -1.0, 1.0], [at], decay, cap)["news_count"].iloc[0])
              for cap in (None, 2)]
    assert counts == [3, 2]
    with pytest.raises(ValueError, match="max_documents must be at least 1"):
        aggregate_news(published, [1.0, -1.0, 1.0], [at], decay, 0)
