"""The sources by name: their kinds, parsers and constructors."""

from __future__ import annotations

from collections.abc import Callable

from signal_engine.collectors import nasdaq, yahoo
from signal_engine.collectors.browser import BROWSER_HEADERS
from signal_engine.collectors.errors import SourceFormatError
from signal_engine.collectors.http import HttpClient
from signal_engine.collectors.raw import RawPayload
from signal_engine.collectors.sources import Parsed, Source

SOURCES: dict[str, Callable[[HttpClient], Source]] = {"yahoo": yahoo.YahooSource, "nasdaq": nasdaq.NasdaqSource}
KINDS: dict[str, tuple[str, ...]] = {"yahoo": yahoo.YahooSource.kinds, "nasdaq": nasdaq.NasdaqSource.kinds}
PARSERS: dict[str, Callable[[RawPayload], Parsed]] = {"yahoo": yahoo.parse, "nasdaq": nasdaq.parse}
REQUEST_HEADERS: dict[str, dict[str, str]] = {"yahoo": {**BROWSER_HEADERS, **yahoo.REQUEST_HEADERS},
                                              "nasdaq": {**BROWSER_HEADERS, **nasdaq.REQUEST_HEADERS}}


def parse_payload(raw: RawPayload) -> Parsed:
    """Parse a stored payload with its source's parser."""
    if raw.source not in PARSERS:
        raise SourceFormatError(raw.label, "source", f"unknown source {raw.source!r}; expected {', '.join(PARSERS)}")
    return PARSERS[raw.source](raw)
