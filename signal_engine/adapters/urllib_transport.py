"""Transport on the standard library's urllib, with a cookie jar (Yahoo's crumb needs its cookie)."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from http.cookiejar import CookieJar

from signal_engine.collectors.http import HttpRequest, HttpResponse, TransportError

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) signal-engine/0.1"


class UrllibTransport:
    """Sends requests with urllib; HTTP errors come back as responses, network failures as TransportError."""

    def __init__(self, user_agent: str = USER_AGENT) -> None:
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self._user_agent = user_agent

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        prepared = urllib.request.Request(request.full_url, headers={
            "User-Agent": self._user_agent, "Accept": "application/json, text/plain, */*", **request.headers})
        try:
            with self._opener.open(prepared, timeout=timeout) as response:
                return HttpResponse(response.status, response.read(), _headers(response.headers))
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, exc.read(), _headers(exc.headers))
        except urllib.error.URLError as exc:
            raise _failure(exc.reason) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _failure(exc) from None


def _failure(reason: object) -> TransportError:
    if isinstance(reason, socket.gaierror):
        return TransportError("dns", f"name resolution failed: {reason.strerror or reason}")
    if isinstance(reason, TimeoutError):
        return TransportError("timeout", str(reason) or "timed out")
    return TransportError("connection", str(reason))


def _headers(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {str(name).lower(): str(value) for name, value in items}
