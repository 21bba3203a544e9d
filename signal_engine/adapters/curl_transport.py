"""Transport on curl_cffi: a browser's TLS and HTTP/2 fingerprint (``impersonate="chrome"``), which Yahoo now
demands (it answers Python's own TLS stack with 429; yfinance moved to the same library, issue #2422).

The session keeps cookies (Yahoo's crumb is bound to its cookie). The impersonated browser sends its own
``User-Agent``, ``Accept`` and ``Accept-Encoding`` consistent with its TLS fingerprint, so those request
headers are left to it; the others (``Origin``, ``Referer``, ``Accept-Language``) are sent as given.
Bodies come back decompressed.
"""

from __future__ import annotations

from typing import Any

from signal_engine.collectors.http import HttpRequest, HttpResponse, TransportError

IMPERSONATE = "chrome"
LEFT_TO_THE_BROWSER = frozenset({"user-agent", "accept", "accept-encoding"})


class CurlCffiTransport:
    """Sends requests with curl_cffi impersonating a browser; HTTP errors come back as responses.

    Parameters
    ----------
    impersonate
        The browser whose fingerprint to present (curl_cffi's names: ``chrome``, ``safari``, ...).
    session
        A ``curl_cffi.requests.Session`` (tests may pass one); created when None.
    """

    def __init__(self, impersonate: str = IMPERSONATE, session: Any = None) -> None:
        from curl_cffi import requests

        self._session = session or requests.Session(impersonate=impersonate)
        self._errors = requests.exceptions

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in LEFT_TO_THE_BROWSER}
        errors = self._errors
        try:
            response = self._session.get(request.url, params=dict(request.params) or None, headers=headers,
                                         timeout=timeout, allow_redirects=True)
        except errors.DNSError:
            raise TransportError("dns", f"name resolution failed: could not resolve {request.host}") from None
        except errors.Timeout as exc:
            raise TransportError("timeout", str(exc) or "timed out") from None
        except errors.RequestException as exc:
            raise TransportError("connection", str(exc)) from None
        return HttpResponse(int(response.status_code), bytes(response.content),
                            {str(k).lower(): str(v) for k, v in response.headers.items()})
