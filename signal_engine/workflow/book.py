"""Training the whole book into a version folder: every timeframe model's bundle and ``book.json``.

The books are the backtest's (``evaluation.portfolio.build_books``): the symbols of one bar frequency, the
orchestration config for their periods per year (with the run's overrides: short limits, timeframes), the
per-symbol costs, and one model per timeframe. A model whose horizon is the MoE's own is the version's bundle
(``"."``); every other one is trained like the MoE, on labels of its horizon (``timeframe_run_config``), with its
gate and confidence map fitted on its own walk-forward, into ``books/<book>/<model>/``. The book's state after
orchestrating the models' walk-forwards over the training data (what the backtest's book ends in) is its seed,
``books/<book>/seed.json``: a live book without a stored state starts from it, as warm as the backtest's.

With the MoE's news slot (``moe.news``) every timeframe model has it too (``timeframe_run_config`` keeps the MoE):
the series must carry the slot's input, the ``news_score`` column the training run gave them
(``signal_engine.workflow.news.with_news_scores``, point in time), which every model's walk-forward reads as the
backtest's does, and every model's bundle carries the same text expert (``add_news``), so the live book step reads
the stored headlines for each of them (``signal_engine.live.models.LiveTimeframeModel``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.config import NEWS_COLUMN, RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.evaluation.backtest import SymbolResult
from signal_engine.evaluation.portfolio import (
    bar_frequency,
    orchestration_config,
    series_periods_per_year,
    timeframe_plan,
)
from signal_engine.orchestration.adapter import signal_frame
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.runner import orchestrate
from signal_engine.orchestration.state import BookState, BookStateError
from signal_engine.orchestration.timeframes import timeframe_run_config
from signal_engine.serving.book_bundle import (
    BOOKS_FOLDER,
    SAME_BUNDLE,
    SEED_FILE,
    BookModel,
    BookSpec,
    model_folder,
    write_book,
)
from signal_engine.workflow import training
from signal_engine.workflow.news import NewsTraining
from signal_engine.workflow.quality import QualityConfig

TimeframeResults = Mapping[str, Mapping[str, SymbolResult]]
SignalFrames = Mapping[str, Mapping[str, pd.DataFrame]]


def book_groups(series: Sequence[PriceSeries]) -> dict[str, list[PriceSeries]]:
    """The books of ``series``: one per bar frequency (``1d``, ``1h``, ...), in the series' order."""
    groups: dict[str, list[PriceSeries]] = {}
    for s in series:
        groups.setdefault(bar_frequency(s), []).append(s)
    return groups


def train_books(
    series: Sequence[PriceSeries],
    config: RunConfig,
    quality: QualityConfig,
    version_root: Path,
    *,
    orchestration: Mapping[str, Any] | None = None,
    walk_forwards: TimeframeResults | None = None,
    moe_walk_forward: Sequence[SymbolResult] | None = None,
    signals: SignalFrames | None = None,
    states: Mapping[str, BookState] | None = None,
    on_model: Callable[[str], None] | None = None,
    news: NewsTraining | None = None,
    on_news_training: Callable[[Path], None] | None = None,
) -> list[BookSpec]:
    """Train each book's timeframe models into ``version_root`` (which holds the MoE's bundle), orchestrate their
    walk-forwards into the book's seed state and write ``book.json``; returns the books.

    ``walk_forwards[symbol][model]``: the backtest's walk-forward of that timeframe model, and
    ``moe_walk_forward`` the MoE's (the gate's training rows), when the caller ran them with the same config and
    data (the demo, the local runner); they are reused instead of walking forward again. ``signals[symbol][model]``:
    the signal frames the caller's backtest orchestrated (``Book.signals``), which the seed then orchestrates
    (the backtest replaces its MoE results' positions with the book's afterwards, so the frames are the record).
    ``states[book]``: the state the caller's orchestration of those frames ended in (``Book.result.final_state``);
    with the frames, it is the seed when it was built for the same symbols, models, settings and last bar, instead
    of orchestrating the whole history again.

    With ``moe.news`` the series carry the news slot's ``news_score`` (ConfigError otherwise) and ``news`` is the
    config's ``news:`` section, whose text expert every timeframe model's bundle then carries, as the MoE's does
    (``on_news_training(folder)`` is called before its head is trained, when no cached one exists); without the slot
    the other models' bundles carry no text expert (the live book step would not ask it).
    """
    _check_news_scores(series, config)
    books = []
    for name, members in book_groups(series).items():
        ppy = float(np.mean([series_periods_per_year(s, config) for s in members]))
        settings = orchestration_config(ppy, config, orchestration)
        costs = {s.symbol: config.trading.cost_for(s.symbol) for s in members}
        models, results = [], {}
        for spec in timeframe_plan(members[0], config, orchestration):
            if on_model is not None:
                on_model(f"{name} book, {spec.name} model (horizon {spec.horizon} bars)")
            if spec.horizon == config.labels.horizon:
                results[spec.name] = (_reusable(members, spec.name, walk_forwards)
                                      or _matching(members, moe_walk_forward) or training.walk_forward(members, config))
                models.append(BookModel(spec, SAME_BUNDLE))
                continue
            relative = model_folder(name, spec.name)
            model_config = timeframe_run_config(config, spec)
            try:
                results[spec.name] = (_reusable(members, spec.name, walk_forwards)
                                      or training.walk_forward(members, model_config))
                _train_model(members, model_config, quality, version_root / relative, results[spec.name],
                             news if config.moe.news else None, on_news_training)
            except ConfigError as exc:
                raise ConfigError(f"the {name} book's {spec.name} model (horizon {spec.horizon} bars): {exc}; or "
                                  "leave the model out of the book ('orchestration: {timeframes: [...]}' in --config) "
                                  "or train the MoE alone (--no-book)") from None
            models.append(BookModel(spec, relative))
        seed = f"{BOOKS_FOLDER}/{name}/{SEED_FILE}"
        state = (_orchestrated(states, name, members, list(results), settings, ppy, costs, signals)
                 or _seed_state(members, results, settings, ppy, costs, signals))
        (version_root / seed).parent.mkdir(parents=True, exist_ok=True)
        (version_root / seed).write_text(state.to_json() + "\n", encoding="utf-8")
        books.append(BookSpec(
            name=name, symbols=tuple(s.symbol for s in members),
            timeframes={s.symbol: training.timeframe_of(s) for s in members}, periods_per_year=ppy,
            cost_bps=costs, config=settings, models=tuple(models), seed=seed))
    write_book(version_root, books)
    return books


def _seed_state(members: Sequence[PriceSeries], results: Mapping[str, Sequence[SymbolResult]],
                settings: OrchestrationConfig, ppy: float, costs: Mapping[str, float],
                given: SignalFrames | None) -> BookState:
    """The book's state after the models' walk-forwards, orchestrated as the backtest does (``build_books``)."""
    signals = {s.symbol: {model: _frame(given, s.symbol, model, runs[i]) for model, runs in results.items()}
               for i, s in enumerate(members)}
    closes = {s.symbol: s.bars["close"] for s in members}
    volumes = {s.symbol: s.bars["volume"] for s in members if s.has_volume}
    state = orchestrate(signals, closes, settings, ppy, volumes=volumes, cost_bps=costs).final_state
    if state is None:
        raise ConfigError("the book's walk-forwards give no bar to orchestrate; train on more bars")
    return state


def _orchestrated(states: Mapping[str, BookState] | None, name: str, members: Sequence[PriceSeries],
                  models: Sequence[str], settings: OrchestrationConfig, ppy: float, costs: Mapping[str, float],
                  signals: SignalFrames | None) -> BookState | None:
    """The caller's final state of book ``name`` when it orchestrated the given frames of these members with these
    settings up to their last bar (so ``_seed_state`` would give it again), or None."""
    if states is None or signals is None:
        return None
    state, symbols = states.get(name), tuple(s.symbol for s in members)
    if state is None or state.symbols != symbols or tuple(state.models) != tuple(models):
        return None
    if any(set(signals.get(symbol, {})) != set(models) for symbol in symbols):
        return None
    last = max(s.bars.index[-1] for s in members)
    if state.bar_time is None or pd.Timestamp(state.bar_time) != pd.Timestamp(last):
        return None
    try:
        state.check_settings(settings, ppy, [costs[symbol] for symbol in symbols])
    except BookStateError:
        return None
    return state


def _frame(given: SignalFrames | None, symbol: str, model: str, result: SymbolResult) -> pd.DataFrame:
    frame = None if given is None else given.get(symbol, {}).get(model)
    return signal_frame(result.signals) if frame is None else frame


def _check_news_scores(series: Sequence[PriceSeries], config: RunConfig) -> None:
    """With ``moe.news``, every series carries the slot's input (its walk-forwards read it as the backtest's do)."""
    lacking = [s.symbol for s in series if NEWS_COLUMN not in s.bars.columns] if config.moe.news else []
    if lacking:
        raise ConfigError(f"moe.news: the book's series {', '.join(lacking)} have no '{NEWS_COLUMN}' column; train "
                          "the book on the training run's dataset, whose bars carry the news slot's scores")


def _train_model(members: Sequence[PriceSeries], config: RunConfig, quality: QualityConfig, out: Path,
                 results: list[SymbolResult], news: NewsTraining | None,
                 on_news_training: Callable[[Path], None] | None) -> None:
    with tempfile.TemporaryDirectory(prefix="signal-engine-book-") as scratch:
        root = Path(scratch)
        experts = [training.train_expert(e, members, config, root / "experts" / e) for e in training.EXPERTS]
        gate = training.train_gate(members, config, root / "gate", results)
        training.evaluate(config, quality, experts, gate, out, news=news, on_news_training=on_news_training)


def _matching(members: Sequence[PriceSeries], given: Sequence[SymbolResult] | None) -> list[SymbolResult] | None:
    """The caller's MoE walk-forwards of these series (same symbols, bars and last bar), or None."""
    if given is None:
        return None
    by_symbol = {r.symbol: r for r in given}
    return _reusable(members, "moe", {s: {"moe": by_symbol[s]} for s in by_symbol})


def _reusable(members: Sequence[PriceSeries], model: str,
              walk_forwards: TimeframeResults | None) -> list[SymbolResult] | None:
    """The caller's walk-forwards of ``model`` when they cover exactly these series (same bars, same last bar)."""
    if walk_forwards is None:
        return None
    results = []
    for s in members:
        result = walk_forwards.get(s.symbol, {}).get(model)
        if result is None or result.data.get("bars") != len(s) or result.data.get("end") != str(s.bars.index[-1]):
            return None
        results.append(result)
    return results
