"""The object store a location names: S3 for ``s3://BUCKET/PREFIX``, else a local folder.

Light on purpose (no pandas, no SQL): the combiner Lambda's package builds its batch-job store from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signal_engine.errors import ConfigError

if TYPE_CHECKING:
    from signal_engine.ports import ObjectStore


def object_store(location: str, aws_client: Callable[[str], Any] | None = None) -> ObjectStore:
    """An S3 store for ``s3://BUCKET/PREFIX`` (``aws_client(service)``; default ``boto3.client``), else a local
    folder."""
    if location.startswith("s3://"):
        from signal_engine.adapters.s3 import S3ObjectStore

        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not bucket:
            raise ConfigError(f"object store {location!r} names no bucket; expected s3://BUCKET/PREFIX")
        return S3ObjectStore((aws_client or _boto3_client)("s3"), bucket, prefix)
    from signal_engine.adapters.local_folder import LocalFolderStore

    return LocalFolderStore(location.removeprefix("file://"))


def _boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service)
