"""Serve the Signal API's resolver over HTTP with the standard library (``signal-engine serve``).

Each HTTP request becomes an API Gateway REST (v1) proxy event and goes through ``app.resolve`` exactly as in
the combiner Lambda, so the local server runs the same code path, validation and error bodies. Each server
thread has its own resolver (a resolver keeps the current event on itself); they share one SignalService.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_BODY_BYTES = 10 * 1024 * 1024
STAGE = "local"


@dataclass
class LocalContext:
    """The Lambda context attributes Powertools reads, for requests served locally."""

    aws_request_id: str
    function_name: str = "signal-engine-serve"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:signal-engine-serve"
    memory_limit_in_mb: int = 0
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def rest_event(method: str, target: str, headers: dict[str, str], body: bytes, *, source_ip: str,
               request_id: str) -> dict[str, Any]:
    """An API Gateway REST proxy event for one HTTP request (the layout API Gateway sends to Lambda)."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "resource": url.path,
        "path": url.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": url.path, "httpMethod": method, "path": f"/{STAGE}{url.path}", "stage": STAGE,
            "requestId": request_id, "accountId": "000000000000", "apiId": "local", "protocol": "HTTP/1.1",
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000), "identity": {"sourceIp": source_ip, "userAgent": headers.get(
                "User-Agent", "")},
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def make_server(app_factory: Callable[[], APIGatewayRestResolver], host: str = "127.0.0.1",
                port: int = 8000) -> ThreadingHTTPServer:
    """A threading HTTP server on ``host:port`` (port 0: any free port) answering with ``app_factory()`` apps."""
    local = threading.local()

    def app() -> APIGatewayRestResolver:
        if not hasattr(local, "app"):
            local.app = app_factory()
        resolver: APIGatewayRestResolver = local.app
        return resolver

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "signal-engine"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"Content-Type": "application/json"}, json.dumps({
                    "status": 413, "error": "too_large", "message": f"body of {length} bytes; at most "
                    f"{MAX_BODY_BYTES} are read", "fields": []}).encode(), close=True)
                return
            body = self.rfile.read(length) if length else b""
            request_id = str(uuid.uuid4())
            event = rest_event(self.command, self.path, dict(self.headers.items()), body,
                               source_ip=self.client_address[0], request_id=request_id)
            result = app().resolve(event, cast(LambdaContext, LocalContext(request_id)))
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            headers = {k: v for k, v in (result.get("headers") or {}).items()}
            for key, values in (result.get("multiValueHeaders") or {}).items():
                headers.setdefault(key, ", ".join(values))
            self._send(int(result["statusCode"]), headers, data)

        def _send(self, status: int, headers: dict[str, str], data: bytes, *, close: bool = False) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):  # every method reaches the resolver: 405 on a known path, else 404
                return self._handle
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
