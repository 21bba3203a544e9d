"""The collectors' real HTTP path (HttpClient over curl_cffi impersonating Chrome, and over urllib; cookies, gzip)
against local servers that enforce what Yahoo and Nasdaq enforce: browser headers, the cookie + crumb, and a
crumb that expires. The TLS fingerprint itself cannot be checked offline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from signal_engine.adapters.curl_transport import CurlCffiTransport
from signal_engine.adapters.urllib_transport import UrllibTransport
from signal_engine.collectors import nasdaq, yahoo
from signal_engine.collectors.errors import SourceRejected, SourceUnavailable
from signal_engine.collectors.http import HttpClient, RetryPolicy
from signal_engine.collectors.registry import REQUEST_HEADERS
from signal_engine.collectors.sources import Window
from tests.fixtures.market_servers import ServerLog, market_server

WINDOW = Window(date(2020, 8, 31), date(2020, 11, 6))


TRANSPORTS = {"curl_cffi": CurlCffiTransport, "urllib": UrllibTransport}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def server() -> Iterator[tuple[str, ServerLog]]:
    with market_server() as running:
        yield running


def _client(source: str, transport: str = "curl_cffi", timeout: float = 2.0) -> HttpClient:
    return HttpClient(TRANSPORTS[transport](), timeout=timeout, retry=RetryPolicy(attempts=1), rate_per_second=0,
                      headers=REQUEST_HEADERS[source])


def _yahoo(url: str, client: HttpClient | None = None, transport: str = "curl_cffi") -> yahoo.YahooSource:
    return yahoo.YahooSource(client or _client("yahoo", transport), max_expirations=1, base=url,
                             cookie_url=url + "/cookie")


def test_statistics_get_the_cookie_then_the_crumb_then_the_data(server: tuple[str, ServerLog], transport: str) -> None:
    url, log = server
    payload = next(_yahoo(url, transport=transport).fetch("statistics", "QQQ", WINDOW))
    assert yahoo.parse(payload).statistics
    assert [path.split("?")[0] for path, _ in log.requests] == ["/cookie", "/v1/test/getcrumb",
                                                                 "/v10/finance/quoteSummary/QQQ"]
    assert "crumb" not in payload.params  # the crumb is a session secret, not kept with the raw payload


def test_an_expired_crumb_is_fetched_again_and_the_request_repeated(server: tuple[str, ServerLog],
                                                                   transport: str) -> None:
    url, log = server
    source = _yahoo(url, transport=transport)
    next(source.fetch("statistics", "QQQ", WINDOW))
    log.rotate_crumb()  # the container lives on; Yahoo's session does not
    payload = next(source.fetch("options", "AAPL", WINDOW))
    assert yahoo.parse(payload).options
    assert len(log.crumbs) == 2
    assert [path.split("?")[0] for path, _ in log.requests][3:] == [
        "/v7/finance/options/AAPL", "/cookie", "/v1/test/getcrumb", "/v7/finance/options/AAPL"]


def test_a_crumb_refused_twice_is_reported_not_looped(server: tuple[str, ServerLog], transport: str) -> None:
    url, log = server
    log.refuse_crumbs = True
    with pytest.raises(SourceRejected, match=r"HTTP 401: .*Invalid Crumb"):
        next(_yahoo(url, transport=transport).fetch("statistics", "QQQ", WINDOW))
    assert sum(path.startswith("/v10/") for path, _ in log.requests) == 2
    assert len(log.crumbs) == 2


def test_yahoo_refuses_a_client_without_browser_headers(server: tuple[str, ServerLog]) -> None:
    url, _ = server
    plain = HttpClient(UrllibTransport(user_agent="Python-urllib/3.12"), timeout=2.0,
                       retry=RetryPolicy(attempts=1), rate_per_second=0)
    with pytest.raises(SourceUnavailable, match="HTTP 429"):
        next(_yahoo(url, plain).fetch("bars", "AAPL", WINDOW))


def test_yahoo_requests_carry_browser_headers(server: tuple[str, ServerLog], transport: str) -> None:
    url, log = server
    payload = next(_yahoo(url, transport=transport).fetch("bars", "AAPL", WINDOW))
    assert yahoo.parse(payload).bars
    headers = log.requests[0][1]
    assert headers["user-agent"].startswith("Mozilla/5.0") and "Chrome/" in headers["user-agent"]
    assert headers["accept-language"] == "en-US,en;q=0.9"
    assert headers["referer"] == "https://finance.yahoo.com/"


def test_nasdaq_answers_browser_like_requests_with_gzip(server: tuple[str, ServerLog], transport: str) -> None:
    url, log = server
    client = _client("nasdaq", transport)
    payload = next(nasdaq.NasdaqSource(client, base=url + "/nasdaq/api").fetch("quotes", "AAPL", WINDOW))
    rows = {s.name: s.value for s in nasdaq.parse(payload).statistics}
    assert rows["after_hours_last_sale_price"] == 267.10
    headers = log.requests[0][1]
    assert "gzip" in headers["accept-encoding"] and headers["origin"] == "https://www.nasdaq.com"


def test_nasdaq_never_answers_a_plain_client(server: tuple[str, ServerLog]) -> None:
    url, log = server
    log.nasdaq_hold_s = 1.0
    plain = HttpClient(UrllibTransport(), timeout=0.3, retry=RetryPolicy(attempts=1), rate_per_second=0,
                       headers=nasdaq.REQUEST_HEADERS)
    with pytest.raises(SourceUnavailable, match="timed out"):
        next(nasdaq.NasdaqSource(plain, base=url + "/nasdaq/api").fetch("quotes", "AAPL", WINDOW))


def test_curl_failures_are_classified_like_urllibs() -> None:
    import socket

    from signal_engine.collectors.http import HttpRequest, TransportError
    from tests.fixtures.servers import free_port

    curl = CurlCffiTransport()
    with pytest.raises(TransportError) as refused:
        curl.send(HttpRequest(f"http://127.0.0.1:{free_port()}/"), timeout=2)
    assert refused.value.kind == "connection"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(TransportError) as silent:
            curl.send(HttpRequest(f"http://127.0.0.1:{listener.getsockname()[1]}/"), timeout=0.3)
    assert silent.value.kind == "timeout"
    with pytest.raises(TransportError) as unresolved:
        curl.send(HttpRequest("http://no-such-host.invalid/"), timeout=2)
    assert unresolved.value.kind == "dns"
