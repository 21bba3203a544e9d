"""A small HTTP client for the collectors: timeouts, retries with backoff and jitter, rate limiting.

The network is behind a :class:`Transport` (``signal_engine.adapters.urllib_transport`` in real use, a
fake in tests), so nothing here opens a socket itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlencode, urlsplit

from signal_engine.collectors.errors import SourceRejected, SourceUnavailable

FailureKind = Literal["dns", "connection", "timeout"]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpRequest:
    """A GET request: the URL without query, and its query parameters."""

    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or self.url

    @property
    def full_url(self) -> str:
        return f"{self.url}?{urlencode(self.params)}" if self.params else self.url


@dataclass(frozen=True)
class HttpResponse:
    """What came back: status, body bytes and headers (names lower-cased)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """The request got no HTTP response: name resolution, connection or timeout failure."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class Transport(Protocol):
    """Sends one request; returns any HTTP response (including 4xx/5xx) or raises TransportError."""

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits ``min(cap, base * 2**(n-1))`` scaled by U(1-jitter, 1).

    ``Retry-After`` (seconds) on a 429/503 answer replaces the computed wait, still capped at ``max_backoff``.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        base = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
        capped = min(self.max_backoff, max(0.0, base))
        return capped if retry_after is not None else capped * rng.uniform(1.0 - self.jitter, 1.0)


class RateLimiter:
    """At most ``per_second`` requests per host, spaced evenly."""

    def __init__(self, per_second: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}

    def wait(self, host: str) -> None:
        now = self._clock()
        ready = self._next.get(host, now)
        if ready > now:
            self._sleep(ready - now)
            now = ready
        self._next[host] = now + self._interval


class HttpClient:
    """GET with a per-request timeout, bounded retries for 429/5xx/timeouts/connection errors, rate limiting.

    A name that does not resolve fails at once (no network: retrying cannot help); other 4xx answers fail
    at once as :class:`SourceRejected`; running out of attempts raises :class:`SourceUnavailable` naming
    the host and the last failure.

    Parameters
    ----------
    transport
        Sends the requests.
    timeout
        Seconds for each attempt.
    retry
        How many attempts and how long to wait between them.
    rate_per_second
        Request rate per host.
    sleep, clock, rng
        Injectable for tests.
    """

    def __init__(self, transport: Transport, *, timeout: float = 10.0, retry: RetryPolicy | None = None,
                 rate_per_second: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._transport = transport
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(rate_per_second, clock, sleep)
        self._headers = dict(headers or {})

    def get(self, url: str, params: Mapping[str, str] | None = None,
            accept: Collection[int] = ()) -> HttpResponse:
        """The response to a GET; a 2xx status or one in ``accept`` counts as success."""
        request = HttpRequest(url, dict(params or {}), self._headers)
        last = "no attempt made"
        for attempt in range(1, self._retry.attempts + 1):
            self._limiter.wait(request.host)
            retry_after: float | None = None
            try:
                response = self._transport.send(request, self._timeout)
            except TransportError as exc:
                if exc.kind == "dns":
                    raise SourceUnavailable(request.host, f"{exc} (is the machine offline?)") from None
                last = f"{exc.kind} error ({exc})" if exc.kind != "timeout" else f"timed out after {self._timeout:g} s"
            else:
                if 200 <= response.status < 300 or response.status in accept:
                    return response
                if response.status not in RETRY_STATUSES:
                    raise SourceRejected(request.host, response.status, _snippet(response.body))
                last = f"HTTP {response.status}"
                retry_after = _retry_after(response.headers)
            if attempt < self._retry.attempts:
                self._sleep(self._retry.delay(attempt, self._rng, retry_after))
        raise SourceUnavailable(request.host, f"{last} after {self._retry.attempts} attempts")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text[:160] or "(empty body)"
