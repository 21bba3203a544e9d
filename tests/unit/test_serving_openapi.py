"""docs/openapi.json is the document the code generates (regenerate: python -m signal_engine.serving.openapi)."""

from __future__ import annotations

import json
from pathlib import Path

from signal_engine.serving.openapi import document

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_docs_openapi_json_is_not_stale() -> None:
    assert DOC.read_text(encoding="utf-8") == document(), (
        "docs/openapi.json is stale: run `.venv/bin/python -m signal_engine.serving.openapi > docs/openapi.json`")


def test_document_describes_the_signal_api() -> None:
    doc = json.loads(document())
    assert set(doc["paths"]) == {"/signals", "/signals/batch", "/signals/batch/jobs", "/signals/batch/jobs/{job_id}",
                                 "/book", "/models", "/health"}
    request = doc["components"]["schemas"]["SignalRequest"]
    assert request["required"] == ["symbol"]
    assert request["properties"]["symbol"]["pattern"]
    response = doc["components"]["schemas"]["SignalResponse"]
    assert {"symbol", "as_of", "signal", "score", "confidence", "position", "experts", "gate", "risk",
            "model_version", "degraded"} <= set(response["properties"])
    # both answers, marked: the live book's (with the book and the MoE beside it) and the unmanaged MoE's
    assert response["properties"]["source"]["enum"] == ["book", "unmanaged"] and "source" in response["required"]
    assert {"book", "moe", "moe_unavailable"} <= set(response["properties"])
    book = doc["paths"]["/book"]["get"]
    assert book["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BookResponse"}
    assert [p["name"] for p in book["parameters"]] == ["name", "recent_bars"]
    assert doc["paths"]["/signals"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"}


def test_document_names_the_deployed_apis_sigv4_and_the_local_bearer_token() -> None:
    doc = json.loads(document())
    schemes = doc["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4" and schemes["sigv4"]["in"] == "header"
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"sigv4": []}, {"bearer": []}]
