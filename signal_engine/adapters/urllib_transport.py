"""Transport on the standard library's urllib, with a cookie jar (Yahoo's crumb needs its cookie)."""

from __future__ import annotations

import gzip
import http.client
import socket
import urllib.error
import urllib.request
import zlib
from http.cookiejar import CookieJar

from signal_engine.collectors.browser import USER_AGENT
from signal_engine.collectors.http import HttpRequest, HttpResponse, TransportError


class UrllibTransport:
    """Sends requests with urllib; HTTP errors come back as responses, network failures as TransportError.

    Cookies are kept across requests (Yahoo's crumb is bound to its cookie); a gzip or deflate body (asked
    for by the browser-like ``Accept-Encoding``) is decompressed.
    """

    def __init__(self, user_agent: str = USER_AGENT) -> None:
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self._user_agent = user_agent

    def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        prepared = urllib.request.Request(request.full_url, headers={
            "User-Agent": self._user_agent, "Accept": "application/json, text/plain, */*", **request.headers})
        try:
            with self._opener.open(prepared, timeout=timeout) as response:
                headers = _headers(response.headers)
                return HttpResponse(response.status, _decoded(response.read(), headers), headers)
        except urllib.error.HTTPError as exc:
            headers = _headers(exc.headers)
            return HttpResponse(exc.code, _decoded(exc.read(), headers), headers)
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


def _decoded(body: bytes, headers: dict[str, str]) -> bytes:
    encoding = headers.get("content-encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise TransportError("connection", f"a {encoding} body that does not decompress ({exc})") from None
    return body
