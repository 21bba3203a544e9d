"""Yahoo Finance: daily and intraday bars, quote statistics, fundamentals, option chains and news.

Endpoints (JSON; the shapes yfinance reads, see ``tests/fixtures/README.md``):

- ``/v8/finance/chart/{symbol}``: bars (``chart.result[0].timestamp`` + ``indicators.quote[0]``)
- ``/v10/finance/quoteSummary/{symbol}``: statistics (``price``, ``summaryDetail``, ``defaultKeyStatistics``,
  ``financialData`` modules, values as ``{"raw": .., "fmt": ..}``); needs the cookie + crumb
- ``/ws/fundamentals-timeseries/v1/finance/timeseries/{symbol}``: fundamentals by fiscal period
- ``/v7/finance/options/{symbol}``: option chains, one expiration per request; needs the crumb
- ``/v1/finance/search``: news headlines with ``providerPublishTime``

yfinance is not used as the client because the raw-first rule needs the exact response bytes, which it
does not expose; the endpoints and field names are the ones it reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from signal_engine.collectors.errors import SourceFormatError, SourceRejected
from signal_engine.collectors.fields import Field
from signal_engine.collectors.http import HttpClient
from signal_engine.collectors.raw import RawPayload
from signal_engine.collectors.sources import Parsed, Window
from signal_engine.storage.records import (
    Bar,
    CorporateAction,
    Document,
    Fundamental,
    OptionQuote,
    OptionSide,
    PeriodType,
    Statistic,
)
from signal_engine.storage.times import from_epoch, naive_utc, utc_now

NAME = "yahoo"
BASE = "https://query2.finance.yahoo.com"
COOKIE_URL = "https://fc.yahoo.com"
SITE = "https://finance.yahoo.com"
REQUEST_HEADERS = {"Origin": SITE, "Referer": SITE + "/"}
CRUMB_REFUSED = frozenset({401, 403})  # Yahoo answers an expired or foreign crumb with 401 "Invalid Crumb"
INTERVALS = {"1m": "1m", "2m": "2m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "60m", "90m": "90m", "1d": "1d"}
STATISTIC_MODULES = ("summaryDetail", "defaultKeyStatistics", "financialData")
FUNDAMENTAL_ITEMS = ("TotalRevenue", "GrossProfit", "OperatingIncome", "NetIncome", "DilutedEPS", "TotalAssets",
                     "TotalDebt", "StockholdersEquity", "OperatingCashFlow", "FreeCashFlow")
FUNDAMENTAL_PERIODS: dict[str, PeriodType] = {"annual": "annual", "quarterly": "quarterly", "trailing": "trailing"}
PUBLICATION_LOOKBACK = timedelta(days=400)  # an annual report of a foreign filer: up to 4 months, plus a year
OPTION_SIDES: tuple[tuple[OptionSide, str], ...] = (("call", "calls"), ("put", "puts"))
# Yahoo answers interval=30m with 60-minute bars; yfinance fetches 15m and resamples (scrapers/history.py).
FETCHED_AS = {"30m": "15m"}
MAX_EXPIRATIONS = 3
NEWS_COUNT = 20


class YahooSource:
    """Fetches Yahoo Finance payloads through an :class:`HttpClient`, and parses them strictly.

    Parameters
    ----------
    client
        The HTTP client (timeouts, retries, rate limit).
    max_expirations
        How many option expirations to fetch per symbol, nearest first.
    base, cookie_url
        Where the API and the cookie page are (a local server in tests).
    """

    name: str = NAME
    kinds: tuple[str, ...] = ("bars", "statistics", "fundamentals", "options", "news")

    def __init__(self, client: HttpClient, max_expirations: int = MAX_EXPIRATIONS, *, base: str = BASE,
                 cookie_url: str = COOKIE_URL) -> None:
        self._client = client
        self._max_expirations = max_expirations
        self._base = base.rstrip("/")
        self._cookie_url = cookie_url
        self._crumb: str | None = None

    def fetch(self, kind: str, symbol: str, window: Window) -> Iterator[RawPayload]:
        if kind == "bars":
            note = {"timeframe": window.timeframe} if window.timeframe in FETCHED_AS else None
            yield self._get(kind, symbol, f"{self._base}/v8/finance/chart/{symbol}", _chart_params(window), note)
        elif kind == "statistics":
            yield self._get_with_crumb(kind, symbol, f"{self._base}/v10/finance/quoteSummary/{symbol}",
                                       {"modules": ",".join(("price", *STATISTIC_MODULES))})
        elif kind == "fundamentals":
            yield self._get(kind, symbol,
                            f"{self._base}/ws/fundamentals-timeseries/v1/finance/timeseries/{symbol}",
                            _timeseries_params(symbol, window))
        elif kind == "options":
            yield from self._options(symbol)
        elif kind == "news":
            yield self._get(kind, symbol, f"{self._base}/v1/finance/search",
                            {"q": symbol, "quotesCount": "0", "newsCount": str(NEWS_COUNT)})
        else:
            raise ValueError(f"yahoo has no kind {kind!r}; expected one of {', '.join(self.kinds)}")

    def parse(self, raw: RawPayload) -> Parsed:
        return parse(raw)

    def _options(self, symbol: str) -> Iterator[RawPayload]:
        url = f"{self._base}/v7/finance/options/{symbol}"
        first = self._get_with_crumb("options", symbol, url, {})
        yield first
        for expiration in option_expirations(first)[1:self._max_expirations]:
            yield self._get_with_crumb("options", symbol, url, {"date": str(expiration)})

    def _get_with_crumb(self, kind: str, symbol: str, url: str, params: dict[str, str]) -> RawPayload:
        """A request that needs the cookie and crumb; a refused crumb (401/403) is fetched anew once.

        The crumb lives as long as its cookie session, not as long as the Lambda container: when Yahoo
        answers "Invalid Crumb", the cookie and crumb are fetched again and the request is repeated.
        """
        try:
            return self._get(kind, symbol, url, {**params, "crumb": self._get_crumb()})
        except SourceRejected as exc:
            if exc.status not in CRUMB_REFUSED:
                raise
            self._crumb = None
            return self._get(kind, symbol, url, {**params, "crumb": self._get_crumb()})

    def _get(self, kind: str, symbol: str, url: str, params: dict[str, str],
             note: dict[str, str] | None = None) -> RawPayload:
        """One request; its raw payload keeps the parameters sent (not the crumb) and ``note`` (not sent)."""
        response = self._client.get(url, params)
        stored_params = {**{k: v for k, v in params.items() if k != "crumb"}, **(note or {})}
        return RawPayload(NAME, kind, symbol, url, utc_now(), response.status, response.body, stored_params)

    def _get_crumb(self) -> str:
        if self._crumb is None:
            self._client.get(self._cookie_url, accept=range(300, 500))
            crumb = self._client.get(f"{self._base}/v1/test/getcrumb").body.decode("utf-8", errors="replace").strip()
            if not crumb or "<" in crumb:
                raise SourceFormatError("yahoo crumb", "getcrumb", f"expected a crumb token, got {crumb[:40]!r}")
            self._crumb = crumb
        return self._crumb


def parse(raw: RawPayload) -> Parsed:
    """Parse a Yahoo Finance payload of any kind."""
    parsers = {"bars": parse_chart, "statistics": parse_quote_summary, "fundamentals": parse_timeseries,
               "options": parse_options, "news": parse_news}
    if raw.kind not in parsers:
        raise SourceFormatError(raw.label, "kind", f"unknown yahoo payload kind {raw.kind!r}")
    return parsers[raw.kind](raw)


def _epoch(day: date) -> str:
    return str(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()))


def _chart_params(window: Window, today: date | None = None) -> dict[str, str]:
    """Daily charts run to today whatever the window's end: Yahoo's prices are split-adjusted as of the fetch,
    so the payload must list every split from the window's start to the fetch to turn them back into raw."""
    if window.timeframe not in INTERVALS:
        raise ValueError(f"timeframe {window.timeframe!r} is not one of {', '.join(INTERVALS)}")
    end = window.end
    if window.timeframe == "1d":
        end = max(end, today or utc_now().date())
    interval = FETCHED_AS.get(window.timeframe, INTERVALS[window.timeframe])
    return {"period1": _epoch(window.start), "period2": _epoch(end + timedelta(days=1)),
            "interval": interval, "includePrePost": "false", "events": "div,splits"}


def _timeseries_params(symbol: str, window: Window) -> dict[str, str]:
    """The periods that can have been published in the window: those that ended up to ``PUBLICATION_LOOKBACK``
    before it (a fiscal period is published weeks to months after it ends, so asking for periods that ended
    in a 5-day window finds almost nothing)."""
    types = [f"{period}{item}" for period in ("annual", "quarterly") for item in FUNDAMENTAL_ITEMS]
    return {"symbol": symbol, "type": ",".join(types), "period1": _epoch(window.start - PUBLICATION_LOOKBACK),
            "period2": _epoch(window.end + timedelta(days=1))}


def _single_result(root: Field, top: str) -> Field:
    container = root[top]
    error = container.get("error")
    if error is not None:
        description = error.get("description")
        raise error.fail(f"the source reported an error: {description.value if description else error.value}")
    results = container["result"].items()
    if len(results) != 1:
        raise container["result"].fail(f"expected exactly one result, got {len(results)}")
    return results[0]


def parse_chart(raw: RawPayload) -> Parsed:
    """Bars from a v8 chart payload; daily bars are keyed by their exchange-local session date.

    The prices (and dividend amounts) are split-adjusted as of the fetch: ``split_adjusted_as_of`` says so,
    and the payload's ``events.splits``/``events.dividends`` become corporate actions known from the fetch.
    """
    result = _single_result(Field.parse(raw.body, raw.label), "chart")
    meta = result["meta"]
    zone = ZoneInfo(meta["exchangeTimezoneName"].text())
    timeframe = _timeframe(meta["dataGranularity"])
    actions = _corporate_actions(result, raw, zone)
    stamps = result.get("timestamp")
    if stamps is None:
        return Parsed(corporate_actions=actions, split_adjusted_as_of=naive_utc(raw.fetched_at))
    times = stamps.items()
    quote = result["indicators"]["quote"].items()[0]
    columns = {name: _column(quote, name, len(times)) for name in ("open", "high", "low", "close")}
    volume = _column(quote, "volume", len(times)) if quote.get("volume") is not None else None
    adjclose = result["indicators"].get("adjclose")
    adjusted = _column(adjclose.items()[0], "adjclose", len(times)) if adjclose is not None else None
    bars = []
    for i, stamp in enumerate(times):
        prices = [columns[name][i] for name in ("open", "high", "low", "close")]
        if all(p.is_null() for p in prices):
            continue
        o, h, low, c = (p.number() for p in prices)
        if h < low:
            raise columns["high"][i].fail(f"high {h:g} is below low {low:g}")
        bars.append(Bar(raw.symbol, timeframe, _bar_time(stamp.number(), timeframe, zone), o, h, low, c,
                        volume[i].optional_number() if volume else None,
                        adjusted[i].optional_number() if adjusted else None, NAME))
    wanted = raw.params.get("timeframe")
    if wanted in FETCHED_AS and timeframe == _timeframe_of(FETCHED_AS[wanted]):
        bars = _resample(bars, wanted, minutes=int(wanted.removesuffix("m")))
    return Parsed(bars=bars, corporate_actions=actions, split_adjusted_as_of=naive_utc(raw.fetched_at))


def _timeframe_of(interval: str) -> str:
    return {value: name for name, value in INTERVALS.items()}[interval]


def _resample(bars: list[Bar], timeframe: str, minutes: int) -> list[Bar]:
    """Bars of ``minutes`` from shorter ones, bucketed on the clock (first open, max high, min low, last close,
    summed volume), as yfinance builds its 30m bars from 15m ones."""
    buckets: dict[datetime, list[Bar]] = {}
    for bar in bars:
        start = bar.timestamp.replace(minute=bar.timestamp.minute - bar.timestamp.minute % minutes, second=0,
                                      microsecond=0)
        buckets.setdefault(start, []).append(bar)
    merged = []
    for start, group in sorted(buckets.items()):
        volumes = [b.volume for b in group if b.volume is not None]
        merged.append(Bar(group[0].symbol, timeframe, start, group[0].open, max(b.high for b in group),
                          min(b.low for b in group), group[-1].close, sum(volumes) if volumes else None, None,
                          group[0].source))
    return merged


def _corporate_actions(result: Field, raw: RawPayload, zone: ZoneInfo) -> list[CorporateAction]:
    events = result.get("events")
    if events is None:
        return []
    known_at = naive_utc(raw.fetched_at)
    actions = []
    splits = events.get("splits")
    for node in [splits[key] for key in splits.object()] if splits is not None else []:
        numerator, denominator = node["numerator"].number(), node["denominator"].number()
        if numerator <= 0 or denominator <= 0:
            raise node.fail(f"split {numerator:g}:{denominator:g} is not a positive ratio")
        actions.append(CorporateAction(raw.symbol, "split", _session_date(node["date"].number(), zone),
                                       numerator / denominator, NAME, known_at))
    dividends = events.get("dividends")
    for node in [dividends[key] for key in dividends.object()] if dividends is not None else []:
        actions.append(CorporateAction(raw.symbol, "dividend", _session_date(node["date"].number(), zone),
                                       node["amount"].number(), NAME, known_at))
    return sorted(actions, key=lambda a: (a.ex_date, a.kind))


def _session_date(epoch: float, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch, zone).date()


def _timeframe(granularity: Field) -> str:
    value = granularity.text()
    names = {interval: name for name, interval in INTERVALS.items()}
    if value not in names:
        raise granularity.fail(f"unknown interval {value!r}; expected one of {', '.join(names)}")
    return names[value]


def _column(parent: Field, name: str, length: int) -> list[Field]:
    values = parent[name].items()
    if len(values) != length:
        raise parent[name].fail(f"has {len(values)} values for {length} timestamps")
    return values


def _bar_time(epoch: float, timeframe: str, zone: ZoneInfo) -> datetime:
    if timeframe != "1d":
        return from_epoch(epoch)
    local = datetime.fromtimestamp(epoch, zone)
    return datetime(local.year, local.month, local.day)


def parse_quote_summary(raw: RawPayload) -> Parsed:
    """Numeric statistics of the quoteSummary modules, as of the quote's regularMarketTime.

    A payload without the ``price`` module (a request for some modules only) is as of its fetch time.
    """
    result = _single_result(Field.parse(raw.body, raw.label), "quoteSummary")
    price = result.get("price")
    market_time = price.get("regularMarketTime") if price is not None else None
    as_of = from_epoch(_raw_number(market_time)) if market_time is not None else naive_utc(raw.fetched_at)
    rows: dict[str, Statistic] = {}
    for module_name in STATISTIC_MODULES:
        module = result.get(module_name)
        if module is None:
            continue
        for name in module.object():
            number = _statistic_value(module[name])
            if number is not None and name != "maxAge" and name not in rows:
                rows[name] = Statistic(raw.symbol, name, as_of, number, NAME)
    return Parsed(statistics=list(rows.values()))


def _raw_number(node: Field) -> float:
    return node["raw"].number() if isinstance(node.value, dict) else node.number()


def _statistic_value(node: Field) -> float | None:
    if isinstance(node.value, dict):
        return node["raw"].number() if "raw" in node.value and isinstance(node.value["raw"], int | float) else None
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.number()
    return None


def parse_timeseries(raw: RawPayload) -> Parsed:
    """Fundamentals from the fundamentals-timeseries payload: one row per item and fiscal period."""
    root = Field.parse(raw.body, raw.label)["timeseries"]
    if root.get("error") is not None:
        raise root["error"].fail("the source reported an error")
    rows = []
    for series in root["result"].items():
        type_name = series["meta"]["type"].items()[0].text()
        period, item = _split_type(series["meta"]["type"].items()[0], type_name)
        values = series.get(type_name)
        for point in values.items() if values is not None else []:
            if point.is_null():
                continue
            currency = point.get("currencyCode")
            rows.append(Fundamental(raw.symbol, item, period, _iso_date(point["asOfDate"]),
                                    point["reportedValue"]["raw"].number(), NAME,
                                    currency.text() if currency else "USD", fetched_at=naive_utc(raw.fetched_at)))
    return Parsed(fundamentals=rows)


def _split_type(node: Field, type_name: str) -> tuple[PeriodType, str]:
    for prefix in ("annual", "quarterly", "trailing"):
        if type_name.startswith(prefix) and len(type_name) > len(prefix):
            return FUNDAMENTAL_PERIODS[prefix], type_name[len(prefix):]
    raise node.fail(f"type {type_name!r} does not start with annual, quarterly or trailing")


def _iso_date(node: Field) -> date:
    try:
        return date.fromisoformat(node.text())
    except ValueError:
        raise node.fail(f"expected a date YYYY-MM-DD, got {node.value!r}") from None


def option_expirations(raw: RawPayload) -> list[int]:
    """The expiration dates (epoch seconds) an option-chain payload lists."""
    result = _single_result(Field.parse(raw.body, raw.label), "optionChain")
    return [int(node.number()) for node in result["expirationDates"].items()]


def parse_options(raw: RawPayload) -> Parsed:
    """Call and put quotes of the chain's expiration(s), as of the underlying's regularMarketTime.

    Outside trading hours Yahoo fills contracts without a market (bid and ask 0) with a placeholder
    implied volatility: ``1e-05``, or a left-over of its solver's bisection (``0.500005``, ``0.2500075``,
    ``0.12500875``, ...; all seen in the recorded AAPL chain of Monday 24 Feb 2025, 09:24 UTC). With no bid
    and no ask there is nothing to imply a volatility from, so it is stored as missing and counted in
    ``Parsed.skipped``.
    """
    result = _single_result(Field.parse(raw.body, raw.label), "optionChain")
    as_of = from_epoch(result["quote"]["regularMarketTime"].number())
    rows: list[OptionQuote] = []
    skipped: list[str] = []
    for chain in result["options"].items():
        expiration = from_epoch(chain["expirationDate"].number()).date()
        for side, key in OPTION_SIDES:
            for node in chain[key].items():
                quote = _contract(node, raw.symbol, side, expiration, as_of)
                if _placeholder_iv(quote):
                    skipped.append(f"{node.path}.impliedVolatility: placeholder {quote.implied_volatility:g} "
                                   f"with no bid or ask")
                    quote = dataclasses.replace(quote, implied_volatility=None)
                rows.append(quote)
    return Parsed(options=rows, skipped=skipped)


def _placeholder_iv(quote: OptionQuote) -> bool:
    return quote.implied_volatility is not None and not quote.bid and not quote.ask


def _contract(node: Field, underlying: str, side: OptionSide, expiration: date, as_of: datetime) -> OptionQuote:
    def optional(name: str) -> float | None:
        value = node.get(name)
        return value.number() if value is not None else None

    return OptionQuote(node["contractSymbol"].text(), underlying, side, expiration, node["strike"].number(), as_of,
                       optional("lastPrice"), optional("bid"), optional("ask"), optional("impliedVolatility"),
                       optional("volume"), optional("openInterest"), NAME)


def parse_news(raw: RawPayload) -> Parsed:
    """Headlines from the search payload, published at providerPublishTime (UTC).

    A headline is tagged with the companies Yahoo relates it to (``relatedTickers``), not with the query:
    a search for AZT.OL also returns headlines about other companies. A headline without related tickers
    is kept (its query in ``body.query``) but tagged with no symbol, so no symbol's news shows it.
    """
    documents = []
    for item in Field.parse(raw.body, raw.label)["news"].items():
        related = item.get("relatedTickers")
        symbols = {node.text().strip() for node in (related.items() if related else []) if node.text().strip()}
        publisher, link = item.get("publisher"), item.get("link")
        documents.append(Document(
            id=Document.stable_id(NAME, "news", item["uuid"].text()), kind="news", source=NAME,
            symbols=tuple(sorted(symbols)), published_at=from_epoch(item["providerPublishTime"].number()),
            title=item["title"].text(), url=link.text() if link else None,
            publisher=publisher.text() if publisher else None,
            body={"type": item.object().get("type"), "query": raw.symbol}))
    return Parsed(documents=documents)
