"""The urllib transport against local sockets: HTTP errors come back, network failures are classified."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from signal_engine.adapters.urllib_transport import UrllibTransport
from signal_engine.collectors.http import HttpRequest, TransportError
from tests.fixtures.servers import free_port


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if "fail" in self.path else 200
        self.send_response(status)
        self.send_header("Retry-After", "2")
        self.end_headers()
        self.wfile.write(b'{"path": "%s"}' % self.path.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_response_carries_status_body_and_lowercased_headers(http_url: str) -> None:
    response = UrllibTransport().send(HttpRequest(http_url + "/ok", {"a": "1"}), timeout=2)
    assert (response.status, response.body) == (200, b'{"path": "/ok?a=1"}')
    assert response.headers["retry-after"] == "2"


def test_an_http_error_status_is_a_response_not_an_exception(http_url: str) -> None:
    assert UrllibTransport().send(HttpRequest(http_url + "/fail"), timeout=2).status == 503


def test_a_refused_connection_is_a_connection_failure() -> None:
    with pytest.raises(TransportError) as caught:
        UrllibTransport().send(HttpRequest(f"http://127.0.0.1:{free_port()}/"), timeout=2)
    assert caught.value.kind == "connection"


def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(TransportError) as caught:
            UrllibTransport().send(HttpRequest(f"http://127.0.0.1:{listener.getsockname()[1]}/"), timeout=0.3)
    assert caught.value.kind == "timeout"


def test_an_unresolvable_name_is_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(TransportError, match="name resolution failed") as caught:
        UrllibTransport().send(HttpRequest("https://query2.finance.yahoo.com/v8/finance/chart/AAPL"), timeout=2)
    assert caught.value.kind == "dns"
