"""bootstrap: settings from the environment, secrets from Secrets Manager (moto server), embedded defaults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

from signal_engine.adapters.aws_secrets import documentdb_url, mysql_url
from signal_engine.adapters.local_folder import LocalFolderStore
from signal_engine.adapters.sql.migrations import LATEST_VERSION
from signal_engine.bootstrap import DEFAULT_DATABASE_URL, Settings, bootstrap
from signal_engine.errors import ConfigError
from tests.fixtures.servers import FAKE_AWS_ENVIRONMENT, moto_server, mysql_url_or_skip


@pytest.fixture(scope="module")
def secrets() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch, moto_server() as url:
        for name, value in FAKE_AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL", url)
        yield boto3.client("secretsmanager")


def test_settings_come_from_the_environment_with_overrides() -> None:
    env = {"SIGNAL_ENGINE_DATABASE_URL": "mysql+pymysql://u:p@db:3306/x", "SIGNAL_ENGINE_HTTP_TIMEOUT": "4.5",
           "SIGNAL_ENGINE_OBJECT_STORE": "s3://bucket/raw"}
    settings = Settings.from_env(env, object_store="/tmp/o", database_url=None)
    assert (settings.database_url, settings.http_timeout, settings.object_store) == (
        "mysql+pymysql://u:p@db:3306/x", 4.5, "/tmp/o")
    assert Settings.from_env({}).database_url == DEFAULT_DATABASE_URL


def test_a_bad_timeout_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="SIGNAL_ENGINE_HTTP_TIMEOUT='soon'"):
        Settings.from_env({"SIGNAL_ENGINE_HTTP_TIMEOUT": "soon"})


def test_an_unsupported_database_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"postgresql://.*is not supported; expected sqlite"):
        bootstrap(Settings(database_url="postgresql://u@h/db", object_store=str(tmp_path)))


def test_the_embedded_default_is_sqlite_and_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = bootstrap(Settings.from_env({}))
    assert isinstance(storage.objects, LocalFolderStore) and storage.schema_version == LATEST_VERSION
    assert (tmp_path / "out" / "store" / "signal_engine.db").is_file()


def test_urls_are_built_from_rds_and_documentdb_secrets(secrets: Any) -> None:
    secrets.create_secret(Name="rds", SecretString=json.dumps(
        {"username": "app", "password": "p@ss/word", "host": "db.internal", "port": 3306, "dbname": "signal_engine"}))
    secrets.create_secret(Name="docdb", SecretString=json.dumps(
        {"username": "app", "password": "s3cret", "host": "docdb.internal", "port": 27017}))
    assert mysql_url(secrets, "rds", "x") == "mysql+pymysql://app:p%40ss%2Fword@db.internal:3306/signal_engine"
    assert documentdb_url(secrets, "docdb").startswith("mongodb://app:s3cret@docdb.internal:27017/?tls=true")
    assert "retryWrites=false" in documentdb_url(secrets, "docdb")


def test_a_secret_without_a_host_is_refused(secrets: Any) -> None:
    secrets.create_secret(Name="partial", SecretString=json.dumps({"username": "app", "password": "x"}))
    with pytest.raises(ValueError, match="secret partial: missing host"):
        mysql_url(secrets, "partial", "x")


def test_bootstrap_connects_to_mariadb_through_a_secret(secrets: Any, tmp_path: Path) -> None:
    url = mysql_url_or_skip()
    parts = sa.make_url(url)
    secrets.create_secret(Name="test-mariadb", SecretString=json.dumps(
        {"username": parts.username, "password": parts.password, "host": parts.host, "port": parts.port,
         "dbname": parts.database}))
    storage = bootstrap(Settings(database_secret="test-mariadb", object_store=str(tmp_path)),
                        aws_client=lambda service: boto3.client(service))
    assert storage.schema_version == LATEST_VERSION
    storage.close()
