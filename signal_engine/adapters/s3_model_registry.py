"""ModelRegistry on Amazon S3: ``s3://bucket/<prefix>/<version>/...`` and ``<prefix>/CURRENT``.

S3 has no rename: every file of a bundle is uploaded first and ``bundle.json`` last, so a version counts as
published (and may be promoted) only once its ``bundle.json`` exists. ``CURRENT`` is one object, replaced
in a single PUT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from signal_engine.adapters.model_registry import BUNDLE_FILE, CURRENT, check_version
from signal_engine.errors import ConfigError

NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class S3ModelRegistry:
    """Bundles under ``prefix`` in ``bucket`` (``client`` is a boto3 S3 client)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "models") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_uri(cls, client: Any, uri: str) -> S3ModelRegistry:
        """From ``s3://bucket/prefix``."""
        if not uri.startswith("s3://"):
            raise ConfigError(f"registry '{uri}' is not an S3 URI; expected s3://bucket/prefix")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        return cls(client, bucket, prefix)

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                return False
            raise
        return True

    def publish(self, folder: Path, version: str) -> str:
        root = Path(folder)
        base = f"{self.prefix}{check_version(version)}/"
        if not (root / BUNDLE_FILE).is_file():
            raise ConfigError(f"{root}: no {BUNDLE_FILE}; only a complete bundle folder can be published")
        if self._exists(base + BUNDLE_FILE):
            raise ConfigError(f"s3://{self.bucket}/{base}: version {version} is already published; versions are "
                              "never overwritten")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != BUNDLE_FILE)
        for path in [*files, root / BUNDLE_FILE]:
            key = base + path.relative_to(root).as_posix()
            self._client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
        return f"s3://{self.bucket}/{base}"

    def promote(self, version: str) -> None:
        key = f"{self.prefix}{check_version(version)}/{BUNDLE_FILE}"
        if not self._exists(key):
            raise ConfigError(f"s3://{self.bucket}/{key} is missing; publish version {version} before promoting it")
        self._client.put_object(Bucket=self.bucket, Key=self.prefix + CURRENT, Body=(version + "\n").encode())

    def current(self) -> str | None:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.prefix + CURRENT)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                return None
            raise
        return body.decode("utf-8").strip() or None

    def versions(self) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                rest = item["Key"][len(self.prefix):]
                if rest.count("/") == 1 and rest.endswith("/" + BUNDLE_FILE):
                    found.append(rest.split("/")[0])
        return sorted(found)
