"""Schemathesis hooks for the Signal API: positive cases obey the rules the document can state only in prose.

JSON Schema cannot say that a bar's ``high`` is at least its ``low`` or that a request's bars have strictly
increasing timestamps (docs/openapi.json says both in descriptions; the server answers 422 otherwise). Schemathesis
generates positive bodies from the schema alone, so this hook repairs those two rules in positive cases only (swap
high/low, sort the bars by UTC time and drop repeats); negative cases go out as generated. Every other rejection of
a positive case still fails ``positive_data_acceptance``. Two more rules belong to the model deployed, not to the
document (GET /models tells them): a served symbol needs at least ``min_bars`` bars and its own timeframe, so a
positive case naming the served symbol (GOOG, the bundle of tests/serving_support.py) drops ``bars`` and
``timeframe`` and the server reads its store (the test server's store holds a live book with GOOG, so those
cases get the book's answer, or a 404 for an ``as_of`` before the book's first bar). Used by
tests/integration/test_serve_http.py and, for the CLI,
``SCHEMATHESIS_HOOKS=tests.integration.schemathesis_hooks schemathesis run ...``.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from pydantic import TypeAdapter, ValidationError

from signal_engine.serving.schema import Time, utc_naive

_TIME: TypeAdapter[Any] = TypeAdapter(Time)


def _repair_bars(bars: list[Any]) -> list[Any]:
    dated: list[tuple[Any, dict[str, Any]]] = []
    for bar in bars:
        if not isinstance(bar, dict):
            return bars
        high, low = bar.get("high"), bar.get("low")
        if isinstance(high, int | float) and isinstance(low, int | float) and high < low:
            bar = {**bar, "high": low, "low": high}
        try:
            dated.append((utc_naive(_TIME.validate_python(bar.get("timestamp"))), bar))
        except ValidationError:
            return bars  # a timestamp the server itself refuses: leave it for the check to judge
    dated.sort(key=lambda pair: pair[0])
    kept = [pair for i, pair in enumerate(dated) if i == 0 or pair[0] != dated[i - 1][0]]
    return [bar for _, bar in kept]


SERVED = "GOOG"


def _repair_request(request: Any) -> Any:
    if isinstance(request, dict) and str(request.get("symbol", "")).upper() == SERVED:
        return {k: v for k, v in request.items() if k not in ("bars", "timeframe")}
    if isinstance(request, dict) and isinstance(request.get("bars"), list):
        return {**request, "bars": _repair_bars(request["bars"])}
    return request


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if case.path == "/signals":
        case.body = _repair_request(case.body)
    elif case.path in ("/signals/batch", "/signals/batch/jobs"):
        requests = case.body.get("requests")
        if isinstance(requests, list):
            case.body = {**case.body, "requests": [_repair_request(r) for r in requests]}
    return case
