"""Nasdaq (api.nasdaq.com): quotes, daily historical bars, earnings, financial statements and news.

Every answer has the envelope ``{"data": .., "message": .., "status": {"rCode": 200, "bCodeMessage": ..}}``;
numbers come as display text (``"$184.40"``, ``"55,467,800"``, ``"-0.65%"``, ``"--"`` for none). Times are
US Eastern; a date without a time of day (news, earnings) is taken as published at the end of that day,
so it is never joined to a bar that closed before it could have been read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from signal_engine.collectors.errors import SourceFormatError
from signal_engine.collectors.fields import Field
from signal_engine.collectors.http import HttpClient
from signal_engine.collectors.raw import RawPayload
from signal_engine.collectors.sources import Parsed, Window
from signal_engine.storage.records import Bar, Document, Fundamental, PeriodType, Statistic
from signal_engine.storage.times import naive_utc, utc_now

NAME = "nasdaq"
BASE = "https://api.nasdaq.com/api"
SITE = "https://www.nasdaq.com"
EASTERN = ZoneInfo("America/New_York")
SESSION_CLOSE = time(16, 0)
END_OF_DAY = time(23, 59, 59)
FREQUENCIES: dict[str, PeriodType] = {"1": "annual", "2": "quarterly"}
STATEMENT_TABLES = ("incomeStatementTable", "balanceSheetTable", "cashFlowTable")
FINANCIALS_SCALE = 1000.0  # the financials tables are in thousands of US dollars
QUOTE_FIELDS = {"lastSalePrice": "last_sale_price", "netChange": "net_change",
                "percentageChange": "percentage_change", "volume": "volume"}
SIGNED_FIELDS = frozenset({"netChange", "percentageChange"})
KEY_STATS = {"PreviousClose": "previous_close", "OpenPrice": "open_price", "MarketCap": "market_cap"}
NEWS_LIMIT = 20
_NONE = {"", "--", "n/a", "na", "nm"}
REQUEST_HEADERS = {"Origin": SITE, "Referer": SITE + "/"}


class NasdaqSource:
    """Fetches Nasdaq payloads through an :class:`HttpClient`, and parses them strictly.

    Parameters
    ----------
    client
        The HTTP client (timeouts, retries, rate limit); it must send browser-like headers
        (``registry.REQUEST_HEADERS``), or Nasdaq never answers.
    base
        Where the API is (a local server in tests).
    """

    name: str = NAME
    kinds: tuple[str, ...] = ("quotes", "bars", "earnings", "financials", "news")

    def __init__(self, client: HttpClient, *, base: str = BASE) -> None:
        self._client = client
        self._base = base.rstrip("/")

    def fetch(self, kind: str, symbol: str, window: Window) -> Iterator[RawPayload]:
        if kind == "quotes":
            yield self._get(kind, symbol, f"{self._base}/quote/{symbol}/info", {"assetclass": "stocks"})
        elif kind == "bars":
            if window.timeframe != "1d":
                raise ValueError(f"nasdaq has daily bars only, not {window.timeframe!r}")
            yield self._get(kind, symbol, f"{self._base}/quote/{symbol}/historical",
                            {"assetclass": "stocks", "fromdate": window.start.isoformat(),
                             "todate": window.end.isoformat(), "limit": "9999"})
        elif kind == "earnings":
            yield self._get(kind, symbol, f"{self._base}/company/{symbol}/earnings-surprise", {})
        elif kind == "financials":
            for frequency in FREQUENCIES:
                yield self._get(kind, symbol, f"{self._base}/company/{symbol}/financials", {"frequency": frequency})
        elif kind == "news":
            yield self._get(kind, symbol, f"{self._base}/news/topic/articlebysymbol",
                            {"q": f"{symbol}|stocks", "offset": "0", "limit": str(NEWS_LIMIT), "fallback": "false"})
        else:
            raise ValueError(f"nasdaq has no kind {kind!r}; expected one of {', '.join(self.kinds)}")

    def parse(self, raw: RawPayload) -> Parsed:
        return parse(raw)

    def _get(self, kind: str, symbol: str, url: str, params: dict[str, str]) -> RawPayload:
        response = self._client.get(url, params)
        return RawPayload(NAME, kind, symbol, url, utc_now(), response.status, response.body, params)


def parse(raw: RawPayload) -> Parsed:
    """Parse a Nasdaq payload of any kind."""
    parsers = {"quotes": parse_quote, "bars": parse_historical, "earnings": parse_earnings,
               "financials": parse_financials, "news": parse_news}
    if raw.kind not in parsers:
        raise SourceFormatError(raw.label, "kind", f"unknown nasdaq payload kind {raw.kind!r}")
    return parsers[raw.kind](raw)


def _data(raw: RawPayload) -> Field:
    root = Field.parse(raw.body, raw.label)
    status = root["status"]
    code = status["rCode"].number()
    if code != 200:
        messages = status.get("bCodeMessage")
        detail = "; ".join(_message(m) for m in messages.items()) if messages else "no message"
        raise status["rCode"].fail(f"the source answered rCode {code:g}: {detail}")
    data = root["data"]
    if data.is_null():
        raise data.fail("is null although rCode is 200")
    return data


def _message(node: Field) -> str:
    text = node.object().get("errorMessage") if isinstance(node.value, dict) else node.value
    return str(text)


def amount(node: Field) -> float | None:
    """A display number (``$1,234.50``, ``-0.65%``, ``(1,234)``) as a float; ``--``/``N/A`` are None."""
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.number()
    text = node.text().strip()
    if text.lower() in _NONE:
        return None
    negative = text.startswith("(") and text.endswith(")")
    cleaned = re.sub(r"[$,%+()\s]", "", text)
    try:
        value = float(cleaned)
    except ValueError:
        raise node.fail(f"expected a number like $1,234.56, got {text!r}") from None
    return -value if negative else value


def _date(node: Field, layout: str = "%m/%d/%Y") -> date:
    try:
        return datetime.strptime(node.text().strip(), layout).date()
    except ValueError:
        raise node.fail(f"expected a date like {datetime(2024, 1, 31).strftime(layout)}, got {node.value!r}") from None


def _eastern(day: date, at: time) -> datetime:
    return naive_utc(datetime.combine(day, at, EASTERN).astimezone(UTC))


def parse_quote(raw: RawPayload) -> Parsed:
    """Last sale price, change, percentage change and volume, as of the last trade time, by session.

    ``primaryData`` is the latest trade; in the pre-market and after-hours sessions its time carries
    ``- PRE-MARKET`` / ``- AFTER HOURS`` and its statistics are stored as ``pre_market_*`` /
    ``after_hours_*``, while ``secondaryData`` (``CLOSED AT 4:00 PM ET ON Nov 18, 2019``) holds the regular
    session's close. Older bodies carry an unsigned ``netChange`` with ``deltaIndicator: "down"`` and the
    volume under ``keyStats.Volume``; ``N/A`` values are skipped.
    """
    data = _data(raw)
    primary = data["primaryData"]
    as_of, session = _trade_time(primary["lastTradeTimestamp"])
    rows = _session_rows(raw.symbol, primary, as_of, session)
    key_stats = data.get("keyStats")
    if key_stats is not None and not any(row.name.endswith("volume") for row in rows):
        volume = key_stats.get("Volume")
        if volume is not None and (value := amount(volume["value"])) is not None:
            rows.append(Statistic(raw.symbol, _session_name(session, "volume"), as_of, value, NAME))
    if key_stats is not None:
        for key, name in KEY_STATS.items():
            node = key_stats.get(key)
            if node is not None and (value := amount(node["value"])) is not None:
                rows.append(Statistic(raw.symbol, name, as_of, value, NAME))
    secondary = data.get("secondaryData")
    if secondary is not None and secondary.get("lastTradeTimestamp") is not None:
        closed_at, closed_session = _trade_time(secondary["lastTradeTimestamp"])
        rows.extend(_session_rows(raw.symbol, secondary, closed_at, closed_session))
    return Parsed(statistics=rows)


def _session_rows(symbol: str, node: Field, as_of: datetime, session: str) -> list[Statistic]:
    down = node.get("deltaIndicator") is not None and node["deltaIndicator"].text().strip().lower() == "down"
    rows = []
    for key, name in QUOTE_FIELDS.items():
        if node.get(key) is None or (value := amount(node[key])) is None:
            continue
        if down and key in SIGNED_FIELDS and value > 0:
            value = -value  # older bodies: an unsigned change, its sign in deltaIndicator
        rows.append(Statistic(symbol, _session_name(session, name), as_of, value, NAME))
    return rows


def _session_name(session: str, name: str) -> str:
    return name if session == "regular" else f"{session}_{name}"


def _trade_time(node: Field) -> tuple[datetime, str]:
    """The trade time (UTC) and session (``regular``, ``pre_market``, ``after_hours``) of a timestamp text.

    Seen in real bodies: ``Jan 5, 2024 4:00 PM ET``, ``DATA AS OF Nov 19, 2019 9:27 AM ET - PRE-MARKET``,
    ``Feb 24, 2023 6:09 AM ET - PRE-MARKET``, ``... 4:31 PM ET - AFTER HOURS``, ``DATA AS OF Jul 28, 2020``
    (a date alone: the session close), ``CLOSED AT 4:00 PM ET ON Nov 18, 2019``.
    """
    text = " ".join(node.text().split())
    session = "regular"
    suffix = re.search(r"\s+-\s+(PRE[- ]?MARKET|AFTER[- ]?HOURS|POST[- ]?MARKET)\s*$", text, flags=re.IGNORECASE)
    if suffix:
        session = "pre_market" if suffix.group(1).upper().startswith("PRE") else "after_hours"
        text = text[:suffix.start()]
    closed = re.match(r"^CLOSED AT\s+(\d{1,2}:\d{2}\s*[AP]M)\s+E[SD]?T\s+ON\s+(.+)$", text, flags=re.IGNORECASE)
    if closed:
        text = f"{closed.group(2)} {closed.group(1)}"
    text = re.sub(r"^(DATA AS OF|AS OF)\s+", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+E[SD]?T$", "", text)
    for layout, with_time in (("%b %d, %Y %I:%M %p", True), ("%b %d, %Y", False)):
        try:
            parsed = datetime.strptime(text, layout)
        except ValueError:
            continue
        return _eastern(parsed.date(), parsed.time() if with_time else SESSION_CLOSE), session
    raise node.fail(f"expected a time like 'Jan 5, 2024 4:00 PM ET' (optionally 'DATA AS OF ...' or "
                    f"'... - PRE-MARKET'), got {node.value!r}")


def parse_historical(raw: RawPayload) -> Parsed:
    """Daily bars from the historical trades table (prices unadjusted).

    A row whose price is ``N/A`` or ``--`` is skipped and counted in ``Parsed.skipped`` (the other rows are
    kept); a price that is neither a number nor a known blank still rejects the payload, naming the field.
    """
    table = _data(raw)["tradesTable"]
    rows = table.get("rows")
    bars = []
    skipped: list[str] = []
    for row in rows.items() if rows is not None else []:
        prices = [amount(row[name]) for name in ("open", "high", "low", "close")]
        if any(price is None for price in prices):
            shown = ", ".join(str(row[name].value) for name in ("open", "high", "low", "close"))
            skipped.append(f"{row.path}: no price ({shown})")
            continue
        o, h, low, c = (float(p) for p in prices if p is not None)
        if h < low:
            raise row["high"].fail(f"high {h:g} is below low {low:g}")
        day = _date(row["date"])
        bars.append(Bar(raw.symbol, "1d", datetime(day.year, day.month, day.day), o, h, low, c,
                        amount(row["volume"]), None, NAME))
    return Parsed(bars=sorted(bars, key=lambda bar: bar.timestamp), skipped=skipped)


def parse_earnings(raw: RawPayload) -> Parsed:
    """One report document per reported quarter (EPS against the consensus)."""
    table = _data(raw)["earningsSurpriseTable"]
    rows = table.get("rows")
    documents = []
    for row in rows.items() if rows is not None else []:
        quarter = row["fiscalQtrEnd"].text()
        reported = _date(row["dateReported"])
        documents.append(Document(
            id=Document.stable_id(NAME, "reports", f"{raw.symbol}|earnings|{quarter}"), kind="reports",
            source=NAME, symbols=(raw.symbol,), published_at=_eastern(reported, END_OF_DAY),
            title=f"{raw.symbol} earnings for the fiscal quarter ending {quarter}",
            body={"type": "earnings", "fiscal_quarter_end": quarter, "eps": amount(row["eps"]),
                  "consensus": amount(row["consensusForecast"]), "surprise_pct": amount(row["percentageSurprise"])}))
    return Parsed(documents=documents)


def parse_financials(raw: RawPayload) -> Parsed:
    """Income statement, balance sheet and cash flow items per fiscal period, in US dollars."""
    data = _data(raw)
    frequency = raw.params.get("frequency", "")
    if frequency not in FREQUENCIES:
        raise SourceFormatError(raw.label, "params.frequency", f"expected 1 or 2, got {frequency!r}")
    rows = []
    for table_name in STATEMENT_TABLES:
        table = data.get(table_name)
        if table is None:
            continue
        periods = {column: _date(header) for column, header in _period_headers(table["headers"])}
        for row in table["rows"].items():
            item = row["value1"].text().strip().rstrip(":")
            for column, period_end in periods.items():
                value = amount(row[column]) if row.get(column) is not None else None
                if value is not None:
                    rows.append(Fundamental(raw.symbol, item, FREQUENCIES[frequency], period_end,
                                            value * FINANCIALS_SCALE, NAME, fetched_at=naive_utc(raw.fetched_at)))
    return Parsed(fundamentals=rows)


def _period_headers(headers: Field) -> list[tuple[str, Field]]:
    return [(column, headers[column]) for column in headers.object()
            if column != "value1" and isinstance(headers.object()[column], str) and headers.object()[column].strip()]


def parse_news(raw: RawPayload) -> Parsed:
    """Headlines naming the symbol; a date-only publication is taken as known at the end of that day."""
    rows = _data(raw)["rows"]
    documents = []
    for row in rows.items():
        related = row.get("related_symbols")
        symbols = {raw.symbol, *(node.text().split("|")[0].upper() for node in (related.items() if related else [])
                                 if node.text().strip())}
        url, publisher = row.get("url"), row.get("publisher")
        documents.append(Document(
            id=Document.stable_id(NAME, "news", str(row["id"].value)), kind="news", source=NAME,
            symbols=tuple(sorted(symbols)), published_at=_eastern(_date(row["created"], "%b %d, %Y"), END_OF_DAY),
            title=row["title"].text(), url=SITE + url.text() if url and url.text().startswith("/") else
            (url.text() if url else None), publisher=publisher.text() if publisher else None,
            body={"topic": row.object().get("primarytopic")}))
    return Parsed(documents=documents)
