"""The text expert in a trained bundle: the ``news:`` section of the training config and what it writes.

A training config (``signal-engine train --config FILE``, and the same JSON as the workflow's ``config``
hyperparameter that the evaluate job reads) may hold::

    news:
      enabled: true              # the bundle carries the text expert (default false: bundles as before)
      model: DIR                 # the text model folder to reuse (default: text-train's, $SIGNAL_ENGINE_TEXT_MODEL
                                 # or the user cache); trained there first when it holds none
      half_life_hours: 24        # the aggregate's decay (signal_engine.text.aggregate.NewsDecay)
      max_age_hours: 168
      prior_weight: 1.0
      max_documents: 50          # the most recent headlines the service sends per answer
      headlines: 3               # the headlines the answer names

The head is trained once on the labelled corpus (``text-train``, cached by its fingerprint) and reused by every
bundle, for every symbol: a headline's sentiment does not depend on the symbol. It travels as NumPy arrays
(``news/head.npz``) with the model's ``text.json``; ``bundle.json`` names it in its ``news`` section.

The MoE's news slot (``moe.news: true``) needs this section on: the served slot's input is the text expert's
aggregate of the stored headlines at the decision time, so a bundle with the slot carries the text expert. Each
bar's ``news_score`` (the gate's training rows, and the backtest's with ``--news-from-store``) comes from
:func:`slot_series`: **the price file's ``news_score`` column where the file has one** (the user's own scores win),
**else the document store's news** scored by the same text expert with the same decay and ``max_documents``
(:meth:`signal_engine.text.serving.NewsExpert.news_scores`, one call of
:func:`signal_engine.text.aggregate.news_per_bar`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signal_engine.errors import ConfigError

if TYPE_CHECKING:
    from signal_engine.data.loader import PriceSeries
    from signal_engine.ports import DocumentStore
    from signal_engine.serving.bundle import NewsSettings
    from signal_engine.text.aggregate import NewsDecay
    from signal_engine.text.model import TextModel
    from signal_engine.text.serving import NewsExpert

SECTION = "news"
# In the training workflow's prepared dataset (the prepare job's output): the text model whose scores of the stored
# news are the rows' news_score (moe.news); the evaluate job puts that head in the bundle, so the served slot scores
# headlines as the gate was trained on them.
DATASET_TEXT_FOLDER = "text"


@dataclass(frozen=True)
class NewsTraining:
    """The ``news:`` section (module docstring); ``model`` None: the text-train cache folder."""

    enabled: bool = False
    model: str | None = None
    half_life_hours: float = 24.0
    max_age_hours: float = 168.0
    prior_weight: float = 1.0
    max_documents: int = 50
    headlines: int = 3

    @classmethod
    def from_mapping(cls, section: Any, source: str) -> NewsTraining:
        """The section as read from ``source`` (a config file or the ``config`` hyperparameter); None or absent:
        the text expert is off."""
        if section is None:
            return cls()
        if isinstance(section, bool):
            return cls(enabled=section)
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: 'news' must be a mapping such as 'news: {{enabled: true}}', got {section!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"{source}: 'news' has unknown key(s) {unknown}; expected {sorted(known)}")
        values = dict(section)
        if not isinstance(values.get("enabled", False), bool):
            raise ConfigError(f"{source}: 'news.enabled' is {values['enabled']!r}; expected true or false")
        for name in ("half_life_hours", "max_age_hours", "prior_weight"):
            value = values.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value <= 0:
                raise ConfigError(f"{source}: 'news.{name}' is {value!r}; expected a positive number")
        for name in ("max_documents", "headlines"):
            value = values.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{source}: 'news.{name}' is {value!r}; expected a whole number >= 1")
        if values.get("model") is not None and not isinstance(values["model"], str):
            raise ConfigError(f"{source}: 'news.model' is {values['model']!r}; expected a folder")
        return cls(**values)

    @property
    def decay(self) -> NewsDecay:
        """The aggregate's decay (:class:`signal_engine.text.aggregate.NewsDecay`) of these settings."""
        from signal_engine.text.aggregate import NewsDecay

        return NewsDecay(half_life=timedelta(hours=self.half_life_hours), max_age=timedelta(hours=self.max_age_hours),
                         prior_weight=self.prior_weight)


def news_section(overrides: Mapping[str, Any] | None, source: str) -> NewsTraining:
    """The ``news`` section of ``--config`` sections (or the ``config`` hyperparameter)."""
    return NewsTraining.from_mapping((overrides or {}).get(SECTION), source)


def add_news(bundle_folder: Path, news: NewsTraining, *, model_folder: Path | None = None,
             on_training: Callable[[Path], None] | None = None) -> NewsSettings:
    """Write the text expert into ``bundle_folder/news/`` and return the bundle's ``news`` section.

    The text model is the one cached in ``model_folder`` (default: ``news.model``, else text-train's folder);
    when it holds none, the head is trained there first on the shipped corpus (``on_training(folder)`` is called
    before), without the lexicon baselines (their packages are not needed to serve).
    """
    from signal_engine.serving.bundle import NEWS_EXPERT, NEWS_FOLDER, NewsSettings
    from signal_engine.text.encoder import MODEL_ID
    from signal_engine.text.serving import save_news_model

    model = text_model(news, model_folder=model_folder, on_training=on_training)
    digest = save_news_model(model, bundle_folder / NEWS_FOLDER)
    return NewsSettings(head_sha256=digest, encoder=MODEL_ID, half_life_hours=float(news.half_life_hours),
                        max_age_hours=float(news.max_age_hours), prior_weight=float(news.prior_weight),
                        max_documents=news.max_documents, headlines=news.headlines, expert=NEWS_EXPERT,
                        folder=NEWS_FOLDER)


def text_model(news: NewsTraining, *, model_folder: Path | None = None,
               on_training: Callable[[Path], None] | None = None) -> TextModel:
    """The text model of ``news`` (``model_folder``, else ``news.model``, else text-train's folder), trained there
    first on the shipped corpus when the folder holds none (``on_training(folder)`` is called before)."""
    from signal_engine.text.model import METADATA, default_model_folder, load_text_model, save_text_model

    folder = model_folder or (Path(news.model) if news.model else default_model_folder())
    if (folder / METADATA).is_file():
        return load_text_model(folder)
    from signal_engine.text.model import train_text_model

    if on_training is not None:
        on_training(folder)
    model = train_text_model(baselines=False)
    save_text_model(model, folder)
    return model


def news_expert(news: NewsTraining, *, model_folder: Path | None = None,
                on_training: Callable[[Path], None] | None = None) -> NewsExpert:
    """The text expert a bundle trained with ``news`` serves (:func:`add_news` writes its head), ready to score."""
    from signal_engine.text.serving import NewsExpert

    return NewsExpert.from_model(text_model(news, model_folder=model_folder, on_training=on_training), news.decay)


def slot_series(series: Sequence[PriceSeries], documents: DocumentStore | None, expert: NewsExpert | None,
                max_documents: int) -> tuple[list[PriceSeries], dict[str, str]]:
    """Each series with the news slot's ``news_score`` column, and where each came from (``{symbol: "file" |
    "store"}``): the price file's column where it has one, else the store's news scored by ``expert`` at each bar's
    close (point in time). A series without the column needs ``documents`` and ``expert`` (ValueError otherwise)."""
    import pandas as pd

    from signal_engine.config import NEWS_COLUMN
    from signal_engine.workflow.training import timeframe_of

    out: list[PriceSeries] = []
    sources: dict[str, str] = {}
    for s in series:
        if NEWS_COLUMN in s.bars.columns:
            out.append(s)
            sources[s.symbol] = "file"
            continue
        if documents is None or expert is None:
            raise ValueError(f"{s.symbol}: no '{NEWS_COLUMN}' column and no document store to read its news from")
        scores = expert.news_scores(documents, s.symbol, pd.DatetimeIndex(s.bars.index), timeframe_of(s),
                                    max_documents)
        out.append(replace(s, bars=s.bars.assign(**{NEWS_COLUMN: scores[NEWS_COLUMN].to_numpy()})))
        sources[s.symbol] = "store"
    return out, sources


def with_news_scores(series: Sequence[PriceSeries], news: NewsTraining, documents: DocumentStore | None, *,
                     model_folder: Path | None = None, on_training: Callable[[Path], None] | None = None,
                     say: Callable[[str], None] = print) -> list[PriceSeries]:
    """The series with the news slot's ``news_score`` (:func:`slot_series`: the price file's column, else the
    ``documents``' news scored by the text expert of ``news``, :func:`news_expert`), one :func:`slot_report` line
    each to ``say``. A :class:`ConfigError` names the series without the column when there are no ``documents``."""
    from signal_engine.config import NEWS_COLUMN

    lacking = [s.symbol for s in series if NEWS_COLUMN not in s.bars.columns]
    if lacking and documents is None:
        raise ConfigError(f"moe.news: {', '.join(lacking)} have no '{NEWS_COLUMN}' column and this run has no "
                          "document store to read their news from")
    expert = news_expert(news, model_folder=model_folder, on_training=on_training) if lacking else None
    scored, sources = slot_series(series, documents, expert, news.max_documents)
    for line in slot_report(scored, sources):
        say(f"news slot: {line}")
    return scored


def slot_report(scored: Sequence[PriceSeries], sources: Mapping[str, str]) -> list[str]:
    """One line per series of :func:`slot_series`: where its ``news_score`` came from and how many bars have news."""
    import numpy as np

    from signal_engine.config import NEWS_COLUMN

    lines = []
    for s in scored:
        counted = int(np.isfinite(s.bars[NEWS_COLUMN].to_numpy(dtype=float)).sum())
        where = ("the price file's column" if sources[s.symbol] == "file"
                 else "the stored news, scored by the text expert")
        lines.append(f"{s.symbol}: news_score from {where} ({counted} of {len(s)} bars with news)")
    return lines
