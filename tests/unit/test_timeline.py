"""Point-in-time alignment: a document is usable at the first bar that closes after its publication."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from signal_engine.collectors import nasdaq
from signal_engine.storage.records import Document
from signal_engine.storage.timeline import bar_close_times, documents_per_bar, usable_at
from tests.fixtures.payloads import raw

DAYS = pd.DatetimeIndex(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"])  # Thu, Fri, Mon, Tue
HOURS = pd.DatetimeIndex(["2024-01-05 14:30", "2024-01-05 15:30", "2024-01-05 16:30"])


def doc(published: datetime, native: str = "x") -> Document:
    return Document(native, "news", "yahoo", ("AAPL",), published, native)


def test_a_daily_bar_closes_at_4pm_new_york_in_utc_across_daylight_saving() -> None:
    closes = bar_close_times(pd.DatetimeIndex(["2024-01-05", "2024-07-05"]), "1d")
    assert list(closes) == [pd.Timestamp("2024-01-05 21:00"), pd.Timestamp("2024-07-05 20:00")]


def test_an_intraday_bar_closes_one_bar_length_after_it_opens() -> None:
    assert bar_close_times(HOURS[:1], "1h")[0] == pd.Timestamp("2024-01-05 15:30")
    assert bar_close_times(HOURS[:1], "5m")[0] == pd.Timestamp("2024-01-05 14:35")


@pytest.mark.parametrize(("published", "bar"), [
    (datetime(2024, 1, 5, 15, 0), "2024-01-05"),   # 10:00 New York, during Friday's session
    (datetime(2024, 1, 5, 21, 0), "2024-01-08"),   # exactly at Friday's close: not usable at that close
    (datetime(2024, 1, 5, 22, 30), "2024-01-08"),  # after the close
    (datetime(2024, 1, 6, 12, 0), "2024-01-08"),   # Saturday
    (datetime(2024, 1, 3, 12, 0), "2024-01-04"),   # before the first bar
])
def test_daily_alignment(published: datetime, bar: str) -> None:
    assert usable_at([published], DAYS, "1d")[0] == pd.Timestamp(bar)


def test_intraday_alignment_uses_the_bar_that_contains_the_publication() -> None:
    at = usable_at([datetime(2024, 1, 5, 15, 10), datetime(2024, 1, 5, 15, 30)], HOURS, "1h")
    assert list(at) == [pd.Timestamp("2024-01-05 14:30"), pd.Timestamp("2024-01-05 15:30")]


def test_a_publication_after_the_last_close_has_no_bar_yet() -> None:
    assert pd.isna(usable_at([datetime(2024, 1, 9, 21, 0, 1)], DAYS, "1d")[0])


def test_no_document_is_joined_to_a_bar_that_closed_before_it() -> None:
    published = pd.date_range("2024-01-03", "2024-01-09 20:00", freq="37min")
    at = usable_at(published, DAYS, "1d")
    closes = dict(zip(DAYS, bar_close_times(DAYS, "1d"), strict=True))
    previous = {bar: closes[DAYS[i - 1]] if i else pd.Timestamp.min for i, bar in enumerate(DAYS)}
    assert all(closes[bar] > p >= previous[bar] for p, bar in zip(published, at, strict=True))


def test_documents_per_bar_counts_and_lists_ids_leaving_out_future_ones() -> None:
    frame = documents_per_bar([doc(datetime(2024, 1, 5, 15), "a"), doc(datetime(2024, 1, 5, 16), "b"),
                               doc(datetime(2024, 1, 6), "c"), doc(datetime(2024, 2, 1), "future")], DAYS, "1d")
    assert frame["documents"].tolist() == [0, 2, 1, 0]
    assert frame.loc["2024-01-05", "document_ids"] == ["a", "b"]


def test_a_date_only_nasdaq_headline_counts_from_the_next_session() -> None:
    headlines = nasdaq.parse(raw("nasdaq", "news", "nasdaq/news_AAPL.json")).documents
    at = usable_at([d.published_at for d in headlines], DAYS, "1d")
    assert list(at) == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-08")]


def test_an_unsupported_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="timeframe '1wk' is not supported"):
        bar_close_times(DAYS, "1wk")
