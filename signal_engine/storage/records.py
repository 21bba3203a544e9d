"""Typed records that collectors produce and stores keep.

Times are naive UTC ``datetime`` values throughout (MySQL ``DATETIME`` has no zone); a daily bar's
``timestamp`` is its session date at midnight, as in the CSV loader, and an intraday bar's is its open.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

DocumentKind = Literal["news", "reports"]
ActionKind = Literal["split", "dividend"]
PeriodType = Literal["annual", "quarterly", "trailing"]
OptionSide = Literal["call", "put"]


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar of ``symbol`` at ``timeframe`` (``1d``, ``1h``, ``5m``, ...)."""

    symbol: str
    timeframe: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    adj_close: float | None = None
    source: str = "unknown"

    @property
    def key(self) -> tuple[str, str, datetime, str]:
        """Stores keep one series per source: the source is part of the key."""
        return (self.symbol, self.timeframe, self.timestamp, self.source)

    def same_values(self, other: Bar) -> bool:
        """Whether prices, volume and adjusted close agree (the source may differ)."""
        return (self.open, self.high, self.low, self.close, self.volume, self.adj_close) == (
            other.open, other.high, other.low, other.close, other.volume, other.adj_close)


@dataclass(frozen=True)
class CorporateAction:
    """A split or a dividend, as its own record: prices are stored raw and adjusted when read.

    ``value`` is the split ratio (new shares per old: 4.0 for 4:1) or the cash dividend per share in the
    same (unadjusted) basis as the stored bars of that day. ``known_at`` is when the source first reported
    it (the fetch time of the payload), so a read ``as_of`` an earlier time does not apply it.
    """

    symbol: str
    kind: ActionKind
    ex_date: date
    value: float
    source: str
    known_at: datetime


@dataclass(frozen=True)
class Restatement:
    """A stored bar that a later collection changed: the values before and after."""

    before: Bar
    after: Bar
    recorded_at: datetime


@dataclass(frozen=True)
class Statistic:
    """One named quote statistic (market cap, trailing P/E, last sale price, ...) as of a time."""

    symbol: str
    name: str
    as_of: datetime
    value: float
    source: str


# The latest a fiscal period's figures are public: SEC 10-K/20-F (up to 120 days) and 10-Q (45 days), EU half-year
# reports (3 months). Used as an upper bound of the publication date when a period is first seen late (a backfill).
PUBLICATION_DEADLINE_DAYS: dict[str, int] = {"annual": 120, "quarterly": 90, "trailing": 90}


@dataclass(frozen=True)
class Fundamental:
    """One financial-statement item for one fiscal period, as known from ``known_at`` (point in time).

    Sources give the period end, not the publication date. A value first seen is known from the earlier of
    its fetch and the period's publication deadline (both are times by which it was public, so a backtest
    never sees it early); a changed value (a restatement) is a new version known from its fetch.
    """

    symbol: str
    item: str
    period_type: PeriodType
    period_end: date
    value: float
    source: str
    currency: str = "USD"
    known_at: datetime | None = None
    fetched_at: datetime | None = None

    def first_known_at(self) -> datetime:
        """When a first sighting of this value was public at the latest."""
        deadline = self.period_end + timedelta(days=PUBLICATION_DEADLINE_DAYS[self.period_type])
        bound = datetime(deadline.year, deadline.month, deadline.day)
        return min(bound, self.fetched_at) if self.fetched_at is not None else bound


@dataclass(frozen=True)
class OptionQuote:
    """One option contract's quote in a chain, as of the chain's fetch time."""

    contract: str
    underlying: str
    side: OptionSide
    expiration: date
    strike: float
    as_of: datetime
    last_price: float | None
    bid: float | None
    ask: float | None
    implied_volatility: float | None
    volume: float | None
    open_interest: float | None
    source: str


# The horizon of the stored implied-volatility series: 30 calendar days, as the VIX, so a chain-derived series is on
# the scale the offline study (the VIX beside the S&P 500) trained the volatility slot on.
IMPLIED_VOL_HORIZON_DAYS = 30


@dataclass(frozen=True)
class ImpliedVolatility:
    """The implied volatility of ``symbol`` derived from its stored option chains for one bar, point in time.

    Only quotes known at the bar's close (``as_of`` at or before it, at most a few days old) count, and ``spot`` is
    the bar's raw close (the traded price the strikes are quoted against, not the split- or dividend-adjusted one).
    ``implied_vol`` is the at-the-money volatility over the next ``horizon_days`` calendar days in annualised % (as
    the VIX is quoted); ``term_slope`` the at-the-money volatility at 90 days minus it, ``skew`` the 90% puts' minus
    the 110% calls' volatility at the horizon, both in % points and None where the chain says nothing.
    ``computed_at`` is when it was derived (the value is known at the bar's close whenever it was computed).
    """

    symbol: str
    timeframe: str
    timestamp: datetime
    horizon_days: int
    implied_vol: float
    spot: float
    computed_at: datetime
    term_slope: float | None = None
    skew: float | None = None


@dataclass(frozen=True)
class Document:
    """A news headline or a report, with its publication time (UTC) for point-in-time joins.

    ``id`` is stable across collections: the same article collected twice has the same id.
    """

    id: str
    kind: DocumentKind
    source: str
    symbols: tuple[str, ...]
    published_at: datetime
    title: str
    url: str | None = None
    publisher: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def stable_id(source: str, kind: str, native_id: str) -> str:
        """The id of a document from its source's own id (or link) for it."""
        return hashlib.sha256(f"{source}|{kind}|{native_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class WriteResult:
    """How a write changed a store: rows inserted, updated in place, and left as they were."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    disagreements: int = 0
    """Bars (of prices) that disagree with another source's bar at the same time beyond the tolerance."""

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(self.inserted + other.inserted, self.updated + other.updated,
                           self.unchanged + other.unchanged, self.disagreements + other.disagreements)

    @property
    def written(self) -> int:
        return self.inserted + self.updated


@dataclass(frozen=True)
class SignalAudit:
    """A signal that was served, with the ids of the inputs it was computed from."""

    symbol: str
    timeframe: str
    as_of: datetime
    signal: str
    score: float
    confidence: float
    position: float
    model_version: str
    inputs: dict[str, Any]
    served_at: datetime


@dataclass(frozen=True)
class Position:
    """The target exposure currently held in a symbol."""

    symbol: str
    quantity: float
    exposure: float
    updated_at: datetime


@dataclass(frozen=True)
class BookPosition:
    """A live book's position in one symbol after one bar (fraction of the book's capital), and each model's part."""

    book: str
    bar_time: datetime
    symbol: str
    position: float
    contributions: dict[str, float]


@dataclass(frozen=True)
class BookEventRow:
    """One stored event of a live book as plain data (``book_events``; ``OrchestrationEvent`` without pandas).

    ``value`` and ``threshold`` are NaN where the event has none; ``detail`` holds its further numbers and texts.
    """

    book: str
    bar_time: datetime
    seq: int
    component: str
    kind: str
    rule: str
    symbol: str
    model: str
    value: float
    threshold: float
    detail: dict[str, float | str]


@dataclass(frozen=True)
class BookSpan:
    """The bars a live book has stepped: the first, the latest and how many."""

    first: datetime
    latest: datetime
    bars: int


@dataclass(frozen=True)
class RiskEvent:
    """Something the risk layer did or saw (a cap applied, a drawdown limit hit, ...)."""

    symbol: str
    kind: str
    detail: dict[str, Any]
    occurred_at: datetime
