"""The S3 model registry against moto in server mode: bundle.json last, CURRENT one PUT, never overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from signal_engine.adapters.s3_model_registry import S3ModelRegistry
from signal_engine.errors import ConfigError
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server

VERSION = "20261123T150102Z-3f9a1c2e"


def test_publish_promote_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_AWS_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    bundle = tmp_path / "bundle"
    (bundle / "experts" / "experts" / "trend" / "SPX").mkdir(parents=True)
    (bundle / "experts" / "manifest.json").write_text("{}")
    (bundle / "experts" / "experts" / "trend" / "SPX" / "model.pkl").write_bytes(b"\x80\x05N.")
    (bundle / "bundle.json").write_text(json.dumps({"version": VERSION}))
    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="artifacts")
        registry = S3ModelRegistry.from_uri(client, "s3://artifacts/models")
        assert registry.current() is None and registry.versions() == []
        assert registry.publish(bundle, VERSION) == f"s3://artifacts/models/{VERSION}/"
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="artifacts")["Contents"]]
        assert sorted(keys) == sorted(f"models/{VERSION}/{k}" for k in (
            "bundle.json", "experts/manifest.json", "experts/experts/trend/SPX/model.pkl"))
        assert registry.versions() == [VERSION] and registry.current() is None
        registry.promote(VERSION)
        assert registry.current() == VERSION
        with pytest.raises(ConfigError, match="already published"):
            registry.publish(bundle, VERSION)
        with pytest.raises(ConfigError, match="publish version 20261124T000000Z-00000000 before promoting"):
            registry.promote("20261124T000000Z-00000000")
    with pytest.raises(ConfigError, match="not an S3 URI"):
        S3ModelRegistry.from_uri(None, "/tmp/models")
