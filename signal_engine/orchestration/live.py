"""The live book: the orchestrator's step applied to each new bar, with the state persisted in a ``BookStore``.

``advance_book`` loads the book's latest state (or starts one), steps every new bar in time order and
commits each bar's state, positions and events in one transaction, so that:

- a bar already stepped, given again with the same inputs, changes nothing (its stored result is returned);
  given with other inputs (a restated bar), it is refused: the book cannot rewrite its past;
- a crash between computing a bar and committing it leaves the previous state: the next run steps it again;
- missed bars are caught up in order, one commit each, ending where stepping every bar would have;
- a bar older than the latest stepped one that was never stepped is refused with a ``StaleBarError`` that
  names the bar and the book's latest bar.

Bar times are stored as naive UTC datetimes with whole seconds (a time zone is converted to UTC).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.events import OrchestrationEvent
from signal_engine.orchestration.state import BookState, BookStateError, json_number
from signal_engine.orchestration.step import BarInputs, StaleBarError, initial_state, step
from signal_engine.orchestration.timeframes import TimeframeSpec
from signal_engine.ports import BookStore
from signal_engine.storage.records import BookPosition


@dataclass(frozen=True)
class SteppedBar:
    """One bar of a live book: the state after it, its positions and events; ``replayed`` when the bar had
    been stepped before and this is the stored result."""

    bar_time: datetime
    state: BookState
    positions: tuple[BookPosition, ...]
    events: tuple[OrchestrationEvent, ...]
    replayed: bool


def advance_book(
    store: BookStore,
    book: str,
    bars: Iterable[BarInputs],
    config: OrchestrationConfig,
    periods_per_year: float,
    specs: Sequence[TimeframeSpec],
    cost_bps: Mapping[str, float] | None = None,
) -> list[SteppedBar]:
    """Step ``bars`` (in increasing time order) into ``book`` and persist each one; returns one entry per bar.

    A new book starts from ``initial_state`` with the first bar's symbols and models and ``specs`` (the
    models' timeframes, in order); an existing one must have been built with the same settings
    (``BookStateError`` otherwise, naming the difference).
    """
    latest = store.latest(book)
    state: BookState | None = None if latest is None else latest[1]
    previous: datetime | None = None
    done: list[SteppedBar] = []
    for bar in bars:
        when = bar_time_of(bar.timestamp)
        if previous is not None and when <= previous:
            raise BookStateError(f"book {book!r}: bars must be given in increasing time order; {when} follows "
                                 f"{previous}")
        previous = when
        if state is None:
            state = initial_state(bar.symbols, bar.models, specs, config, periods_per_year, cost_bps)
        stored = state.bar_time
        digest = inputs_digest(bar)
        if stored is not None and when <= bar_time_of(stored):
            done.append(_replayed(store, book, when, digest, bar_time_of(stored)))
            continue
        result = step(state, bar, config, periods_per_year, cost_bps)
        positions = _positions(book, when, result.state)
        store.commit_step(book, when, result.state, positions, result.events,
                          previous=None if stored is None else bar_time_of(stored), inputs_digest=digest)
        state = result.state
        done.append(SteppedBar(when, state, positions, result.events, replayed=False))
    return done


def seed_book(store: BookStore, book: str, state: BookState, events: Sequence[OrchestrationEvent] = ()) -> bool:
    """Start the stored ``book`` at the state a batch run ended in (``OrchestrationResult.final_state``).

    A live book that starts flat with empty trackers needs years of bars to warm up; stepping those bars one by
    one ends in the batch run's final state (``signal-engine paper`` shows it to the last bit), so this stores
    that state directly, as the book's first bar, with its positions and ``events`` (the last bar's). New bars
    are then stepped from it. Returns True when stored, False when the store already holds exactly this state
    at this bar; a book stored otherwise is refused with a ``BookStateError`` and left as it is.
    """
    if state.bar_time is None:
        raise BookStateError(f"book {book!r}: a state before any bar cannot seed a book; expected a run's final state")
    when = bar_time_of(state.bar_time)
    latest = store.latest(book)
    if latest is not None:
        if latest[0] == when and latest[1].to_json() == state.to_json():
            return False
        raise BookStateError(f"book {book!r}: the store already holds it at bar {latest[0]} with another state; a "
                             "stored book is never overwritten (seed another book name or another database)")
    digest = hashlib.sha256(("seed:" + state.to_json()).encode()).hexdigest()  # no bar's inputs digest
    store.commit_step(book, when, state, _positions(book, when, state), tuple(events), previous=None,
                      inputs_digest=digest)
    return True


def _replayed(store: BookStore, book: str, when: datetime, digest: str, latest: datetime) -> SteppedBar:
    stepped = store.stepped(book, when)
    if stepped is None:
        raise StaleBarError(f"book {book!r}: bar {when} is older than the book's latest bar {latest} and was never "
                            "stepped; a book's bars are stepped in time order (start a new book to include it)")
    state, stored_digest = stepped
    if stored_digest != digest:
        raise BookStateError(f"book {book!r}: bar {when} was already stepped with other inputs (a restated bar?); "
                             "the book keeps what it decided then")
    since = when - timedelta(seconds=1)  # bar times are whole seconds: the events from this bar on
    events = tuple(store.events(book, since=since, until=when))
    return SteppedBar(when, state, tuple(store.positions(book, when)), events, replayed=True)


def _positions(book: str, when: datetime, state: BookState) -> tuple[BookPosition, ...]:
    final = state.final
    return tuple(
        BookPosition(book=book, bar_time=when, symbol=symbol, position=float(final[:, s].sum()),
                     contributions={model: float(final[m, s]) for m, model in enumerate(state.models)})
        for s, symbol in enumerate(state.symbols)
    )


def bar_time_of(timestamp: pd.Timestamp | datetime) -> datetime:
    """A bar's time as the store keys it: naive UTC with whole seconds (finer times are refused)."""
    stamp = pd.Timestamp(timestamp)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp != stamp.floor("s"):
        raise BookStateError(f"bar time {timestamp} has a fraction of a second; a book's bars are keyed by whole "
                             "seconds")
    return stamp.to_pydatetime()


def inputs_digest(bar: BarInputs) -> str:
    """SHA-256 of everything a bar's step reads (time, symbols, models, bars, returns, features, calls)."""

    def numbers(values: np.ndarray) -> list[float | str]:
        return [json_number(v) for v in np.asarray(values, dtype=float).ravel()]

    calls = [[None if c is None else [c.model, c.symbol, pd.Timestamp(c.timestamp).isoformat(), c.direction,
                                      json_number(c.size), json_number(c.confidence), c.expected_holding,
                                      c.min_holding, c.max_holding, json_number(c.vol_forecast), json_number(c.score)]
              for c in row] for row in bar.calls]
    document = {"timestamp": pd.Timestamp(bar.timestamp).isoformat(), "symbols": list(bar.symbols),
                "models": list(bar.models), "has_bar": [bool(b) for b in bar.has_bar],
                "asset_returns": numbers(bar.asset_returns), "features": numbers(bar.features), "calls": calls}
    text = json.dumps(document, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
