"""The experts' SageMaker endpoints on loopback, for tests: the inference server (sagemaker_jobs/serve.py) in
process, one per model bundle, behind a small stand-in for the SageMaker runtime's front end, so that a real boto3
``sagemaker-runtime`` client's ``invoke_endpoint`` (signed, serialised and parsed by botocore, sent over HTTP by
urllib3) reaches the server's ``POST /invocations``.

The front end takes ``POST /endpoints/<name>/invocations``, refuses a request without a SigV4 signature (403) or
for an endpoint it does not know (404, ``ValidationError``), passes the body and content type to that endpoint's
server and relays a 200; a container that answers anything else comes back as the runtime reports it, a 424
``ModelError`` carrying the container's status and message.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from sagemaker_jobs import serve

INVOCATION = re.compile(r"/endpoints/(?P<name>[^/]+)/invocations")
SIGV4 = "AWS4-HMAC-SHA256 "


class CountingService(serve.ExpertService):
    """The inference server's expert service, counting the requests it answers (``requests``) and the answers of
    each expert in them (``answered``); ``fail_from(expert, bar)`` makes every request that asks ``expert``, alone
    or with others, raise when its last bar is at or after ``bar`` (the server then answers 500, as it does for
    any expert that raises), counting it in ``refused[expert]``."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self.requests = 0
        self.answered: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._failing: tuple[str, pd.Timestamp] | None = None
        self._lock = threading.Lock()

    def fail_from(self, expert: str | None, bar: pd.Timestamp | None = None) -> None:
        """Make ``expert`` fail from ``bar`` on; ``None`` heals it."""
        self._failing = None if expert is None or bar is None else (expert, bar)

    def asked(self, request: Any) -> list[str]:
        """The experts a request names (``expert`` or ``experts``; neither: every expert of the bundle)."""
        if not isinstance(request, dict):
            return []
        if "expert" in request:
            return [str(request["expert"])]
        experts = request.get("experts", list(self.kinds))
        return [str(e) for e in experts] if isinstance(experts, list) else []

    def invoke(self, request: Any) -> dict[str, Any]:
        asked = self.asked(request)
        failing = self._failing
        if failing is not None and failing[0] in asked and _last_bar(request) >= failing[1]:
            with self._lock:
                self.refused[failing[0]] += 1
            raise RuntimeError(f"expert {failing[0]} made to fail from {failing[1]}")
        reply = super().invoke(request)
        with self._lock:
            self.requests += 1
            self.answered.update(asked)
        return reply


def _last_bar(request: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(request["bars"][-1]["timestamp"])


@dataclass
class Endpoints:
    """Running endpoints: ``url`` is the front end (a client's ``endpoint_url``), ``services`` the endpoint
    name -> its server's expert service."""

    url: str
    services: dict[str, CountingService] = field(default_factory=dict)

    def requests(self) -> dict[str, int]:
        """Requests each endpoint's server answered 200 so far."""
        return {name: service.requests for name, service in self.services.items()}

    def answered(self) -> dict[str, Counter[str]]:
        """Each endpoint's answers so far per expert (a request naming three experts answers each once)."""
        return {name: Counter(service.answered) for name, service in self.services.items()}


@contextmanager
def serve_endpoints(model_dirs: Mapping[str, Path]) -> Iterator[Endpoints]:
    """One inference server per endpoint name -> bundle folder (the folder SageMaker unpacks ``model.tar.gz``
    into, given to the server as ``SM_MODEL_DIR``), and the front end that routes to them."""
    with ExitStack() as stack:
        services: dict[str, CountingService] = {}
        ports: dict[str, int] = {}
        for name, folder in model_dirs.items():
            model_dir, _ = serve.settings(["serve"], {"SM_MODEL_DIR": str(folder)})
            services[name] = CountingService(model_dir)
            ports[name] = stack.enter_context(_running(serve.handler_for(services[name])))
        front = stack.enter_context(_running(_front_end(ports)))
        yield Endpoints(f"http://127.0.0.1:{front}", services)


@contextmanager
def _running(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _front_end(ports: Mapping[str, int]) -> type[BaseHTTPRequestHandler]:
    class FrontEnd(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # urllib3 keeps its connections alive, as with the real runtime

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, kind: str, message: str, **extra: Any) -> None:
            body = json.dumps({"message": message, **extra}).encode()
            self._send(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": f"{kind}:"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = INVOCATION.fullmatch(self.path)
            if not self.headers.get("Authorization", "").startswith(SIGV4):
                self._error(403, "MissingAuthenticationTokenException", "request is not signed with SigV4")
            elif match is None or match["name"] not in ports:
                self._error(404, "ValidationError", f"{self.path}: no such endpoint; known: {sorted(ports)}")
            else:
                self._invoke(ports[match["name"]], body)

        def _invoke(self, port: int, body: bytes) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                connection.request("POST", "/invocations", body, {
                    "Content-Type": self.headers.get("Content-Type", "application/octet-stream"),
                    "Accept": self.headers.get("Accept", "*/*")})
                reply = connection.getresponse()
                answer = reply.read()
                content_type = reply.getheader("Content-Type", "application/json")
            finally:
                connection.close()
            if reply.status == 200:
                self._send(200, answer, {"Content-Type": content_type})
            else:
                text = answer.decode("utf-8", "replace")
                self._error(424, "ModelError", f"Received server error ({reply.status}) from primary with message "
                            f"\"{text}\"", OriginalStatusCode=reply.status, OriginalMessage=text)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return FrontEnd
