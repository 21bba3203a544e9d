"""Builds the combiner's SignalService from its settings (first request of a cold start), AWS adapters only, and
keeps it on the registry's current bundle while the execution environment stays warm (``LiveService``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.bundle_source import CurrentWatch, current_probe, fetch_bundle
from signal_engine.serving.service import SignalService

from .settings import CombinerSettings

logger = logging.getLogger(__name__)


def _objects(client: Any) -> Callable[[str, str], Any]:
    from signal_engine.adapters.s3 import S3ObjectStore

    def objects(bucket: str, prefix: str) -> S3ObjectStore:
        return S3ObjectStore(client("s3"), bucket, prefix)

    return objects


def load_bundle(settings: CombinerSettings, client: Any) -> ServingBundle:
    """The bundle ``MODEL_BUNDLE_URI`` names now (a registry's CURRENT version, or a pinned one)."""
    return ServingBundle.load(fetch_bundle(settings.model_bundle_uri, _objects(client), Path(settings.bundle_cache)))


def build_service(settings: CombinerSettings, client: Any, bundle: ServingBundle | None = None) -> SignalService:
    """The service: bundle from S3 (or a folder), SageMaker experts; audit log, bars and live books in the SQL database.

    ``client(service)`` builds boto3 clients (``boto3.client`` in Lambda).
    """
    from botocore.config import Config

    from signal_engine.adapters.sagemaker_runtime import SageMakerExperts
    from signal_engine.adapters.sql.books import SqlBookStore
    from signal_engine.adapters.sql.engine import create_store_engine
    from signal_engine.adapters.sql.ledger import SqlLedger
    from signal_engine.adapters.sql.migrations import migrate
    from signal_engine.adapters.sql.recent_bars import SqlRecentBars

    bundle = bundle or load_bundle(settings, client)
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
    return SignalService(bundle, experts, SqlLedger(engine), SqlRecentBars(engine, settings.primary_source_map()),
                         deadline_s=deadline_s, books=SqlBookStore(engine),
                         documents=document_store(settings, client, bundle))


def document_store(settings: CombinerSettings, client: Any, bundle: ServingBundle) -> Any:
    """The DocumentDB store of the symbols' news, when the bundle carries the text expert and one is configured
    (pymongo is imported only then: a bundle without the text expert cold-starts as before)."""
    if bundle.news is None or not (settings.document_secret or settings.document_url):
        return None
    from signal_engine.adapters.aws_secrets import documentdb_client_url, documentdb_url
    from signal_engine.adapters.documentdb import DocumentDbStore, connect_documentdb

    url = settings.document_url
    if settings.document_secret:
        url = documentdb_url(client("secretsmanager"), settings.document_secret)
    url = documentdb_client_url(url, settings.document_ca_file, require_verified_tls=settings.require_verified_tls)
    return DocumentDbStore(connect_documentdb(url, settings.document_database))


class LiveService:
    """The service of a warm execution environment, moved to a newly promoted bundle without a cold start.

    Every ``MODEL_CHECK_SECONDS`` at most, a request first asks whether the registry's ``CURRENT`` changed (one S3
    HEAD); if it did, the new bundle is fetched and served from that request on, with the same experts client
    and audit database. A new version that fails to load is logged and the current one kept (tried again at the
    next check).
    """

    def __init__(self, settings: CombinerSettings, client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock
        self._watch: CurrentWatch | None = None
        self._service: SignalService | None = None

    def __call__(self) -> SignalService:
        if self._service is None or self._watch is None:
            probe = current_probe(self._settings.model_bundle_uri, _objects(self._client))
            self._watch = CurrentWatch(probe, self._settings.model_check_seconds, self._clock)
            self._service = build_service(self._settings, self._client)
            return self._service
        token = self._watch.changed()
        if token is not None:
            old = self._service
            try:
                bundle = load_bundle(self._settings, self._client)
            except Exception:  # keep serving the loaded bundle rather than failing every request
                logger.exception("CURRENT changed but its bundle did not load; still serving %s", old.bundle.version)
                return old
            documents = old.documents or document_store(self._settings, self._client, bundle)
            self._service = SignalService(bundle, old.experts, old.audit, old.bars, deadline_s=old.deadline_s,
                                          books=old.books, documents=documents)
            self._watch.accept(token)
            logger.info("serving model %s (was %s)", bundle.version, old.bundle.version)
        return self._service
