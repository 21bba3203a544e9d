"""ObjectStore on Amazon S3 (boto3): raw payloads and files under an optional key prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class S3ObjectStore:
    """Objects in ``bucket`` under ``prefix`` (encrypted by the bucket's default encryption).

    Parameters
    ----------
    client
        A boto3 S3 client.
    bucket
        The bucket name.
    prefix
        Prepended to every key (``raw/`` -> ``s3://bucket/raw/...``); empty for the bucket root.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                raise KeyError(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def etag(self, key: str) -> str | None:
        """The object's ETag from a HEAD request (None when it does not exist): a cheap change check."""
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                return None
            raise
        return str(response["ETag"])

    def keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):]
