"""MySQL and DocumentDB over verified TLS: the connect arguments as PyMySQL turns them into an SSL context, and the
clear errors when a CA bundle is missing where verified TLS is required (in AWS Lambda)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import certifi
import pymysql
import pytest
import sqlalchemy as sa

from signal_engine.adapters.sql.engine import create_store_engine
from signal_engine.bootstrap import Settings, bootstrap
from signal_engine.errors import ConfigError

# A real PEM bundle of CA certificates stands in for the Amazon RDS bundle (both are plain PEM files).
CA_FILE = certifi.where()
URL = "mysql+pymysql://app:secret@db.example.internal:3306/signal_engine"


class Captured(Exception):
    """Raised from the engine's do_connect hook, so nothing dials the (absent) server."""


def connect_params(engine: sa.Engine) -> dict[str, Any]:
    """The keyword arguments the engine hands to pymysql.connect for a new connection."""
    seen: dict[str, Any] = {}

    @sa.event.listens_for(engine, "do_connect")
    def capture(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.update(cparams)
        raise Captured

    with pytest.raises(Captured):
        engine.connect()
    return seen


def pymysql_connection(params: dict[str, Any]) -> pymysql.connections.Connection:
    """The connection PyMySQL builds from those arguments, with its SSL context (defer_connect: no socket)."""
    return pymysql.connections.Connection(**params, defer_connect=True)


def test_a_ca_file_makes_pymysql_verify_the_certificate_and_the_host_name() -> None:
    connection = pymysql_connection(connect_params(create_store_engine(URL, ca_file=CA_FILE)))
    assert connection._ssl_required  # no fallback to plain text
    context = connection.ctx
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] > 0  # the bundle's CAs are the trust store


def test_without_a_ca_file_locally_pymysql_keeps_its_opportunistic_default() -> None:
    params = connect_params(create_store_engine(URL))
    assert not {"ssl", "ssl_ca", "ssl_verify_cert", "ssl_verify_identity"} & set(params)
    connection = pymysql_connection(params)
    # PyMySQL's "preferred" mode: TLS if the server offers it, any certificate accepted (what a local MariaDB needs).
    assert not connection._ssl_required
    assert not connection.ssl or connection.ctx.verify_mode == ssl.CERT_NONE


def test_verified_tls_required_without_a_ca_file_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"SIGNAL_ENGINE_DATABASE_CA_FILE.*RDS_CA_BUNDLE"):
        create_store_engine(URL, require_verified_tls=True)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SIGNAL_ENGINE_DATABASE_CA_FILE .*absent\.pem.* does not exist"):
        create_store_engine(URL, ca_file=str(tmp_path / "absent.pem"))


def test_sqlite_is_unaffected_by_the_tls_settings(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path}/s.db", require_verified_tls=True)
    with engine.connect() as connection:
        assert connection.execute(sa.text("select 1")).scalar() == 1


def test_settings_require_verified_tls_inside_lambda_only() -> None:
    assert Settings.from_env({}).require_verified_tls is False
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "collector", "SIGNAL_ENGINE_DATABASE_CA_FILE": CA_FILE}
    settings = Settings.from_env(lambda_env)
    assert settings.require_verified_tls is True
    assert settings.database_ca_file == CA_FILE


def test_bootstrap_in_lambda_refuses_mysql_without_a_ca_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "collector", "SIGNAL_ENGINE_DATABASE_URL": URL,
                                  "SIGNAL_ENGINE_OBJECT_STORE": str(tmp_path)})
    with pytest.raises(ConfigError, match="SIGNAL_ENGINE_DATABASE_CA_FILE"):
        bootstrap(settings)


def test_bootstrap_in_lambda_refuses_documentdb_without_a_ca_file(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "AWS_LAMBDA_FUNCTION_NAME": "collector", "SIGNAL_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path}/s.db",
        "SIGNAL_ENGINE_DOCUMENT_URL": "mongodb://app:secret@docdb.example.internal:27017/?tls=true",
        "SIGNAL_ENGINE_OBJECT_STORE": str(tmp_path),
    })
    with pytest.raises(ConfigError, match="SIGNAL_ENGINE_DOCUMENT_CA_FILE"):
        bootstrap(settings)


def test_the_combiner_in_lambda_needs_the_ca_file_for_its_audit_database() -> None:
    from lambda_src.combiner.settings import CombinerSettings

    env = {"MODEL_BUNDLE_URI": "s3://b/models/", "SIGNAL_ENGINE_DATABASE_SECRET": "arn:secret",
           "AWS_LAMBDA_FUNCTION_NAME": "combiner"}
    with pytest.raises(ConfigError, match=r"SIGNAL_ENGINE_DATABASE_CA_FILE.*RDS_CA_BUNDLE"):
        CombinerSettings.from_env(env)
    settings = CombinerSettings.from_env({**env, "SIGNAL_ENGINE_DATABASE_CA_FILE": CA_FILE})
    assert settings.require_verified_tls and settings.database_ca_file == CA_FILE
    assert CombinerSettings.from_env({k: v for k, v in env.items() if k != "AWS_LAMBDA_FUNCTION_NAME"}) \
        .require_verified_tls is False
