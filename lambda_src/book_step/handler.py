"""Lambda: step the live books over the bars stored since their latest stepped bar, after the bars are collected.

Triggered by EventBridge: the bar collectors' on-success destination puts a "Lambda Function Invocation Result -
Success" event on the default bus (``source: lambda``) and a rule sends it here; a ``PutEvents`` "Step Book" request
(``source: signal-engine.book``, detail ``{"books": [...], "until": "..."}``, both optional) or a schedule rule
(``detail: {}``) step on demand. Every trigger steps every book (or the books the detail names) up to the latest
stored bars (or ``until``): a book whose bars were stepped already is replayed, unchanged, so a second trigger for
the same collection (both bar collectors succeed) changes nothing.

Container image (containers/book_step/Dockerfile): the experts run in process (pandas, scikit-learn, LightGBM, arch).
The text expert of a bundle with the news slot (``moe.news``) is asked on the experts' SageMaker endpoint, as the
combiner asks it (the image has no text encoder), about the headlines read from the document store (DocumentDB).

Environment (besides the store settings of ``signal_engine.bootstrap``; in AWS ``SIGNAL_ENGINE_DATABASE_SECRET``,
``SIGNAL_ENGINE_DATABASE_CA_FILE``, ``SIGNAL_ENGINE_DOCUMENT_SECRET`` and ``SIGNAL_ENGINE_DOCUMENT_CA_FILE``):

- ``MODEL_BUNDLE_URI``: ``s3://ARTIFACTS_BUCKET/models/`` (the registry: ``CURRENT`` names the version) or a
  version folder; the whole-book bundle is copied to ``BUNDLE_CACHE_DIR`` (default ``/tmp/signal-engine-book``)
  once per version and reused while the execution environment stays warm.
- ``EXPERT_ENDPOINTS``: JSON ``{"news": "ENDPOINT"}``, the endpoint that answers the text expert (the combiner's
  variable; only its ``news`` entry is read); ``EXPERT_DEADLINE_MS`` (default 60000) how long it gets. Unset: a
  bundle with the news slot runs its text expert in process (which needs the ``text`` extra).

Metrics (namespace ``SignalEngine``, service ``signal-engine-book``): ``StepRequests``, ``BooksStepped`` (books whose
step succeeded, the missed-step alarm's metric), ``BarsStepped``, ``BarsReplayed``, ``SymbolsWaiting``,
``SymbolsEnded``, ``StepFailures``, ``InvalidEvents``. Any failure raises after counting it (Lambda's retries,
then the DLQ and the errors alarm); a step that raises leaves the stored book as it was.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from signal_engine.bootstrap import Settings, Storage, bootstrap, object_store
from signal_engine.errors import ConfigError
from signal_engine.live.books import BookStepReport, step_books
from signal_engine.live.models import EXPERT_DEADLINE_S
from signal_engine.ports import ExpertClient, ObjectStore
from signal_engine.serving.bundle import NEWS_EXPERT
from signal_engine.serving.bundle_source import fetch_book_bundle

SERVICE = "signal-engine-book"
NAMESPACE = "SignalEngine"
MODEL_BUNDLE_URI = "MODEL_BUNDLE_URI"
BUNDLE_CACHE_DIR = "BUNDLE_CACHE_DIR"
EXPERT_ENDPOINTS = "EXPERT_ENDPOINTS"
EXPERT_DEADLINE_MS = "EXPERT_DEADLINE_MS"
DEFAULT_CACHE = "/tmp/signal-engine-book"
# What Lambda puts on the bus for a successful asynchronous invocation with an EventBridge on-success destination.
DESTINATION_SOURCE = "lambda"
DESTINATION_SUCCESS = "Lambda Function Invocation Result - Success"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class StepDetail(BaseModel):
    """A "Step Book" request's detail, all optional: which books, and the latest bar time to step to."""

    model_config = ConfigDict(extra="forbid")

    books: list[str] | None = Field(default=None, min_length=1)
    until: datetime | None = None

    @field_validator("until")
    @classmethod
    def _naive_utc(cls, value: datetime | None) -> datetime | None:
        """Bar times are naive UTC in the stores; an aware time is converted, a naive one taken as UTC."""
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value


class StepEvent(EventBridgeModel):
    """An EventBridge event: a bar collector's on-success record, a "Step Book" request, or a schedule."""

    detail: dict[str, Any]


def step_request(event: StepEvent) -> StepDetail:
    """What to step: everything after a collection; the request's books and ``until`` otherwise."""
    if event.source == DESTINATION_SOURCE and event.detail_type == DESTINATION_SUCCESS:
        return StepDetail()
    return StepDetail.model_validate(event.detail)


@cache
def storage() -> Storage:
    """The stores (the live books, the bars), connected and migrated once per execution environment."""
    return bootstrap(Settings.from_env())


def _objects(bucket: str, prefix: str) -> ObjectStore:
    return object_store(f"s3://{bucket}/{prefix}")


@cache
def text_expert() -> ExpertClient | None:
    """The client of the text expert's endpoint (``EXPERT_ENDPOINTS``' ``news``), or None where none is set."""
    endpoint = text_endpoint(os.environ.get(EXPERT_ENDPOINTS, ""))
    if endpoint is None:
        return None
    import boto3
    from botocore.config import Config

    from signal_engine.adapters.sagemaker_runtime import SageMakerExperts

    deadline_s = float(os.environ.get(EXPERT_DEADLINE_MS) or EXPERT_DEADLINE_S * 1000) / 1000
    runtime = boto3.client("sagemaker-runtime", config=Config(connect_timeout=max(1.0, deadline_s),
                                                              read_timeout=max(1.0, deadline_s),
                                                              retries={"max_attempts": 1, "mode": "standard"}))
    return SageMakerExperts(runtime, {NEWS_EXPERT: endpoint})


def text_endpoint(value: str) -> str | None:
    """The ``news`` endpoint of an ``EXPERT_ENDPOINTS`` value (JSON name -> endpoint); None when it names none."""
    if not value:
        return None
    try:
        endpoints = json.loads(value)
    except json.JSONDecodeError:
        endpoints = None
    if not isinstance(endpoints, dict):
        raise ConfigError(f"{EXPERT_ENDPOINTS} is {value!r}; expected a JSON object such as "
                          f'{{"{NEWS_EXPERT}": "endpoint-name"}}')
    endpoint = endpoints.get(NEWS_EXPERT)
    return str(endpoint) if endpoint else None


def bundle_folder() -> Path:
    """The whole-book bundle that ``MODEL_BUNDLE_URI`` names now, copied locally (once per version)."""
    uri = os.environ.get(MODEL_BUNDLE_URI, "")
    if not uri:
        raise ConfigError(f"{MODEL_BUNDLE_URI} is not set; expected s3://ARTIFACTS_BUCKET/models/ (the model "
                          "registry the training workflow promotes versions in)")
    return fetch_book_bundle(uri, _objects, Path(os.environ.get(BUNDLE_CACHE_DIR) or DEFAULT_CACHE))


def _count(reports: list[BookStepReport]) -> None:
    waiting = {symbol for report in reports for symbol in report.waiting}
    ended = {symbol for report in reports for symbol in report.ended}
    metrics.add_metric(name="BooksStepped", unit=MetricUnit.Count, value=len(reports))
    metrics.add_metric(name="BarsStepped", unit=MetricUnit.Count, value=sum(r.stepped for r in reports))
    metrics.add_metric(name="BarsReplayed", unit=MetricUnit.Count, value=sum(r.replayed for r in reports))
    metrics.add_metric(name="SymbolsWaiting", unit=MetricUnit.Count, value=len(waiting))
    metrics.add_metric(name="SymbolsEnded", unit=MetricUnit.Count, value=len(ended))
    metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=0)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = step_request(parse(event=event, model=StepEvent))
    except ValueError:  # pydantic's ValidationError included
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="StepRequests", unit=MetricUnit.Count, value=1)
    try:
        folder = bundle_folder()
        reports = step_books(storage(), folder, books=request.books, until=request.until, text_expert=text_expert())
    except Exception as exc:
        metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=1)
        logger.exception("book step failed", extra={"error": str(exc)})
        raise
    _count(reports)
    for report in reports:
        if report.waiting:
            logger.warning("book waits for symbols whose latest bar lags",
                           extra={"book": report.book, "waiting": list(report.waiting)})
    response = {"version": folder.name, "books": [report.to_json() for report in reports]}
    logger.info("books stepped", extra=response)
    return response
