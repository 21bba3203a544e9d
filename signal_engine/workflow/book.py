"""Training the whole book into a version folder: every timeframe model's bundle and ``book.json``.

The books are the backtest's (``evaluation.portfolio.build_books``): the symbols of one bar frequency, the
orchestration config for their periods per year (with the run's overrides: short limits, timeframes), the
per-symbol costs, and one model per timeframe. A model whose horizon is the MoE's own is the version's bundle
(``"."``); every other one is trained like the MoE, on labels of its horizon (``timeframe_run_config``), with its
gate and confidence map fitted on its own walk-forward, into ``books/<book>/<model>/``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from signal_engine.config import RunConfig
from signal_engine.data.loader import PriceSeries
from signal_engine.errors import ConfigError
from signal_engine.evaluation.backtest import SymbolResult
from signal_engine.evaluation.portfolio import (
    bar_frequency,
    orchestration_config,
    series_periods_per_year,
    timeframe_plan,
)
from signal_engine.orchestration.timeframes import timeframe_run_config
from signal_engine.serving.book_bundle import SAME_BUNDLE, BookModel, BookSpec, model_folder, write_book
from signal_engine.workflow import training
from signal_engine.workflow.quality import QualityConfig

TimeframeResults = Mapping[str, Mapping[str, SymbolResult]]


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
    on_model: Callable[[str], None] | None = None,
) -> list[BookSpec]:
    """Train each book's timeframe models into ``version_root`` (which holds the MoE's bundle) and write
    ``book.json``; returns the books.

    ``walk_forwards[symbol][model]``: the backtest's walk-forward of that timeframe model, when the caller ran
    it with the same config and data (the demo); the models' gates reuse it instead of walking forward again.
    """
    books = []
    for name, members in book_groups(series).items():
        ppy = float(np.mean([series_periods_per_year(s, config) for s in members]))
        settings = orchestration_config(ppy, config, orchestration)
        models = []
        for spec in timeframe_plan(members[0], config, orchestration):
            if spec.horizon == config.labels.horizon:
                models.append(BookModel(spec, SAME_BUNDLE))
                continue
            relative = model_folder(name, spec.name)
            if on_model is not None:
                on_model(f"{name} book, {spec.name} model (horizon {spec.horizon} bars)")
            try:
                _train_model(members, timeframe_run_config(config, spec), quality, version_root / relative,
                             _reusable(members, spec.name, walk_forwards))
            except ConfigError as exc:
                raise ConfigError(f"the {name} book's {spec.name} model (horizon {spec.horizon} bars): {exc}; or "
                                  "leave the model out of the book ('orchestration: {timeframes: [...]}' in --config) "
                                  "or train the MoE alone (--no-book)") from None
            models.append(BookModel(spec, relative))
        books.append(BookSpec(
            name=name, symbols=tuple(s.symbol for s in members),
            timeframes={s.symbol: training.timeframe_of(s) for s in members}, periods_per_year=ppy,
            cost_bps={s.symbol: config.trading.cost_for(s.symbol) for s in members}, config=settings,
            models=tuple(models)))
    write_book(version_root, books)
    return books


def _train_model(members: Sequence[PriceSeries], config: RunConfig, quality: QualityConfig, out: Path,
                 results: list[SymbolResult] | None) -> None:
    with tempfile.TemporaryDirectory(prefix="signal-engine-book-") as scratch:
        root = Path(scratch)
        experts = [training.train_expert(e, members, config, root / "experts" / e) for e in training.EXPERTS]
        if results is None:
            results = training.walk_forward(members, config)
        gate = training.train_gate(members, config, root / "gate", results)
        training.evaluate(config, quality, experts, gate, out)


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
