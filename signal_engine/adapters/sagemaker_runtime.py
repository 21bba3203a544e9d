"""ExpertClient over SageMaker endpoints (boto3 ``sagemaker-runtime`` ``invoke_endpoint``), asked in parallel.

``EXPERT_ENDPOINTS`` routes each expert to an endpoint (name -> endpoint name; ``name/SYMBOL`` routes one
symbol's expert to an endpoint of its own). The experts asked are grouped by the endpoint they route to, and each
endpoint gets ONE request per query naming its experts: the :class:`~signal_engine.serving.messages.ExpertQuery`
payload as JSON with ``"experts": [...]``. The endpoint (``sagemaker_jobs/serve.py``) computes the bars' features
once and answers ``{"symbol", "model_version", "as_of", "answers": {expert: outputs, ...}}``; each expert's
outputs become its reply. An endpoint that errors, answers something other than a JSON object with an
``answers`` object, or misses the deadline gives each of its experts the same error reply; an expert the answer
leaves out, or answers with something other than an object, gets an error reply naming it. The combiner then
degrades.

The document experts of a query (``ExpertQuery.document_experts``: the text expert, ``news``) are asked in a
request of their own, even on the same endpoint: ``{"symbol", "timeframe", "decision_time", "documents",
"experts": [...]}`` without the bars. It runs beside the bars' request (the server answers requests on threads), so
encoding the headlines never delays the experts the signal is combined from, and its failure fails only itself.
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
        The request body carries the symbol, so one endpoint may hold every symbol's fit of an expert, and the
        experts routed to one endpoint are asked in one request.
    """

    def __init__(self, client: Any, endpoints: Mapping[str, str], *, max_workers: int = 16) -> None:
        self._client = client
        self._endpoints = dict(endpoints)
        self._fanout = Fanout(max_workers)

    def endpoint(self, expert: str, symbol: str) -> str | None:
        """The endpoint that answers ``expert`` for ``symbol`` (its own ``expert/SYMBOL``, else ``expert``)."""
        return self._endpoints.get(f"{expert}/{symbol}") or self._endpoints.get(expert)

    def groups(self, symbol: str, experts: Sequence[str],
               document_experts: Sequence[str] = ()) -> tuple[dict[str, tuple[str, list[str]]], list[str]]:
        """The experts asked for ``symbol`` grouped into requests (key -> endpoint and its experts, in the order
        asked; the ``document_experts`` of an endpoint in a request of their own), and those with no endpoint."""
        groups: dict[str, tuple[str, list[str]]] = {}
        unrouted: list[str] = []
        for name in dict.fromkeys(experts):
            endpoint = self.endpoint(name, symbol)
            if endpoint is None:
                unrouted.append(name)
                continue
            key = f"{endpoint} documents" if name in document_experts else endpoint
            groups.setdefault(key, (endpoint, []))[1].append(name)
        return groups, unrouted

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        groups, unrouted = self.groups(query.symbol, experts, query.document_experts)
        bars_payload = query.payload()

        def call(key: str) -> Mapping[str, Any]:
            endpoint, names = groups[key]
            payload = query.documents_payload() if names[0] in query.document_experts else bars_payload
            body = json.dumps({**payload, "experts": names}, separators=(",", ":")).encode()
            response = self._client.invoke_endpoint(EndpointName=endpoint, ContentType=CONTENT_TYPE,
                                                    Accept=CONTENT_TYPE, Body=body)
            return _answers(endpoint, response["Body"].read())

        replies = self._fanout.ask(list(groups), call, deadline_s)
        split: dict[str, ExpertReply] = {}
        for key, (endpoint, names) in groups.items():
            for name in names:
                split[name] = _expert_reply(name, endpoint, replies[key])
        for name in unrouted:
            split[name] = ExpertReply(name, error=f"LookupError: no endpoint for expert {name!r}; EXPERT_ENDPOINTS "
                                                  f"names {sorted(self._endpoints)}")
        return {name: split[name] for name in dict.fromkeys(experts)}

    def models(self) -> Mapping[str, str]:
        return dict(self._endpoints)

    def close(self) -> None:
        self._fanout.close()


def _answers(endpoint: str, raw: bytes) -> Mapping[str, Any]:
    """The ``answers`` object of an endpoint's grouped answer (expert -> outputs, not yet checked per expert)."""
    try:
        answer = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"endpoint {endpoint} answered {raw[:60]!r}, not JSON") from None
    if not isinstance(answer, dict):
        raise ValueError(f"endpoint {endpoint} answered a JSON {type(answer).__name__}; expected an object")
    answers = answer.get("answers")
    if not isinstance(answers, dict):
        raise ValueError(f"endpoint {endpoint} answered an object without an \"answers\" object (its keys: "
                         f"{sorted(answer)[:8]}); expected {{\"answers\": {{expert: outputs, ...}}}}")
    return answers


def _expert_reply(name: str, endpoint: str, group: ExpertReply) -> ExpertReply:
    """Expert ``name``'s reply out of its endpoint's reply ``group`` (whose answer maps expert -> outputs)."""
    if group.answer is None:
        return ExpertReply(name, None, group.error, group.elapsed_ms, endpoint, group.extra)
    outputs = group.answer.get(name)
    if name not in group.answer:
        error = (f"LookupError: endpoint {endpoint} answered no outputs for expert {name!r} (its answers name "
                 f"{sorted(group.answer)})")
    elif not isinstance(outputs, dict):
        error = (f"ValueError: endpoint {endpoint} answered {_json_kind(outputs)} for expert {name!r}; "
                 "expected an object")
    else:
        return ExpertReply(name, outputs, None, group.elapsed_ms, endpoint, group.extra)
    return ExpertReply(name, None, error, group.elapsed_ms, endpoint, group.extra)


def _json_kind(value: Any) -> str:
    return "null" if value is None else f"a JSON {type(value).__name__}"
