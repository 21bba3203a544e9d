"""What every source offers: fetch raw payloads for a kind of data, and parse them into records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from signal_engine.collectors.raw import RawPayload
from signal_engine.storage.records import Bar, CorporateAction, Document, Fundamental, OptionQuote, Statistic


@dataclass(frozen=True)
class Window:
    """The collection window: calendar dates (inclusive) and the bar timeframe for bar requests."""

    start: date
    end: date
    timeframe: str = "1d"


@dataclass
class Parsed:
    """Records parsed from one payload, by store."""

    bars: list[Bar] = field(default_factory=list)
    statistics: list[Statistic] = field(default_factory=list)
    fundamentals: list[Fundamental] = field(default_factory=list)
    options: list[OptionQuote] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Rows the source sent without usable values (``N/A`` prices, placeholder quotes), each with its path."""
    corporate_actions: list[CorporateAction] = field(default_factory=list)
    split_adjusted_as_of: datetime | None = None
    """Set when the bars' prices (and dividend amounts) are split-adjusted as of this time (Yahoo's chart is,
    as of its fetch): they are turned back into raw prices with the splits known by then before storing."""

    @property
    def count(self) -> int:
        return (len(self.bars) + len(self.statistics) + len(self.fundamentals) + len(self.options)
                + len(self.documents) + len(self.corporate_actions))


class Source(Protocol):
    """A market data source: its kinds, how to fetch each, how to parse what came back."""

    name: str
    kinds: tuple[str, ...]

    def fetch(self, kind: str, symbol: str, window: Window) -> Iterator[RawPayload]:
        """The payloads for one symbol and window, one per request made."""
        ...

    def parse(self, raw: RawPayload) -> Parsed:
        """Strictly parse one payload; a field of the wrong shape raises SourceFormatError naming it."""
        ...
