"""Request headers a browser sends, which both services now demand.

Nasdaq's API (behind Akamai) leaves a request without a browser ``User-Agent``, ``Accept-Language`` and
``Accept-Encoding`` unanswered until it times out; Yahoo answers non-browser clients with 429. Headers
alone do not get past Yahoo's TLS fingerprinting (yfinance issue #2422), which needs a client that
impersonates a browser's TLS handshake (curl_cffi); see docs/storage.md.
"""

from __future__ import annotations

USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
BROWSER_HEADERS: dict[str, str] = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json, text/plain, */*",
    "Accept-Language": "en-US,en;q=0.9",
    "Accept-Encoding": "gzip, deflate",
}
