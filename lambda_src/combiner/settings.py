"""The combiner's environment, parsed once per cold start; a bad value names the variable and the fix."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, Field, ValidationError

from signal_engine.errors import ConfigError
from signal_engine.serving.schema import MAX_BATCH
from signal_engine.storage.primary_sources import PRIMARY_SOURCES_VARIABLE, primary_source_map

ENVIRONMENT = {
    "model_bundle_uri": "MODEL_BUNDLE_URI",
    "expert_endpoints": "EXPERT_ENDPOINTS",
    "expert_deadline_ms": "EXPERT_DEADLINE_MS",
    "database_secret": "SIGNAL_ENGINE_DATABASE_SECRET",
    "database_url": "SIGNAL_ENGINE_DATABASE_URL",
    "bundle_cache": "BUNDLE_CACHE_DIR",
    "database_ca_file": "SIGNAL_ENGINE_DATABASE_CA_FILE",
    "model_check_seconds": "MODEL_CHECK_SECONDS",
    "max_batch_requests": "MAX_BATCH_REQUESTS",
    "batch_jobs_uri": "BATCH_JOBS_URI",
    "batch_worker_function": "BATCH_WORKER_FUNCTION",
    "batch_job_timeout_s": "BATCH_JOB_TIMEOUT_S",
    "document_secret": "SIGNAL_ENGINE_DOCUMENT_SECRET",
    "document_url": "SIGNAL_ENGINE_DOCUMENT_URL",
    "document_database": "SIGNAL_ENGINE_DOCUMENT_DATABASE",
    "document_ca_file": "SIGNAL_ENGINE_DOCUMENT_CA_FILE",
    "primary_sources": PRIMARY_SOURCES_VARIABLE,
}


class CombinerSettings(BaseModel):
    """``MODEL_BUNDLE_URI`` s3://BUCKET/models/[VERSION/] or a folder; ``EXPERT_ENDPOINTS`` JSON name -> endpoint;
    ``EXPERT_DEADLINE_MS`` per request; ``MAX_BATCH_REQUESTS`` items per batch; ``BATCH_JOBS_URI`` (s3://BUCKET/PREFIX/
    or a folder), ``BATCH_WORKER_FUNCTION`` and ``BATCH_JOB_TIMEOUT_S`` for batch jobs; the audit database as
    ``SIGNAL_ENGINE_DATABASE_SECRET`` (RDS secret ARN) or ``SIGNAL_ENGINE_DATABASE_URL``; the stored news that a
    bundle with the text expert reads as ``SIGNAL_ENGINE_DOCUMENT_SECRET`` (DocumentDB secret ARN) or
    ``SIGNAL_ENGINE_DOCUMENT_URL``, in ``SIGNAL_ENGINE_DOCUMENT_DATABASE``, over TLS verified with
    ``SIGNAL_ENGINE_DOCUMENT_CA_FILE`` (none set: the news block says no document store is configured); the bar
    source read per symbol for a request without bars as ``SIGNAL_ENGINE_PRIMARY_SOURCES``, as the bars export
    reads it (``AAPL=nasdaq,...``; unset: the store's ranking)."""

    model_bundle_uri: str = Field(min_length=1)
    expert_endpoints: dict[str, str] = Field(default_factory=dict)
    expert_deadline_ms: int = Field(default=1500, ge=10, le=25_000)
    # The most items of one POST /signals/batch call that answer within the function's timeout (stage config).
    max_batch_requests: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)
    # Batch jobs (POST /signals/batch/jobs): where they are kept, the function that runs them, and its timeout
    # (a job without an answer after it is failed). Unset: the routes answer 501.
    batch_jobs_uri: str = ""
    batch_worker_function: str = ""
    batch_job_timeout_s: float = Field(default=900, gt=0, le=900)
    database_secret: str = ""
    database_url: str = ""
    bundle_cache: str = "/tmp/signal-engine-bundle"
    # A warm environment re-checks the registry's CURRENT (one S3 HEAD) at most this often; 0: on every request.
    model_check_seconds: float = Field(default=60, ge=0, le=86_400)
    # The Amazon RDS CA bundle; in Lambda (AWS_LAMBDA_FUNCTION_NAME set) MySQL is reached over verified TLS only.
    database_ca_file: str = ""
    require_verified_tls: bool = False
    # The document store (DocumentDB) the text expert's headlines are read from; read only when the bundle has one.
    document_secret: str = ""
    document_url: str = ""
    document_database: str = "signal_engine"
    document_ca_file: str = ""
    primary_sources: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CombinerSettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {name: env[var] for name, var in ENVIRONMENT.items() if env.get(var)}
        values["require_verified_tls"] = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        if "expert_endpoints" in values:
            try:
                values["expert_endpoints"] = json.loads(str(values["expert_endpoints"]))
            except json.JSONDecodeError:
                raise ConfigError(f"EXPERT_ENDPOINTS is not JSON; expected {{\"trend\": \"endpoint-name\", ...}}, "
                                  f"got {values['expert_endpoints']!r}") from None
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{ENVIRONMENT.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"combiner environment: {problems}") from None
        settings.primary_source_map()  # a malformed entry fails the cold start, naming it
        if not settings.database_secret and not settings.database_url:
            raise ConfigError("combiner environment: set SIGNAL_ENGINE_DATABASE_SECRET (the RDS secret) or "
                              "SIGNAL_ENGINE_DATABASE_URL: every signal served is written to the audit log")
        if settings.require_verified_tls and settings.database_secret and not settings.database_ca_file:
            raise ConfigError("combiner environment: SIGNAL_ENGINE_DATABASE_CA_FILE is not set, so the audit database "
                              "(RDS MySQL) cannot be reached over verified TLS; build the package with `make "
                              "package-lambdas RDS_CA_BUNDLE=global-bundle.pem` and deploy again")
        return settings

    def primary_source_map(self) -> dict[str, str]:
        return primary_source_map(self.primary_sources)
