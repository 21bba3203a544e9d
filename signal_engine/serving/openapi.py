"""Print the Signal API's OpenAPI document: ``python -m signal_engine.serving.openapi > docs/openapi.json``.

The document is generated from the routes and pydantic models of :mod:`signal_engine.serving.api`;
``tests/unit/test_serving_openapi.py`` fails when ``docs/openapi.json`` is stale.
"""

from __future__ import annotations

import sys

from signal_engine.serving.api import build_app, openapi_json
from signal_engine.serving.service import SignalService


def document() -> str:
    """The OpenAPI document as text (sorted keys, two-space indent, trailing newline)."""

    def no_service() -> SignalService:
        raise RuntimeError("the OpenAPI document needs no service")

    return openapi_json(build_app(no_service))


def main() -> int:
    sys.stdout.write(document())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
