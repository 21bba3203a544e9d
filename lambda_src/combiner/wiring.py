"""Builds the combiner's SignalService from its settings (first request of a cold start), AWS adapters only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.bundle_source import fetch_bundle
from signal_engine.serving.service import SignalService

from .settings import CombinerSettings


def build_service(settings: CombinerSettings, client: Any) -> SignalService:
    """The service: bundle from S3 (or a folder), SageMaker experts, audit log and bars in the SQL database.

    ``client(service)`` builds boto3 clients (``boto3.client`` in Lambda).
    """
    from botocore.config import Config

    from signal_engine.adapters.s3 import S3ObjectStore
    from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
    from signal_engine.adapters.sql.engine import create_store_engine
    from signal_engine.adapters.sql.ledger import SqlLedger
    from signal_engine.adapters.sql.migrations import migrate
    from signal_engine.adapters.sql.recent_bars import SqlRecentBars

    def objects(bucket: str, prefix: str) -> S3ObjectStore:
        return S3ObjectStore(client("s3"), bucket, prefix)

    folder = fetch_bundle(settings.model_bundle_uri, objects, Path(settings.bundle_cache))
    bundle = ServingBundle.load(folder)
    deadline_s = settings.expert_deadline_ms / 1000
    runtime = client("sagemaker-runtime", config=Config(connect_timeout=max(1.0, deadline_s),
                                                        read_timeout=max(1.0, deadline_s),
                                                        retries={"max_attempts": 1, "mode": "standard"},
                                                        max_pool_connections=32))
    experts = SageMakerExperts(runtime, settings.expert_endpoints)
    url = settings.database_url
    if settings.database_secret:
        from signal_engine.adapters.aws_secrets import mysql_url

        url = mysql_url(client("secretsmanager"), settings.database_secret, "signal_engine")
    engine = create_store_engine(url, ca_file=settings.database_ca_file,
                                 require_verified_tls=settings.require_verified_tls)
    migrate(engine)
    return SignalService(bundle, experts, SqlLedger(engine), SqlRecentBars(engine), deadline_s=deadline_s)
