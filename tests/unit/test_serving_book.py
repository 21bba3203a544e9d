"""The Signal API serves the live book: a book symbol asked without bars gets the book's stored position and every
event of that bar (source book), a request with bars or a symbol no book holds gets the unmanaged MoE (source
unmanaged), as_of picks a stepped bar or is refused naming the book's range, GET /book answers the whole book; the
read path imports no pandas (the combiner Lambda carries none)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from signal_engine.adapters.inprocess_experts import InProcessExperts
from signal_engine.adapters.local_bars import LocalBars
from signal_engine.adapters.sql.database import SqlDatabase
from signal_engine.orchestration.live import bar_time_of
from signal_engine.serving.book import detail_text
from signal_engine.serving.bundle import ServingBundle, read_current
from signal_engine.serving.schema import Adjustment, BatchRequest, SignalRequest
from signal_engine.serving.service import ServingError, SignalService
from tests.book_support import BOOK, copy_of_book_database
from tests.serving_support import TRAIN_BARS, goog_registry, request_bars
from tests.unit.test_serving_service import MemoryAudit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlDatabase]:
    connected = SqlDatabase.connect(copy_of_book_database(tmp_path_factory.mktemp("book")))
    yield connected
    connected.close()


@pytest.fixture(scope="module")
def experts() -> Iterator[InProcessExperts]:
    client = InProcessExperts(read_current(goog_registry()) / "experts")
    yield client
    client.close()


@pytest.fixture(scope="module")
def bundle() -> ServingBundle:
    return ServingBundle.load(read_current(goog_registry()))


def make_service(bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase | None,
                 audit: MemoryAudit | None = None) -> SignalService:
    return SignalService(bundle, experts, audit or MemoryAudit(), LocalBars(None), deadline_s=30,
                         books=None if database is None else database.books)


def stored_events(database: SqlDatabase, when: datetime, symbol: str) -> list[tuple[object, ...]]:
    """The events of bar ``when`` for ``symbol`` or the whole book, read back through the pandas path."""
    rows = [e.as_row() for e in database.books.events(BOOK) if bar_time_of(e.timestamp) == when]
    return [(r["component"], r["kind"], r["rule"], r["symbol"], r["model"], r["value"], r["threshold"], r["detail"])
            for r in rows if r["symbol"] in (symbol, "")]


def answered_events(adjustments: list[Adjustment]) -> list[tuple[object, ...]]:
    nan = float("nan")
    return [(a.component, a.kind, a.rule, a.symbol, a.model, nan if a.value is None else a.value,
             nan if a.threshold is None else a.threshold, a.detail) for a in adjustments]


def same_rows(a: list[tuple[object, ...]], b: list[tuple[object, ...]]) -> bool:
    # NaN != NaN: compare through their JSON text (repr precision, NaN as NaN)
    return json.dumps(a) == json.dumps(b)


def test_a_book_symbol_gets_the_stored_position_to_the_last_bit(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    audit = MemoryAudit()
    response = make_service(bundle, experts, database, audit).signal(SignalRequest(symbol="goog"), "req-book")
    latest = database.books.latest(BOOK)
    assert latest is not None
    when, state = latest
    [stored] = [p for p in database.books.positions(BOOK) if p.symbol == "GOOG"]
    assert response.source == "book" and response.book is not None and response.book.name == BOOK
    assert response.position == stored.position  # the same bits
    assert response.position == float(state.positions[state.symbols.index("GOOG")])
    assert response.book.contributions == stored.contributions
    assert response.as_of == when.replace(tzinfo=UTC) == response.book.bar_time
    assert response.signal == ("buy" if stored.position > 0 else "sell" if stored.position < 0 else "hold")
    assert response.risk.held == {"buy": "long", "sell": "short", "hold": "flat"}[response.signal]
    assert response.book.allocation == dict(zip(state.models, state.allocation.tolist(), strict=True))
    assert response.risk.vol_forecast == float(state.vol[state.symbols.index("GOOG")])
    assert response.timeframe == "1d"
    # the MoE at the same bar still shows its experts, computed from the stored (shipped) bars up to the book's bar
    assert set(response.experts) == {"trend", "levels", "volatility"} and response.moe is not None
    assert sum(response.gate.values()) == pytest.approx(1.0) and response.moe_unavailable is None
    [entry] = audit.entries
    assert entry.position == response.position and entry.signal == response.signal
    assert entry.inputs["source"] == "book" and entry.inputs["request_id"] == "req-book"
    assert entry.inputs["book"] == {"name": BOOK, "bar_time": when.isoformat(), "contributions": stored.contributions}
    assert entry.inputs["bars"]["last"] == when.isoformat() and entry.inputs["moe"]["position"] == response.moe.position


def test_the_events_listed_are_the_stored_ones_of_that_bar(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    rows = database.books.event_rows(BOOK)
    busiest = max({e.bar_time for e in rows}, key=lambda t: sum(e.bar_time == t and e.symbol in ("GOOG", "")
                                                                for e in rows))
    response = make_service(bundle, experts, database).signal(SignalRequest(symbol="GOOG", as_of=busiest))
    expected = stored_events(database, busiest, "GOOG")
    assert len(expected) >= 3 and {row[3] for row in expected} == {"GOOG", ""}
    assert same_rows(answered_events(response.risk.adjustments), expected)
    assert response.as_of == busiest.replace(tzinfo=UTC)
    spx = make_service(bundle, experts, database).signal(SignalRequest(symbol="SPX", as_of=busiest))
    assert same_rows(answered_events(spx.risk.adjustments), stored_events(database, busiest, "SPX"))


def test_as_of_answers_the_last_stepped_bar_at_or_before_it(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    service = make_service(bundle, experts, database)
    bars = database.books.bar_times(BOOK)
    earlier = bars[20]
    for as_of in (earlier, earlier + timedelta(hours=12)):  # the bar itself, and a time before the next bar
        response = service.signal(SignalRequest(symbol="GOOG", as_of=as_of))
        [stored] = [p for p in database.books.positions(BOOK, earlier) if p.symbol == "GOOG"]
        assert response.source == "book" and response.as_of == earlier.replace(tzinfo=UTC)
        assert response.position == stored.position and response.book is not None
        assert response.book.contributions == stored.contributions
    assert bars[21] > earlier + timedelta(hours=12)


def test_as_of_before_the_books_first_bar_is_refused_naming_its_range(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    span = database.books.span(BOOK)
    assert span is not None
    with pytest.raises(ServingError) as caught:
        make_service(bundle, experts, database).signal(
            SignalRequest.model_validate({"symbol": "GOOG", "as_of": "2010-01-04"}))
    error = caught.value
    assert (error.status, error.error, error.fields[0].field) == (404, "bar_not_stepped", "as_of")
    assert f"{span.first.isoformat()} to {span.latest.isoformat()} ({span.bars} bars)" in error.message
    assert "2010-01-04T00:00:00 is before its first" in error.message


def test_a_request_with_bars_gets_the_unmanaged_answer_marked(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    request = SignalRequest.model_validate({"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 150)})
    audit = MemoryAudit()
    answered = make_service(bundle, experts, database, audit).signal(request)
    unmanaged = make_service(bundle, experts, None).signal(request)
    assert answered.source == unmanaged.source == "unmanaged"
    assert answered.book is None and answered.moe is None
    assert answered.position == unmanaged.position and answered.score == unmanaged.score
    assert audit.entries[0].inputs["source"] == "unmanaged"


def test_a_symbol_no_book_holds_gets_todays_answer(bundle: ServingBundle, experts: InProcessExperts,
                                                   tmp_path: Path) -> None:
    empty = SqlDatabase.connect(f"sqlite:///{tmp_path}/empty.db")
    response = make_service(bundle, experts, empty).signal(
        SignalRequest.model_validate({"symbol": "GOOG", "as_of": "2011-03-01"}))
    assert response.source == "unmanaged" and response.book is None
    empty.close()


def test_a_book_symbol_the_model_does_not_serve_is_answered_from_the_book_alone(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    response = make_service(bundle, experts, database).signal(SignalRequest(symbol="SPX"))
    [stored] = [p for p in database.books.positions(BOOK) if p.symbol == "SPX"]
    assert response.source == "book" and response.position == stored.position
    assert response.experts == {} and response.gate == {} and response.moe is None
    assert response.moe_unavailable is not None and "not trained for 'SPX'" in response.moe_unavailable


def test_a_batch_mixes_book_and_unmanaged_answers_in_request_order(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    batch = BatchRequest.model_validate({"requests": [
        {"symbol": "GOOG", "bars": request_bars(TRAIN_BARS + 150)}, {"symbol": "SPX"}, {"symbol": "AAPL"},
        {"symbol": "GOOG", "as_of": "2001-01-01"}]})
    response = make_service(bundle, experts, database).batch(batch, "b")
    assert [(s.symbol, s.source) for s in response.signals] == [("GOOG", "unmanaged"), ("SPX", "book")]
    assert [(e.index, e.status) for e in response.errors] == [(2, 404), (3, 404)]
    assert "requests[3].as_of" in response.errors[1].message


def test_get_book_answers_positions_allocations_risk_state_and_recent_events(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    answer = make_service(bundle, experts, database).book(recent_bars=3)
    [book] = answer.books
    latest = database.books.latest(BOOK)
    span = database.books.span(BOOK)
    assert latest is not None and span is not None
    when, state = latest
    assert (book.name, book.timeframe, book.bars) == (BOOK, "1d", span.bars)
    assert book.bar_time == when.replace(tzinfo=UTC) and book.first_bar_time == span.first.replace(tzinfo=UTC)
    assert [(p.symbol, p.position, p.contributions) for p in book.positions] == [
        (p.symbol, p.position, p.contributions) for p in database.books.positions(BOOK)]
    assert book.allocations == dict(zip(state.models, state.allocation.tolist(), strict=True))
    assert {m: v.target for m, v in book.models.items()} == dict(zip(state.models, state.target.tolist(), strict=True))
    assert [v.max_drawdown for v in book.models.values()] == state.tracker.max_drawdown.tolist()
    defender = book.risk.defender
    assert (defender.equity, defender.peak) == (state.defender.equity, state.defender.peak)
    assert defender.drawdown == pytest.approx(1 - state.defender.equity / state.defender.peak, abs=1e-15)
    assert (defender.start, defender.limit, defender.emergency) == (0.01, 0.04, 0.08)
    binding = {(c, r) for c, r, _, _ in state.active_limits}
    assert defender.status == ("emergency" if ("drawdown", "emergency") in binding else
                               "reducing" if ("drawdown", "drawdown") in binding else "normal")
    assert [(a.component, a.rule, a.symbol, a.model) for a in book.risk.active_limits] == list(state.active_limits)
    assert state.regime is not None and book.risk.regime is not None
    assert book.risk.regime.model_dump() == {"trend": state.regime.trend, "volatility": state.regime.volatility,
                                             "liquidity": state.regime.liquidity}
    last3 = database.books.bar_times(BOOK)[-3:]
    expected = [e.as_row() for e in database.books.events(BOOK) if bar_time_of(e.timestamp) in last3]
    got = [{"timestamp": e.bar_time.replace(tzinfo=None), "component": e.component, "kind": e.kind, "rule": e.rule,
            "symbol": e.symbol, "model": e.model, "detail": detail_text({k: float("nan") if v is None else v
                                                                         for k, v in e.detail.items()})}
           for e in book.recent_events]
    assert got == [{k: (pd.Timestamp(str(v)).to_pydatetime() if k == "timestamp" else v) for k, v in row.items()
                    if k not in ("value", "threshold")} for row in expected]
    assert book.recent_bars == 3


def test_get_book_errors_name_what_is_stored(bundle: ServingBundle, experts: InProcessExperts,
                                             database: SqlDatabase, tmp_path: Path) -> None:
    with pytest.raises(ServingError, match=r"no book 'hourly'; the store holds daily") as unknown:
        make_service(bundle, experts, database).book("hourly")
    assert unknown.value.status == 404
    empty = SqlDatabase.connect(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(ServingError, match="the store holds no live book") as none:
        make_service(bundle, experts, empty).book()
    assert none.value.status == 404 and none.value.error == "no_book"
    with pytest.raises(ServingError, match="this deployment has no book store"):
        make_service(bundle, experts, None).book()
    empty.close()


def test_the_book_read_path_imports_no_pandas(database: SqlDatabase) -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pandas"] = None  # any import of pandas fails, as in the combiner Lambda's package
        import sqlalchemy as sa
        from signal_engine.adapters.sql.books import SqlBookStore
        from signal_engine.serving.book import BookDesk
        desk = BookDesk(SqlBookStore(sa.create_engine({str(database.engine.url)!r})))
        print(desk.view({BOOK!r}).positions[0].position, desk.answer({BOOK!r}, "GOOG", None).position.position)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    [stored] = [p for p in database.books.positions(BOOK) if p.symbol == "GOOG"]
    assert result.stdout.split() == [repr(stored.position)] * 2


class _LastBars:
    """A bar source whose symbol stopped trading at ``last``: it has no bar after it."""

    def __init__(self, last: datetime) -> None:
        self.last = last
        self.asked: list[tuple[str, str, datetime | None, int]] = []

    def recent_bars(self, symbol: str, timeframe: str, end: datetime | None, count: int) -> list[dict[str, object]]:
        self.asked.append((symbol, timeframe, end, count))
        when = min(self.last, end) if end is not None else self.last
        return [{"timestamp": when.isoformat(), "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": None}]


def test_a_book_answer_names_the_symbols_own_latest_bar(
    bundle: ServingBundle, experts: InProcessExperts, database: SqlDatabase
) -> None:
    span = database.books.span(BOOK)
    assert span is not None
    current = make_service(bundle, experts, database).signal(SignalRequest(symbol="GOOG"))
    assert current.book is not None and current.book.symbol_bar_time == current.book.bar_time  # GOOG traded then
    stopped = span.first.replace(tzinfo=None)
    source = _LastBars(stopped)
    service = SignalService(bundle, experts, MemoryAudit(), source, deadline_s=30, books=database.books)
    stale = service.signal(SignalRequest(symbol="SPX"))
    assert stale.source == "book" and stale.book is not None
    assert stale.book.symbol_bar_time == stopped.replace(tzinfo=UTC) < stale.book.bar_time
    assert ("SPX", "1d", span.latest.replace(tzinfo=None), 1) in source.asked
