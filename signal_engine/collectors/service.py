"""Use cases: collect a window from a source (raw payload first, then parse and write) and replay stored payloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from signal_engine.collectors.errors import SourceFormatError, SourceRejected
from signal_engine.collectors.raw import RAW_PREFIX, RawPayload, RawPayloadError
from signal_engine.collectors.registry import parse_payload
from signal_engine.collectors.sources import Parsed, Source, Window
from signal_engine.errors import SignalEngineError
from signal_engine.ports import Stores
from signal_engine.storage.adjust import unadjust_bars, unadjust_dividends
from signal_engine.storage.records import WriteResult


@dataclass(frozen=True)
class CollectRequest:
    """What to collect: a source's kind of data for some symbols over a window of dates (inclusive)."""

    source: str
    kind: str
    symbols: tuple[str, ...]
    start: date
    end: date
    timeframe: str = "1d"


@dataclass
class CollectReport:
    """What a collection or replay did: payloads kept, rows written per store, and what failed."""

    payloads: int = 0
    raw_keys: list[str] = field(default_factory=list)
    written: dict[str, WriteResult] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, results: dict[str, WriteResult]) -> None:
        for store, result in results.items():
            self.written[store] = self.written.get(store, WriteResult()) + result

    def as_dict(self) -> dict[str, Any]:
        return {"payloads": self.payloads, "raw_keys": self.raw_keys, "failures": self.failures,
                "skipped": len(self.skipped),
                "written": {store: vars(result) for store, result in self.written.items()}}

    def summary(self) -> str:
        parts = [f"{store} {r.inserted} new, {r.updated} updated, {r.unchanged} unchanged"
                 for store, r in sorted(self.written.items())]
        skipped = f"; {len(self.skipped)} rows skipped (no values)" if self.skipped else ""
        return f"{self.payloads} payloads; " + ("; ".join(parts) if parts else "nothing parsed") + skipped


class CollectionFailed(SignalEngineError):
    """Some payloads could not be fetched or parsed; the others were written and every raw payload is kept."""

    def __init__(self, report: CollectReport) -> None:
        self.report = report
        more = f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        super().__init__(f"{report.failures[0]}{more}; raw payloads are kept: fix and run `signal-engine replay`")


def collect(request: CollectRequest, source: Source, stores: Stores) -> CollectReport:
    """Fetch every symbol's payloads, writing each raw payload to the object store before parsing it.

    A payload that does not parse, or a symbol the source rejects, is reported and the others go on;
    :class:`CollectionFailed` is raised at the end if anything failed. A source that cannot be reached
    stops the collection at once.
    """
    if request.kind not in source.kinds:
        raise SignalEngineError(f"{source.name} has no kind {request.kind!r}; expected one of "
                                f"{', '.join(source.kinds)}")
    window = Window(request.start, request.end, request.timeframe)
    report = CollectReport()
    for symbol in request.symbols:
        try:
            for raw in source.fetch(request.kind, symbol, window):
                keep_raw(raw, stores)
                report.payloads += 1
                report.raw_keys.append(raw.key)
                parsed = source.parse(raw)
                report.skipped.extend(f"{raw.label}: {row}" for row in parsed.skipped)
                report.add(write_parsed(parsed, stores))
        except (SourceFormatError, SourceRejected) as exc:
            report.failures.append(str(exc))
    if report.failures:
        raise CollectionFailed(report)
    return report


def keep_raw(raw: RawPayload, stores: Stores) -> None:
    """Write the payload envelope to the object store (raw first: before any parsing)."""
    stores.objects.put(raw.key, raw.encode(), "application/json")


def write_parsed(parsed: Parsed, stores: Stores) -> dict[str, WriteResult]:
    """Write each kind of record to its store; each store's write is one transaction.

    Corporate actions go first; bars (and dividend amounts) that the source split-adjusted as of its fetch
    are turned back into raw prices with every split known by then (the payload's and the stored ones).
    """
    bars, actions = parsed.bars, parsed.corporate_actions
    if parsed.split_adjusted_as_of is not None and (bars or actions):
        as_of = parsed.split_adjusted_as_of
        symbols = {bar.symbol for bar in bars} | {action.symbol for action in actions}
        splits = [a for a in actions if a.kind == "split"]
        for symbol in symbols:
            splits += [a for a in stores.prices.corporate_actions(symbol, source=_source_of(parsed))
                       if a.kind == "split"]
        actions = unadjust_dividends(actions, splits, as_of)
        bars = unadjust_bars(bars, splits, as_of)
    writers: list[tuple[str, list[Any], Callable[[Any], WriteResult]]] = [
        ("corporate_actions", actions, stores.prices.write_corporate_actions),
        ("bars", bars, stores.prices.write_bars),
        ("statistics", parsed.statistics, stores.market.write_statistics),
        ("fundamentals", parsed.fundamentals, stores.market.write_fundamentals),
        ("options", parsed.options, stores.market.write_option_quotes),
        ("documents", parsed.documents, stores.documents.write_documents),
    ]
    return {name: write(rows) for name, rows, write in writers if rows}


def _source_of(parsed: Parsed) -> str | None:
    sources = [bar.source for bar in parsed.bars] + [action.source for action in parsed.corporate_actions]
    return sources[0] if sources else None


def replay(stores: Stores, *, source: str | None = None, kind: str | None = None, symbol: str | None = None,
           since: date | None = None) -> CollectReport:
    """Parse stored raw payloads again and write what they hold (idempotent: re-running changes nothing).

    Filters narrow the key prefix ``raw/SOURCE/KIND/SYMBOL/``; ``since`` keeps payloads fetched on or after
    that date. Payloads that still do not parse are reported, the rest are written.
    """
    report = CollectReport()
    for key in stores.objects.keys(_prefix(source, kind, symbol)):
        try:
            raw = RawPayload.decode(stores.objects.get(key), key)
            if (symbol is not None and raw.symbol != symbol) or (since is not None and raw.fetched_at.date() < since):
                continue
            report.payloads += 1
            report.raw_keys.append(key)
            parsed = parse_payload(raw)
            report.skipped.extend(f"{key}: {row}" for row in parsed.skipped)
            report.add(write_parsed(parsed, stores))
        except (SourceFormatError, RawPayloadError) as exc:
            report.failures.append(f"{key}: {exc}")
    if report.failures:
        raise CollectionFailed(report)
    return report


def _prefix(source: str | None, kind: str | None, symbol: str | None) -> str:
    parts = [RAW_PREFIX]
    for part in (source, kind, symbol):
        if part is None:
            break
        parts.append(part)
    return "/".join(parts) + "/"
