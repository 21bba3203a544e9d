"""Database URLs from Secrets Manager secrets in the RDS/DocumentDB layout (username, password, host, port, dbname)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

MYSQL_PORT = 3306
DOCUMENTDB_PORT = 27017


def _secret(client: Any, secret_id: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    missing = [name for name in ("username", "password", "host") if name not in value]
    if missing:
        raise ValueError(f"secret {secret_id}: missing {', '.join(missing)}; expected an RDS/DocumentDB secret")
    return value


def mysql_url(client: Any, secret_id: str, database: str) -> str:
    """A ``mysql+pymysql://`` URL for the RDS secret ``secret_id``."""
    s = _secret(client, secret_id)
    return (f"mysql+pymysql://{quote_plus(s['username'])}:{quote_plus(s['password'])}@{s['host']}:"
            f"{s.get('port', MYSQL_PORT)}/{s.get('dbname', database)}")


def documentdb_url(client: Any, secret_id: str) -> str:
    """A ``mongodb://`` URL (TLS, no retryable writes) for the DocumentDB secret ``secret_id``."""
    s = _secret(client, secret_id)
    return (f"mongodb://{quote_plus(s['username'])}:{quote_plus(s['password'])}@{s['host']}:"
            f"{s.get('port', DOCUMENTDB_PORT)}/?tls=true&replicaSet=rs0&readPreference=secondaryPreferred"
            "&retryWrites=false")


def documentdb_client_url(url: str, ca_file: str, *, require_verified_tls: bool) -> str:
    """``url`` with the CA bundle that verifies DocumentDB's TLS (``tlsCAFile``); where TLS must be verified (AWS
    Lambda) a URL without a CA bundle is refused, never used unverified."""
    from signal_engine.errors import ConfigError

    if url and ca_file:
        return url + ("&" if "?" in url else "/?") + f"tlsCAFile={ca_file}"
    if url and require_verified_tls:
        raise ConfigError(
            "DocumentDB needs verified TLS here but no CA bundle is set: set SIGNAL_ENGINE_DOCUMENT_CA_FILE to the "
            "Amazon RDS CA bundle (the Lambda packages carry it when built with `make package-lambdas "
            "RDS_CA_BUNDLE=global-bundle.pem`)")
    return url
