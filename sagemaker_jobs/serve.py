"""Inference entry point of the experts' SageMaker endpoint (``containers/inference``; ``serve`` in the image).

SageMaker unpacks the bundle (the evaluate job's ``model.tar.gz``) into ``/opt/ml/model``, starts the container
as ``docker run <image> serve`` (the image's ``serve`` command, which also accepts ``serve`` as its one argument)
and sends ``GET /ping`` and ``POST /invocations`` to port 8080, or to ``SAGEMAKER_BIND_TO_PORT`` when it sets it
(``SAGEMAKER_SAFE_PORT_RANGE`` is for extra ports, which this server does not open). ``SM_MODEL_DIR`` relocates
``/opt/ml/model`` (tests, a local run). SIGTERM stops the server cleanly. A bad start (no bundle, bad port,
unknown argument, a text expert that cannot load) exits 2 with one line naming the problem. JSON contract of
``/invocations``::

    request   {"symbol": "SPX", "history": 252 (optional), "timeframe": "1d" (optional, not used),
               "expert": "trend" | "experts": ["trend", "levels"] (optional),
               "bars": [{"timestamp": "2018-12-28", "open": ..., "high": ..., "low": ..., "close": ...,
                         "volume": ... (optional), "implied_vol": ... (optional, annualised % > 0; null
                         where missing: vol_har_implied then answers a null forecast of that bar)}, ...]}
                                                                      oldest first, at least bundle min_bars
    200 with "expert":   that expert's answer, e.g. {"p_down", "p_neutral", "p_up"}
                         (``signal_engine.serving.experts.answer``)
    200 with "experts":  {"symbol", "model_version", "as_of", "answers": {"trend": {...}, "levels": {...}}}:
                         what ``SageMakerExperts`` (the combiner's ExpertClient) asks, once per query for
                         every expert routed to this endpoint, the bars' features computed once
    200 with neither:    every expert's answer merged into one object (their keys do not overlap) plus
                         "model_version" and "as_of"
    400       {"error": "<the field at fault and what is expected>"}
    500       {"error": "internal error: <type>: <message>"} (the traceback goes to the log)

The text expert (``news``, when the bundle's ``bundle.json`` has a ``news`` section: ``docs/model-bundle.md``)
reads documents instead of bars; a request naming it (``"expert": "news"`` or in ``"experts"``) carries::

    "decision_time": "2024-01-05T21:00:00Z"      the close of the bar decided (UTC when no offset is given)
    "documents": [{"id": "...", "published_at": "2024-01-05T14:30:00Z", "title": "..." | "text": "..."}, ...]
                                                 possibly empty; at most 1,000
    answer    {"decision_time", "news_score": number | null, "news_confidence", "news_count", "news_weight",
               "documents": [{"id", "p_bearish", "p_bullish", "p_neutral", "score", "weight"}, ...]}

Each document gets its class probabilities (``score`` = p_bullish - p_bearish) and its weight in the aggregate:
``2^(-age / half_life)`` when published strictly before the decision time and at most ``max_age`` earlier, else 0
(``signal_engine.text.aggregate``, with the bundle's decay). ``news_score`` is the weighted mean of the scores of
the documents that count, null when none counts (an abstention, never 0), ``news_confidence`` W / (W + 1) with W
their summed weight (``news_weight``), ``news_count`` how many count. A request that names only the text expert
needs no bars. The encoder is the ``text`` extra's (installed in the inference image); the head is the bundle's
``news/head.npz``. ``signal_engine.text.serving`` answers it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from signal_engine.errors import SignalEngineError

MODEL_DIR = "/opt/ml/model"
PORT = 8080


class StartupError(Exception):
    """The server cannot start as configured; the message names the setting and the fix."""


def settings(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Path, int]:
    """The model folder and the port, from the container's arguments and environment."""
    if list(argv) not in ([], ["serve"]):
        raise StartupError(f"arguments {list(argv)!r}: the inference image takes none or 'serve' (SageMaker runs "
                           "`docker run <image> serve`)")
    raw = environ.get("SAGEMAKER_BIND_TO_PORT") or str(PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StartupError(f"SAGEMAKER_BIND_TO_PORT is {raw!r}; expected a port number 1-65535")
    return Path(environ.get("SM_MODEL_DIR") or MODEL_DIR), int(raw)


class BadRequest(ValueError):
    """A request the endpoint cannot answer; the message names the field."""


class ExpertService:
    """The bundle's experts, loaded once, answering requests for the bundle's symbols."""

    def __init__(self, model_dir: Path) -> None:
        from signal_engine.registry import load_experts

        self.model_dir = model_dir
        try:
            self.bundle = json.loads((model_dir / "bundle.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{model_dir}: no bundle.json; the model data must be the evaluate job's "
                                    "model.tar.gz") from None
        self.experts = load_experts(model_dir / "experts")
        self.bar_kinds = tuple(self.bundle["experts"])
        self.news, self.news_name = self._news_expert()
        self.kinds = self.bar_kinds + ((self.news_name,) if self.news is not None else ())
        self.symbols = tuple(self.bundle["symbols"])

    def _news_expert(self) -> tuple[Any, str]:
        """The text expert when the bundle carries one (loaded and warmed now, not on the first request)."""
        if self.bundle.get("news") is None:
            return None, ""
        from signal_engine.serving.bundle import NewsSettings
        from signal_engine.text.serving import NewsExpert

        settings = NewsSettings.from_json(self.bundle["news"])
        expert = NewsExpert.load(self.model_dir, settings)
        expert.warm()
        return expert, settings.expert

    def _fitted(self, kind: str, symbol: str) -> Any:
        """The symbol's own fit of ``kind`` (``kind/SYMBOL``), else one fit for every symbol (``kind``; a pooled
        network answers as the symbol's series), as the in-process client looks them up."""
        from signal_engine.serving.experts import for_symbol

        for key in (f"{kind}/{symbol}", kind):
            if key in self.experts:
                return for_symbol(self.experts[key], symbol)
        raise KeyError(f"the bundle's experts have neither {kind}/{symbol} nor {kind}; they are {sorted(self.experts)}")

    def invoke(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise BadRequest("body: expected a JSON object {\"symbol\", \"bars\", \"experts\"?}")
        symbol = request.get("symbol")
        if not isinstance(symbol, str) or symbol.upper() not in self.symbols:
            raise BadRequest(f"symbol: {symbol!r} is not served by this bundle; expected one of {list(self.symbols)}")
        symbol = symbol.upper()
        kinds = self._asked(request)
        answers: dict[str, dict[str, Any]] = {}
        bar_kinds = [k for k in kinds if k != self.news_name]
        as_of = None
        if bar_kinds:
            as_of, answers = self._bar_answers(request, symbol, bar_kinds)
        if self.news is not None and self.news_name in kinds:
            answers[self.news_name] = self._news_answer(request)
            as_of = as_of or answers[self.news_name]["decision_time"]
        single = request.get("expert")
        if single is not None:
            return answers[single]
        about = {"model_version": self.bundle["version"], "as_of": as_of}
        if "experts" in request:
            return {"symbol": symbol, **about, "answers": {kind: answers[kind] for kind in kinds}}
        merged: dict[str, Any] = {}
        for reply in answers.values():
            merged.update(reply)
        return {**merged, **about}

    def _asked(self, request: dict[str, Any]) -> list[str]:
        """The experts a request names: ``expert``, else ``experts``, else every bar expert (and the text expert
        when the request carries documents)."""
        single = request.get("expert")
        if single is not None:
            if single not in self.kinds:
                raise BadRequest(f"expert: {single!r}; expected one of {list(self.kinds)}")
            return [single]
        default = list(self.bar_kinds) + ([self.news_name] if self.news is not None and "documents" in request
                                          else [])
        kinds = request.get("experts", default)
        if not isinstance(kinds, list) or not kinds or any(k not in self.kinds for k in kinds):
            raise BadRequest(f"experts: {kinds!r}; expected a non-empty list drawn from {list(self.kinds)}")
        return kinds

    def _bar_answers(self, request: dict[str, Any], symbol: str,
                     kinds: list[str]) -> tuple[str, dict[str, dict[str, Any]]]:
        from signal_engine.serving.experts import answer, bars_frame, market_frame

        history = request.get("history", int(self.bundle.get("scores", {}).get("volatility_window", 252)))
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise BadRequest(f"history: {history!r}; expected a positive whole number of past forecasts")
        rows = request.get("bars")
        needed = int(self.bundle["min_bars"])
        if not isinstance(rows, list) or len(rows) < needed:
            got = len(rows) if isinstance(rows, list) else type(rows).__name__
            raise BadRequest(f"bars: got {got}; expected a list of at least {needed} bars, oldest first")
        try:
            bars = bars_frame(rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"bars: {exc}; each bar needs timestamp, open, high, low, close") from None
        if not bars.index.is_monotonic_increasing or bars.index.has_duplicates:
            raise BadRequest("bars: timestamps must be strictly increasing (oldest first)")
        frame = market_frame(bars)
        return str(bars.index[-1]), {kind: answer(kind, self._fitted(kind, symbol), bars, history=history,
                                                  frame=frame) for kind in kinds}

    def _news_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        from signal_engine.text.serving import NewsRequestError

        for name in ("documents", "decision_time"):
            if name not in request:
                raise BadRequest(f"{name}: missing; the text expert ({self.news_name}) reads \"documents\" "
                                 "[{\"id\", \"published_at\", \"title\" or \"text\"}, ...] (possibly empty) at "
                                 "\"decision_time\" (ISO-8601, UTC)")
        try:
            return dict(self.news.answer(request["documents"], request["decision_time"]))
        except NewsRequestError as exc:
            raise BadRequest(str(exc)) from None


def handler_for(service: ExpertService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._send(200, {"status": "ok", "model_version": service.bundle["version"]})
            else:
                self._send(404, {"error": f"path {self.path}: expected GET /ping or POST /invocations"})

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._send(404, {"error": f"path {self.path}: expected POST /invocations"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"null")
                self._send(200, service.invoke(request))
            except json.JSONDecodeError as exc:
                self._send(400, {"error": f"body: not JSON ({exc.msg} at position {exc.pos})"})
            except BadRequest as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:
                traceback.print_exc()
                self._send(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"serve: {self.address_string()} {format % args}\n")

    return Handler


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        model_dir, port = settings(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
        service = ExpertService(model_dir)
    except (StartupError, FileNotFoundError, SignalEngineError) as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer(("0.0.0.0", port), handler_for(service))
    signal.signal(signal.SIGTERM, _stop)
    print(f"serving {service.bundle['version']} ({', '.join(service.symbols)}) from {model_dir} on port {port}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("serve: stopping", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
