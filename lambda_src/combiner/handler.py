"""Lambda: the Signal API (POST /signals, POST /signals/batch, POST and GET /signals/batch/jobs, GET /book, GET /models,
GET /health) behind API Gateway, and the batch worker that answers a batch job (``batch_worker``, its own function).

No Powertools Tracer here: the X-Ray SDK and botocore it imports cost ~0.4 s of cold start, more than the
whole budget; the function's active tracing (set by the stack) records each invocation instead.
Settings are read from the environment once (``settings.CombinerSettings``); the service (bundle, SageMaker
client, audit database) is built on the first request and kept for the life of the execution environment, moving
to a newly promoted bundle when the registry's CURRENT changes (``wiring.LiveService``, ``MODEL_CHECK_SECONDS``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from signal_engine.errors import ConfigError
from signal_engine.serving.api import build_app
from signal_engine.serving.batch_jobs import BatchJobs
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


@functools.cache
def jobs() -> BatchJobs | None:
    """The batch jobs under ``BATCH_JOBS_URI``, started by invoking ``BATCH_WORKER_FUNCTION`` (None: not set)."""
    if not settings.batch_jobs_uri:
        return None
    from signal_engine.adapters.object_stores import object_store

    return BatchJobs(object_store(settings.batch_jobs_uri, _client), _start_worker,
                     timeout_s=settings.batch_job_timeout_s)


def _start_worker(job_id: str) -> None:
    if not settings.batch_worker_function:
        raise ConfigError("combiner environment: BATCH_WORKER_FUNCTION is not set, so a batch job cannot start; "
                          "deploy the serving stack again (it sets it to the batch worker's name)")
    _client("lambda").invoke(FunctionName=settings.batch_worker_function, InvocationType="Event",
                             Payload=json.dumps({"job_id": job_id}).encode())


app = build_app(service, max_batch=settings.max_batch_requests, jobs=jobs)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)


@logger.inject_lambda_context
@metrics.log_metrics
def batch_worker(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The batch worker (invoked asynchronously by ``POST /signals/batch/jobs``): answers the stored job."""
    kept = jobs()
    if kept is None:
        raise ConfigError("batch worker environment: BATCH_JOBS_URI is not set; deploy the serving stack again")
    job_id = str(event.get("job_id", ""))
    logger.append_keys(job_id=job_id)
    view = kept.run(job_id, service())
    assert view.result is not None
    metrics.add_metric(name="BatchJobs", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BatchJobSignals", unit=MetricUnit.Count, value=len(view.result.signals))
    return {"job_id": job_id, "status": view.status, "signals": len(view.result.signals),
            "errors": len(view.result.errors)}
