"""ExpertClient over SageMaker endpoints (boto3 ``sagemaker-runtime`` ``invoke_endpoint``), asked in parallel.

Each expert has its own endpoint (``EXPERT_ENDPOINTS``: name -> endpoint name). The request body is the
:class:`~signal_engine.serving.messages.ExpertQuery` payload as JSON, with ``expert`` naming the expert asked;
the endpoint answers the expert's outputs as a JSON object (``signal_engine.serving.experts.respond``). An
endpoint that errors, answers something other than a JSON object, or misses the deadline gives an error reply;
the combiner then degrades.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from signal_engine.serving.fanout import Fanout
from signal_engine.serving.messages import ExpertQuery, ExpertReply

CONTENT_TYPE = "application/json"


class SageMakerExperts:
    """The experts' SageMaker endpoints.

    Parameters
    ----------
    client : a boto3 ``sagemaker-runtime`` client (thread-safe; give it a read timeout near the deadline).
    endpoints : expert name -> endpoint name; a key ``expert/SYMBOL`` routes one symbol to its own endpoint.
        The request body carries the symbol, so one endpoint may hold every symbol's fit of an expert.
    """

    def __init__(self, client: Any, endpoints: Mapping[str, str], *, max_workers: int = 16) -> None:
        self._client = client
        self._endpoints = dict(endpoints)
        self._fanout = Fanout(max_workers)

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        payload = query.payload()

        def call(name: str) -> Mapping[str, Any]:
            body = json.dumps({**payload, "expert": name}, separators=(",", ":")).encode()
            endpoint = self._endpoints.get(f"{name}/{query.symbol}") or self._endpoints.get(name)
            if endpoint is None:
                raise LookupError(f"no endpoint for expert {name!r}; EXPERT_ENDPOINTS names "
                                  f"{sorted(self._endpoints)}")
            response = self._client.invoke_endpoint(EndpointName=endpoint, ContentType=CONTENT_TYPE,
                                                    Accept=CONTENT_TYPE, Body=body)
            raw = response["Body"].read()
            try:
                answer = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ValueError(f"endpoint {endpoint} answered {raw[:60]!r}, not JSON") from None
            if not isinstance(answer, dict):
                raise ValueError(f"endpoint {endpoint} answered a JSON {type(answer).__name__}; expected an object")
            return answer

        replies = self._fanout.ask(experts, call, deadline_s)
        return {name: ExpertReply(r.expert, r.answer, r.error, r.elapsed_ms,
                                  self._endpoints.get(f"{name}/{query.symbol}") or self._endpoints.get(name, ""),
                                  r.extra)
                for name, r in replies.items()}

    def models(self) -> Mapping[str, str]:
        return dict(self._endpoints)

    def close(self) -> None:
        self._fanout.close()
