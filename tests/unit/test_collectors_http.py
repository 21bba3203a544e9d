"""The collectors' HTTP client: retries with backoff and jitter, Retry-After, rate limiting, fail-fast cases."""

from __future__ import annotations

import random

import pytest

from signal_engine.collectors.errors import SourceRejected, SourceUnavailable
from signal_engine.collectors.http import HttpClient, RateLimiter, RetryPolicy, TransportError
from tests.fixtures.payloads import ok, scripted_client

URL = "https://api.example.test/v1/data"


def test_a_success_returns_the_body_after_one_request() -> None:
    client, transport = scripted_client({URL: [ok(b'{"a": 1}')]})
    assert client.get(URL, {"q": "x"}).body == b'{"a": 1}'
    assert [r.full_url for r in transport.requests] == [URL + "?q=x"]


def test_server_errors_are_retried_with_growing_backoff() -> None:
    sleeps: list[float] = []
    client, transport = scripted_client({URL: [ok(b"", 503), ok(b"", 500), ok(b"{}")]}, attempts=3, sleeps=sleeps)
    assert client.get(URL).status == 200
    assert len(transport.requests) == 3
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


def test_retry_after_on_429_is_honoured() -> None:
    sleeps: list[float] = []
    client, _ = scripted_client({URL: [ok(b"slow down", 429, {"retry-after": "0.7"}), ok(b"{}")]}, sleeps=sleeps)
    client.get(URL)
    assert sleeps == [0.7]


def test_persistent_429_gives_up_naming_the_host_and_status() -> None:
    client, transport = scripted_client({URL: [ok(b"", 429)]}, attempts=3)
    with pytest.raises(SourceUnavailable, match=r"cannot reach api\.example\.test: HTTP 429 after 3 attempts"):
        client.get(URL)
    assert len(transport.requests) == 3


def test_a_client_error_is_not_retried() -> None:
    client, transport = scripted_client({URL: [ok(b'{"message": "Not Found"}', 404)]})
    with pytest.raises(SourceRejected, match=r"api\.example\.test answered HTTP 404: .*Not Found"):
        client.get(URL)
    assert len(transport.requests) == 1


def test_timeouts_are_retried_then_reported() -> None:
    client, transport = scripted_client({URL: [TransportError("timeout", "read timed out")]}, attempts=2)
    with pytest.raises(SourceUnavailable, match=r"timed out after 2 s after 2 attempts"):
        client.get(URL)
    assert len(transport.requests) == 2


def test_a_connection_error_then_success_recovers() -> None:
    client, _ = scripted_client({URL: [TransportError("connection", "reset by peer"), ok(b"{}")]})
    assert client.get(URL).status == 200


def test_name_resolution_failure_fails_at_once() -> None:
    client, transport = scripted_client({URL: [TransportError("dns", "name resolution failed")]}, attempts=4)
    with pytest.raises(SourceUnavailable, match=r"cannot reach api\.example\.test: name resolution failed"):
        client.get(URL)
    assert len(transport.requests) == 1


def test_accepted_statuses_count_as_success() -> None:
    client, _ = scripted_client({URL: [ok(b"", 404)]})
    assert client.get(URL, accept=range(300, 500)).status == 404


def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(attempts=10, backoff=0.5, max_backoff=4.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(attempt, rng) for attempt in range(1, 9)]
    assert all(0.25 * 2 ** min(a - 1, 3) <= d <= min(4.0, 0.5 * 2 ** (a - 1)) for a, d in enumerate(delays, 1))
    assert len(set(delays)) == len(delays)


def test_rate_limiter_spaces_requests_to_one_host() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait("a.test")
    limiter.wait("b.test")
    assert slept == [0.25, 0.25]


def test_client_passes_its_timeout_to_the_transport() -> None:
    seen: list[float] = []

    class Recording:
        def send(self, request: object, timeout: float) -> object:
            seen.append(timeout)
            return ok(b"{}")

    HttpClient(Recording(), timeout=3.5, rate_per_second=0).get(URL)  # type: ignore[arg-type]
    assert seen == [3.5]
