"""Lambda: the Signal API (POST /signals, POST /signals/batch, GET /book, GET /models, GET /health) behind API Gateway.

No Powertools Tracer here: the X-Ray SDK and botocore it imports cost ~0.4 s of cold start, more than the
whole budget; the function's active tracing (set by the stack) records each invocation instead.
Settings are read from the environment once (``settings.CombinerSettings``); the service (bundle, SageMaker
client, audit database) is built on the first request and kept for the life of the execution environment, moving
to a newly promoted bundle when the registry's CURRENT changes (``wiring.LiveService``, ``MODEL_CHECK_SECONDS``).
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from signal_engine.serving.api import build_app
from signal_engine.serving.service import SignalService

from .settings import CombinerSettings
from .wiring import LiveService

logger = Logger(service="signal-engine-combiner")
metrics = Metrics(namespace="SignalEngine", service="signal-engine-combiner")
settings = CombinerSettings.from_env()


def _client(name: str, **options: Any) -> Any:
    import boto3

    return boto3.client(name, **options)


@functools.cache
def live() -> LiveService:
    return LiveService(settings, _client)


def service() -> SignalService:
    return live()()


app = build_app(service, max_batch=settings.max_batch_requests)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
