"""ExpertClient that asks some experts through other clients: the book-step Lambda's price experts in process and
its text expert (``news``) on the experts' SageMaker endpoint, whose encoder its image does not carry.

The experts asked are split by the client that answers them (``routes``: expert name -> client; any other expert:
``default``); the clients are asked at once, each about its own experts with the whole deadline, and the replies
come back in the order asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from signal_engine.serving.messages import ExpertQuery, ExpertReply

if TYPE_CHECKING:
    from signal_engine.ports import ExpertClient


class RoutedExperts:
    """``default`` answers every expert but those ``routes`` names, which their own client answers."""

    def __init__(self, default: ExpertClient, routes: Mapping[str, ExpertClient]) -> None:
        self._default = default
        self._routes = dict(routes)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(set(map(id, self._routes.values())))),
                                        thread_name_prefix="routed-experts")

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        groups: dict[int, tuple[ExpertClient, list[str]]] = {}
        for name in dict.fromkeys(experts):
            client = self._routes.get(name, self._default)
            groups.setdefault(id(client), (client, []))[1].append(name)
        asked = list(groups.values())
        elsewhere = [self._pool.submit(client.ask, query, names, deadline_s) for client, names in asked[1:]]
        replies: dict[str, ExpertReply] = {}
        if asked:
            replies.update(asked[0][0].ask(query, asked[0][1], deadline_s))
        for future in elsewhere:
            replies.update(future.result())
        return {name: replies.get(name) or ExpertReply(name, error="not answered") for name in dict.fromkeys(experts)}

    def models(self) -> Mapping[str, str]:
        models = dict(self._default.models())
        for name, client in self._routes.items():
            models[name] = client.models().get(name, "")
        return models

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in {id(c): c for c in (self._default, *self._routes.values())}.values():
            close = getattr(client, "close", None)
            if close is not None:
                close()
