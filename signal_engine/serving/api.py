"""The Signal API as a Powertools REST resolver: the combiner Lambda and ``signal-engine serve`` run this same app.

Routes: ``POST /signals``, ``POST /signals/batch``, ``POST /signals/batch/jobs``, ``GET /signals/batch/jobs/<id>``,
``GET /book``, ``GET /models``, ``GET /health``. Bodies are
the pydantic models of :mod:`signal_engine.serving.schema` (``enable_validation=True``): a bad request is a 422
whose body names each field at fault; every error body is an :class:`~signal_engine.serving.schema.ErrorBody`.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer, SecurityScheme
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from signal_engine.errors import SignalEngineError
from signal_engine.serving.batch_jobs import JOB_ID_PATTERN, BatchJobs
from signal_engine.serving.book import RECENT_BARS
from signal_engine.serving.schema import (
    MAX_BATCH,
    SYMBOL_PATTERN,
    BatchJobView,
    BatchRequest,
    BatchResponse,
    BookResponse,
    ErrorBody,
    FieldProblem,
    HealthResponse,
    ModelsResponse,
    SignalRequest,
    SignalResponse,
)
from signal_engine.serving.service import ServingError, SignalService

TITLE = "signal-engine Signal API"
API_VERSION = "1.0.0"
DESCRIPTION = ("Trading signals from a Mixture of Experts and a risk layer. Every signal served is written to the "
               "audit log with its inputs' ids and the model version.")
OPEN_PATHS = ("/health",)
MAX_RECENT_BARS = 250
# Deployed, API Gateway authorizes every method with IAM (SigV4, service execute-api; stacks/serving.py), with
# the API key only for the usage plan; `signal-engine serve --token` checks a bearer token instead.
SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "sigv4": APIKey.model_validate({
        "name": "Authorization", "in": APIKeyIn.header, "x-amazon-apigateway-authtype": "awsSigv4",
        "description": "AWS Signature Version 4 (service execute-api) by a principal the stage's "
                       "api_allowed_principals lists; send the usage plan's key as x-api-key too"}),
    "bearer": HTTPBearer(description="`signal-engine serve --token`: Authorization: Bearer <token> "
                                     "(every route but /health)"),
}
_log = logging.getLogger(__name__)


def _error(description: str) -> OpenAPIResponse:
    """An OpenAPI response whose body is an ErrorBody."""
    return cast(OpenAPIResponse, {"description": description, "content": {"application/json": {"model": ErrorBody}}})


def error_response(status: int, error: str, message: str, fields: Sequence[FieldProblem] = ()) -> Response[str]:
    body = ErrorBody(status=status, error=error, message=message, fields=list(fields))
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body.model_dump_json())


class SignalResolver(APIGatewayRestResolver):
    """The REST resolver, refusing before routing: a method a known path does not have (405 with ``Allow``, RFC 9110;
    Powertools alone answers 404) and a body that is not JSON (415, before Powertools parses it as a form)."""

    def allowed_methods(self, path: str) -> list[str]:
        """The methods routed on ``path`` (empty for an unknown path)."""
        path = self._remove_prefix(path)
        return sorted({route.method for route in self._static_routes + self._dynamic_routes if route.rule.match(path)})

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        method = str(event.get("httpMethod") or "").upper()
        allowed = self.allowed_methods(str(event.get("path") or ""))
        if allowed and method not in allowed:
            return _refusal(405, "method_not_allowed", f"{method} {event.get('path')}: this path answers "
                            f"{' and '.join(allowed)} only", {"Allow": ", ".join(allowed)})
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        content_type = headers.get("content-type", "").strip()
        if event.get("body") and content_type and not content_type.lower().startswith("application/json"):
            return _refusal(415, "unsupported_media_type", f"Content-Type {content_type!r}: the API reads JSON "
                            "bodies; send the header 'Content-Type: application/json'")
        if event.get("body") and event.get("isBase64Encoded"):
            try:
                base64.b64decode(str(event["body"]), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return _refusal(400, "invalid_body", "the body is not UTF-8 text; send a JSON document")
        return super().resolve(event, context)


def _refusal(status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway proxy result with an ErrorBody, for requests refused before routing."""
    body = ErrorBody(status=status, error=error, message=message)
    return {"statusCode": status, "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
            "multiValueHeaders": {}, "body": body.model_dump_json(), "isBase64Encoded": False}


def build_app(service: Callable[[], SignalService], *, token: Callable[[], str | None] = lambda: None,
              max_batch: int = MAX_BATCH, jobs: Callable[[], BatchJobs | None] = lambda: None) -> SignalResolver:
    """The resolver; ``service()`` gives the (lazily built, cached) SignalService, ``token()`` the optional token.

    With a token set, every route but ``/health`` needs ``Authorization: Bearer <token>`` (or ``x-api-key``).
    ``max_batch``: the most items a batch may hold here (the combiner Lambda's ``MAX_BATCH_REQUESTS``: what answers
    within its timeout); a larger one is refused with 422 naming the limit, before any expert is asked.
    ``jobs()``: where batch jobs are kept and started (``POST /signals/batch/jobs``, any size up to MAX_BATCH);
    None answers those routes 501.
    """

    def batch_jobs() -> BatchJobs:
        kept = jobs()
        if kept is None:
            raise ServingError(501, "not_configured", "batch jobs are not configured here; send at most "
                               f"{max_batch} requests to POST /signals/batch instead")
        return kept
    app = SignalResolver(enable_validation=True)

    def authorise(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
        expected = token()
        if expected and app.current_event.path not in OPEN_PATHS:
            headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error_response(401, "unauthorised", "missing or wrong token: send the header "
                                      "'Authorization: Bearer <token>' (the server's --token)")
        return next_middleware(app)

    app.use(middlewares=[authorise])

    @app.post("/signals", summary="The signal of one symbol", tags=["signals"],
              responses={200: {"description": "the signal"}, 401: _error("missing or wrong token"),
                         404: _error("the model does not serve the symbol (unknown, or withheld by its quality "
                                     "gate), or it has no stored bars, or as_of is before the first bar stepped by "
                                     "the book that holds it"),
                         400: _error("the body is not UTF-8 text"),
                         415: _error("the body is not JSON (send Content-Type: application/json)"),
                         422: _error("a field of the request is invalid (named in the body)"),
                         503: _error("no expert answered, or the audit log is unavailable")})
    def post_signal(request: SignalRequest) -> SignalResponse:
        return service().signal(request, _request_id(app))

    @app.post("/signals/batch", summary="Signals of several symbols (at most 1,000)", tags=["signals"],
              responses={200: {"description": "the signals, and an error per request that had none"},
                         401: _error("missing or wrong token"),
                         400: _error("the body is not UTF-8 text"),
                         415: _error("the body is not JSON (send Content-Type: application/json)"),
                         422: _error("a field of the request is invalid (named in the body), or the batch holds "
                                     "more requests than this deployment answers in one call (on AWS the stage's "
                                     "max_batch_requests)")})
    def post_batch(request: BatchRequest) -> BatchResponse:
        if len(request.requests) > max_batch:
            raise ServingError(422, "validation_error", f"field 'requests': {len(request.requests)} requests, at most "
                               f"{max_batch} per call here (what answers within the function's timeout); split the "
                               f"batch into calls of at most {max_batch}",
                               [FieldProblem(field="requests", problem=f"at most {max_batch} items per call")])
        return service().batch(request, _request_id(app))

    @app.post("/signals/batch/jobs", summary="Start a batch job: signals of up to 1,000 symbols, answered later",
              tags=["signals"],
              responses={202: {"description": "the job, running: ask GET /signals/batch/jobs/{job_id} for its answer",
                               "content": {"application/json": {"model": BatchJobView}}},
                         401: _error("missing or wrong token"),
                         400: _error("the body is not UTF-8 text"),
                         415: _error("the body is not JSON (send Content-Type: application/json)"),
                         422: _error("a field of the request is invalid (named in the body)"),
                         501: _error("batch jobs are not configured on this server"),
                         503: _error("the server is stopping (signal-engine serve): the job is stored failed, not "
                                     "started")})
    def post_batch_job(request: BatchRequest) -> Response[BatchJobView]:
        view = batch_jobs().submit(request)
        return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=view)

    @app.get("/signals/batch/jobs/<job_id>", summary="A batch job: running, done with its signals, or failed",
             tags=["signals"],
             responses={200: {"description": "the job; when done, `result` is what POST /signals/batch answers"},
                        401: _error("missing or wrong token"),
                        404: _error("no such job"),
                        422: _error("the job id is not one POST /signals/batch/jobs answers"),
                        501: _error("batch jobs are not configured on this server")})
    def get_batch_job(job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN, description="from POST /signals/batch/jobs")],
                      ) -> BatchJobView:
        return batch_jobs().view(job_id)

    @app.get("/book", summary="The live books: positions, allocations, risk state and recent events",
             tags=["book"],
             responses={200: {"description": "the live books (or the one named) at their latest stepped bar"},
                        401: _error("missing or wrong token"),
                        404: _error("no live book is stored, or none has that name"),
                        422: _error("a query parameter is invalid (named in the body)")})
    def get_book(
        name: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="only this book (daily, 1h, ...)")]
        = None,
        recent_bars: Annotated[int, Query(ge=1, le=MAX_RECENT_BARS, description="list the events of this many of "
                                          f"the latest bars (default {RECENT_BARS})")] = RECENT_BARS,
    ) -> BookResponse:
        return service().book(name, recent_bars)

    @app.get("/models", summary="The model version in use and what answers for each expert", tags=["models"],
             responses={200: {"description": "the model version in use"},
                        401: _error("missing or wrong token")})
    def get_models() -> ModelsResponse:
        return service().models()

    @app.get("/health", summary="Liveness, and the model version loaded", tags=["health"],
             responses={200: {"description": "the service is up"},
                        503: _error("no model could be loaded")})
    def get_health() -> HealthResponse:
        return service().health()

    @app.exception_handler(RequestValidationError)
    def invalid_request(exc: RequestValidationError) -> Response[str]:
        fields = [FieldProblem(field="body" if e.get("type") == "json_invalid" else _field_name(e.get("loc", ())),
                               problem=str(e.get("msg", "invalid")).removeprefix("Value error, "))
                  for e in exc.errors()]
        message = "; ".join(f"field '{f.field}': {f.problem}" for f in fields) or "invalid request"
        return error_response(422, "validation_error", message, fields)

    @app.exception_handler(ServingError)
    def serving_error(exc: ServingError) -> Response[str]:
        return error_response(exc.status, exc.error, exc.message, exc.fields)

    @app.exception_handler(SignalEngineError)
    def model_unavailable(exc: SignalEngineError) -> Response[str]:
        _log.error("model unavailable: %s", exc)
        return error_response(503, "model_unavailable", f"no model can be served: {exc}")

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        _log.exception("unexpected error")
        return error_response(500, "internal_error", f"unexpected {type(exc).__name__}; the request id is in the "
                              "logs; retry, or report it if it persists")

    @app.not_found
    def not_found(exc: Exception) -> Response[str]:
        event = app.current_event
        return error_response(404, "not_found", f"no route {event.http_method} {event.path}; the API has POST "
                              "/signals, POST /signals/batch, POST /signals/batch/jobs, GET "
                              "/signals/batch/jobs/{job_id}, GET /book, GET /models and GET /health")

    return app


def openapi_json(app: APIGatewayRestResolver) -> str:
    """The OpenAPI document of ``app`` (what ``docs/openapi.json`` holds), with sorted keys."""
    document = json.loads(app.get_openapi_json_schema(
        title=TITLE, version=API_VERSION, description=DESCRIPTION, security_schemes=SECURITY_SCHEMES,
        security=[{"sigv4": []}, {"bearer": []}]))
    for path in OPEN_PATHS:  # deployed, IAM guards them too; `serve --token` leaves them open (`{}`: no scheme)
        for operation in document["paths"].get(path, {}).values():
            operation["security"] = [{"sigv4": []}, {}]
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _request_id(app: APIGatewayRestResolver) -> str | None:
    context = app.current_event.request_context
    return getattr(context, "request_id", None) or None


def _field_name(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"

