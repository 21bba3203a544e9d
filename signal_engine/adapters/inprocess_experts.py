"""ExpertClient that runs the bundle's fitted experts in this process (the local server and tests).

Loads ``<bundle>/experts`` with :mod:`signal_engine.registry` (pickles: only load bundles you trained) and
answers with :func:`signal_engine.serving.experts.respond`, exactly what an expert endpoint runs. The experts
are asked in parallel with the same deadline handling as the SageMaker client. With ``news`` (the bundle's text
expert, :class:`signal_engine.text.serving.NewsExpert`), the expert of that name answers the query's documents at
its decision time, as the endpoint does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.registry import MANIFEST, load_experts
from signal_engine.serving.experts import PreparedRequest, for_symbol
from signal_engine.serving.fanout import Fanout
from signal_engine.serving.messages import ExpertQuery, ExpertReply

if TYPE_CHECKING:
    from signal_engine.serving.bundle import ServingBundle
    from signal_engine.text.serving import NewsExpert


class InProcessExperts:
    """The fitted experts of an artefact folder, answering in-process.

    Parameters
    ----------
    folder : the bundle's ``experts/`` artefact folder (``manifest.json`` + ``experts/<name>/model.pkl``).
    names : experts to load (default: all in the manifest).
    news : the bundle's text expert and its name (``NewsExpert.load(bundle folder, bundle.news)``, ``"news"``).
    """

    def __init__(self, folder: str | Path, names: Sequence[str] | None = None, *, max_workers: int = 8,
                 news: tuple[str, NewsExpert] | None = None) -> None:
        root = Path(folder)
        self._experts = load_experts(root, names)
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))["experts"]
        self._kinds = {name: manifest[name].get("kind") or name.split("/")[0] for name in self._experts}
        self._models = {name: f"{root.parent.name}/{root.name}/{manifest[name]['file']}" for name in self._experts}
        self._news = news
        self._news_model = f"{root.parent.name}/news/head.npz" if news is not None else ""
        self._fanout = Fanout(max_workers)

    def ask(self, query: ExpertQuery, experts: Sequence[str], deadline_s: float) -> Mapping[str, ExpertReply]:
        try:  # the bars and their features once, for every expert (an endpoint reads its own request)
            prepared: PreparedRequest | Exception = PreparedRequest.of(query.payload())
        except ValueError as exc:
            prepared = exc

        def call(name: str) -> Mapping[str, Any]:
            if self._news is not None and name == self._news[0]:
                return self._news[1].answer(list(query.documents), query.decision_time)
            key = self.artefact_name(name, query.symbol)
            if key is None:
                raise LookupError(f"expert {name!r} for {query.symbol} is not in this bundle's artefact; it has "
                                  f"{sorted(self._experts)}")
            if isinstance(prepared, Exception):
                raise prepared
            return prepared.answer(self._kinds[key], for_symbol(self._experts[key], query.symbol))

        replies = self._fanout.ask(experts, call, deadline_s)
        return {name: _with_model(reply, self._model_of(name, query.symbol)) for name, reply in replies.items()}

    def _model_of(self, expert: str, symbol: str) -> str:
        if self._news is not None and expert == self._news[0]:
            return self._news_model
        return self._models.get(self.artefact_name(expert, symbol) or "", "")

    def artefact_name(self, expert: str, symbol: str) -> str | None:
        """The artefact entry answering ``expert`` for ``symbol``: ``expert/SYMBOL`` (a per-symbol fit), else
        ``expert``."""
        for key in (f"{expert}/{symbol}", expert):
            if key in self._experts:
                return key
        return None

    def models(self) -> Mapping[str, str]:
        """Per expert (``trend``), the model file(s) answering it; per-symbol fits are listed together."""
        grouped: dict[str, list[str]] = {}
        for key, model in self._models.items():
            grouped.setdefault(key.split("/")[0], []).append(model)
        if self._news is not None:
            grouped[self._news[0]] = [self._news_model]
        return {expert: ", ".join(models) if len(models) > 1 else models[0] for expert, models in grouped.items()}

    def close(self) -> None:
        self._fanout.close()


def bundle_news_expert(folder: Path, bundle: ServingBundle) -> tuple[str, NewsExpert] | None:
    """The text expert of the bundle at ``folder``, loaded to run in-process, with its name (None when the bundle
    has none): the ``news`` argument of :class:`InProcessExperts`."""
    if bundle.news is None:
        return None
    from signal_engine.text.serving import NewsExpert

    return bundle.news.expert, NewsExpert.load(folder, bundle.news)


def _with_model(reply: ExpertReply, model: str) -> ExpertReply:
    return ExpertReply(reply.expert, reply.answer, reply.error, reply.elapsed_ms, model, reply.extra)
