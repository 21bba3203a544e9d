"""What every collector handler shares: observability, the event model, settings and the idempotent use case.

Environment (besides the store settings read by ``signal_engine.bootstrap``):

- ``SYMBOLS``: comma-separated symbols to collect when the event's detail names none
- ``WINDOW_DAYS``: days back from the event time when the detail gives no start/end (default 5)
- ``TIMEFRAME``: bar length for bar collectors when the detail gives none (default ``1d``)
- ``IDEMPOTENCY_TABLE``: the DynamoDB table of the Powertools idempotency layer
- ``IDEMPOTENCY_TTL_SECONDS``: how long a finished window is remembered (default 6 hours)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from signal_engine.bootstrap import Settings, Storage, bootstrap, build_source
from signal_engine.collectors.errors import SourceFormatError, SourceRejected, SourceUnavailable
from signal_engine.collectors.service import CollectionFailed, CollectRequest, collect
from signal_engine.collectors.sources import Source

SERVICE = "signal-engine-collectors"
NAMESPACE = "SignalEngine"
DEFAULT_WINDOW_DAYS = 5
DEFAULT_TTL_SECONDS = 6 * 3600

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class CollectDetail(BaseModel):
    """The event detail: all optional (a plain schedule sends ``{}``), overriding the function's defaults."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] | None = Field(default=None, min_length=1)
    start: date | None = None
    end: date | None = None
    timeframe: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CollectDetail:
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class CollectEvent(EventBridgeModel):
    """An EventBridge event (a schedule rule, EventBridge Scheduler, or a PutEvents 'Collect Request')."""

    detail: CollectDetail


class CollectionWindow(BaseModel):
    """The idempotency key: an event delivered again (same time, same window) is answered from the first run.

    ``requested_at`` is the event's time, so the next tick of a schedule (quotes, intraday bars) is a new
    collection; the stores make its rows idempotent in turn (no duplicates, restatements recorded).
    """

    source: str
    kind: str
    symbols: tuple[str, ...]
    start: date
    end: date
    timeframe: str
    requested_at: datetime


def window_for(event: CollectEvent, source: str, kind: str, env: Mapping[str, str]) -> CollectionWindow:
    """The window an event asks for, filling gaps from the environment and the event time."""
    detail = event.detail
    symbols = detail.symbols or [s.strip() for s in env.get("SYMBOLS", "").split(",") if s.strip()]
    if not symbols:
        raise ValueError("no symbols to collect: set the SYMBOLS environment variable or detail.symbols")
    end = detail.end or event.time.date()
    start = detail.start or end - timedelta(days=int(env.get("WINDOW_DAYS", DEFAULT_WINDOW_DAYS)))
    return CollectionWindow(source=source, kind=kind, symbols=tuple(s.upper() for s in symbols), start=start,
                            end=end, timeframe=detail.timeframe or env.get("TIMEFRAME", "1d"),
                            requested_at=event.time)


@cache
def storage() -> Storage:
    """The stores, connected (and migrated) once per execution environment."""
    return bootstrap(Settings.from_env())


@cache
def source_for(name: str) -> Source:
    """The source with its HTTP client (cookies, rate limit), kept for the execution environment."""
    return build_source(name)


@cache
def persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])


def make_handler(source: str, kind: str) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A Lambda handler that collects ``kind`` from ``source`` for the window its EventBridge event names."""
    config = IdempotencyConfig(expires_after_seconds=int(os.environ.get("IDEMPOTENCY_TTL_SECONDS",
                                                                        DEFAULT_TTL_SECONDS)))

    @idempotent_function(data_keyword_argument="window", persistence_store=persistence(), config=config,
                         key_prefix=f"{source}-{kind}")
    def collect_window(window: CollectionWindow) -> dict[str, Any]:
        request = CollectRequest(window.source, window.kind, window.symbols, window.start, window.end,
                                 window.timeframe)
        report = collect(request, source_for(source), storage())
        _count(report.payloads, sum(r.written for r in report.written.values()),
               sum(r.disagreements for r in report.written.values()))
        return {**window.model_dump(mode="json"), **report.as_dict()}

    @logger.inject_lambda_context(log_event=False)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            window = window_for(parse(event=event, model=CollectEvent), source, kind, os.environ)
        except ValueError:  # pydantic's ValidationError included
            metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
            raise
        metrics.add_metric(name="CollectionRequests", unit=MetricUnit.Count, value=1)
        config.register_lambda_context(context)
        logger.info("collecting", extra={"window": window.model_dump(mode="json")})
        try:
            return dict(collect_window(window=window))
        except (CollectionFailed, SourceUnavailable, SourceRejected, SourceFormatError) as exc:
            metrics.add_metric(name="CollectionFailures", unit=MetricUnit.Count, value=1)
            logger.error("collection failed", extra={"error": str(exc)})
            raise

    return handler


def _count(payloads: int, rows: int, disagreements: int = 0) -> None:
    metrics.add_metric(name="PayloadsKept", unit=MetricUnit.Count, value=payloads)
    metrics.add_metric(name="RowsWritten", unit=MetricUnit.Count, value=rows)
    # bars that disagree with another source beyond the tolerance (recorded in bar_disagreements); alarm on > 0
    metrics.add_metric(name="BarDisagreements", unit=MetricUnit.Count, value=disagreements)
