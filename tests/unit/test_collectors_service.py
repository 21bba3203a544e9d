"""The collect and replay use cases on the embedded stores: raw first, idempotent, failures reported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from signal_engine.bootstrap import Settings, Storage, bootstrap
from signal_engine.collectors import yahoo
from signal_engine.collectors.errors import SourceFormatError, SourceUnavailable
from signal_engine.collectors.http import TransportError
from signal_engine.collectors.raw import RawPayload
from signal_engine.collectors.service import CollectionFailed, CollectRequest, collect, replay
from signal_engine.collectors.sources import Parsed
from tests.fixtures.payloads import FETCHED_AT, as_body, fixture_json, ok, scripted_client

CHART = "yahoo/chart_daily_AAPL.json"
WINDOW = (date(2024, 1, 2), date(2024, 1, 5))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    stores = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/store.db", object_store=str(tmp_path / "objects")))
    yield stores
    stores.close()


def bars_request(*symbols: str) -> CollectRequest:
    return CollectRequest("yahoo", "bars", symbols, *WINDOW)


def yahoo_source(routes: dict[str, list[object]]) -> yahoo.YahooSource:
    client, _ = scripted_client(routes)  # type: ignore[arg-type]
    return yahoo.YahooSource(client)


class BrokenParser(yahoo.YahooSource):
    """A release whose parser chokes on every payload (the fix comes later, through replay)."""

    def parse(self, raw: RawPayload) -> Parsed:
        raise SourceFormatError(raw.label, "chart.result[0].timestamp", "parser bug")


def test_collected_bars_are_stored_and_the_raw_payload_kept(storage: Storage) -> None:
    report = collect(bars_request("AAPL"), yahoo_source({"chart/AAPL": [ok(CHART)]}), storage)
    assert (report.payloads, report.written["bars"].inserted) == (1, 4)
    assert storage.prices.count_bars("AAPL") == 4
    kept = RawPayload.decode(storage.objects.get(report.raw_keys[0]), report.raw_keys[0])
    assert kept.body == ok(CHART).body


def test_a_second_run_of_the_same_window_writes_nothing_new(storage: Storage) -> None:
    source = yahoo_source({"chart/AAPL": [ok(CHART)]})
    first = collect(bars_request("AAPL"), source, storage)
    second = collect(bars_request("AAPL"), source, storage)
    written = second.written["bars"]
    assert (written.inserted, written.updated, written.unchanged) == (0, 0, 4)
    assert second.raw_keys == first.raw_keys
    assert len(list(storage.objects.keys("raw/"))) == 1


def test_a_payload_that_fails_to_parse_is_kept_and_replayable(storage: Storage) -> None:
    client, _ = scripted_client({"chart/AAPL": [ok(CHART)]})
    with pytest.raises(CollectionFailed, match=r"'chart.result\[0\].timestamp': parser bug.*signal-engine replay"):
        collect(bars_request("AAPL"), BrokenParser(client), storage)
    assert storage.prices.count_bars() == 0
    assert len(list(storage.objects.keys("raw/yahoo/bars/AAPL/"))) == 1
    report = replay(storage)
    assert report.written["bars"].inserted == 4


def test_one_bad_symbol_does_not_stop_the_others(storage: Storage) -> None:
    broken = fixture_json(CHART)
    broken["chart"]["result"][0]["indicators"]["quote"][0]["open"][0] = "n/a"
    source = yahoo_source({"chart/MSFT": [ok(as_body(broken))], "chart/AAPL": [ok(CHART)]})
    with pytest.raises(CollectionFailed) as caught:
        collect(bars_request("MSFT", "AAPL"), source, storage)
    assert caught.value.report.failures == [
        "yahoo bars MSFT: field 'chart.result[0].indicators.quote[0].open[0]': expected a number, got text 'n/a'"]
    assert storage.prices.count_bars("AAPL") == 4 and storage.prices.count_bars("MSFT") == 0
    assert len(list(storage.objects.keys("raw/yahoo/bars/MSFT/"))) == 1


def test_a_rejected_symbol_is_reported_by_status(storage: Storage) -> None:
    source = yahoo_source({"chart/ZZZZ": [ok("yahoo/chart_not_found.json", 404)]})
    with pytest.raises(CollectionFailed, match=r"query2\.finance\.yahoo\.com answered HTTP 404"):
        collect(bars_request("ZZZZ"), source, storage)


def test_an_unreachable_source_stops_the_collection_at_once(storage: Storage) -> None:
    client, transport = scripted_client({"chart/": [TransportError("dns", "name resolution failed")]})
    with pytest.raises(SourceUnavailable, match=r"cannot reach query2\.finance\.yahoo\.com"):
        collect(bars_request("AAPL", "MSFT"), yahoo.YahooSource(client), storage)
    assert len(transport.requests) == 1


def test_an_unknown_kind_is_refused_before_fetching(storage: Storage) -> None:
    with pytest.raises(Exception, match="yahoo has no kind 'quotes'"):
        collect(CollectRequest("yahoo", "quotes", ("AAPL",), *WINDOW), yahoo_source({}), storage)


def test_replay_filters_by_symbol(storage: Storage) -> None:
    source = yahoo_source({"chart/": [ok(CHART)]})
    collect(bars_request("AAPL", "MSFT"), source, storage)
    report = replay(storage, source="yahoo", kind="bars", symbol="MSFT")
    assert (report.payloads, report.written["bars"].unchanged) == (1, 4)


def test_replay_reports_an_object_that_is_not_an_envelope(storage: Storage) -> None:
    storage.objects.put("raw/yahoo/bars/AAPL/2024-01-05/junk.json", b"not json")
    with pytest.raises(CollectionFailed, match=r"raw/yahoo/bars/AAPL/2024-01-05/junk.json: .*not a raw payload"):
        replay(storage)


def test_an_envelope_round_trips_binary_bodies() -> None:
    payload = RawPayload("yahoo", "bars", "AAPL", "https://x.test", FETCHED_AT, 200, b"\xff\x00\x01")
    assert RawPayload.decode(payload.encode(), payload.key) == payload
