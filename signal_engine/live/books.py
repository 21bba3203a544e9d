"""The live step: every book of a whole-book bundle stepped over the bars the collectors stored since its last step.

``step_books`` is what runs after collection (``signal-engine step`` locally, the book-step Lambda in AWS). For
each book of the bundle's ``book.json``:

1. the bars to step are the stored bars after the book's latest stepped bar, up to the latest bar that every
   symbol still trading has (a symbol whose bars lag waits for its collector: the book does not step past
   it, so its bar is never missed); a symbol without a bar for longer than ``ended_after`` bar intervals is
   treated as ended and stepped as "no bar", as the backtest steps a series that has stopped;
2. at each bar, per symbol with a bar, the recent bars up to it are read through the Signal API's bar source:
   the return and regime features come from them, and each timeframe model answers through the API's MoE
   path (:class:`~signal_engine.live.models.LiveTimeframeModel`) with its own previous position; a model whose
   bundle has the news slot (``moe.news``) reads the symbol's headlines known before the bar's close from the
   document store and asks the text expert about them, as the API does (no store or no headline: the slot
   abstains);
3. ``advance_book`` steps and commits the bar (state, positions, events) in one transaction.

A book without a stored state starts from the bundle's seed: the state its models' walk-forwards, orchestrated
over the training data, ended in (what the backtest's book ended in), so it is as warm as the backtest's; a
bundle without a seed starts the book flat at the first bar after the models' training data (never on bars
the models were fitted on).
Running the step again steps nothing; an expert failure raises before the bar is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.live.models import LiveTimeframeModel
from signal_engine.orchestration.adapter import TimeframeSignal
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.live import advance_book, bar_time_of, seed_book
from signal_engine.orchestration.regime import REGIME_FEATURES, regime_features
from signal_engine.orchestration.step import BarInputs
from signal_engine.ports import BookStore, DocumentStore, ExpertClient, PriceStore
from signal_engine.serving.book_bundle import BookBundle, BookSpec
from signal_engine.serving.bundle import ServingBundle
from signal_engine.serving.service import BarSource

ENDED_AFTER_BARS = 5.0
SECONDS_PER_YEAR = 365.25 * 24 * 3600


@dataclass(frozen=True)
class BookStepReport:
    """What one call did to one book."""

    book: str
    stepped: int
    replayed: int
    latest_bar: datetime | None
    waiting: tuple[str, ...] = ()
    ended: tuple[str, ...] = ()
    positions: dict[str, float] = field(default_factory=dict)
    seeded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"book": self.book, "stepped": self.stepped, "replayed": self.replayed, "seeded": self.seeded,
                "latest_bar": None if self.latest_bar is None else self.latest_bar.isoformat(),
                "waiting": list(self.waiting), "ended": list(self.ended),
                "positions": {s: round(p, 12) for s, p in self.positions.items()}}


@dataclass(frozen=True)
class LiveStores:
    """The stores a live step reads and writes (``signal_engine.bootstrap.Storage`` has them all); ``documents``
    holds the headlines a model with the news slot reads (None: its slot abstains)."""

    prices: PriceStore
    recent_bars: BarSource
    books: BookStore
    documents: DocumentStore | None = None


def step_books(
    storage: Any,
    version_dir: Path,
    *,
    books: Sequence[str] | None = None,
    until: datetime | None = None,
    experts: Callable[[Path], ExpertClient] | None = None,
    on_bar: Callable[[str, int, int], None] | None = None,
    ended_after: float = ENDED_AFTER_BARS,
    text_expert: ExpertClient | None = None,
) -> list[BookStepReport]:
    """Step every book of the whole-book bundle at ``version_dir`` (module docstring); one report per book.

    ``storage`` has ``prices``, ``recent_bars``, ``books`` and, where the news is stored, ``documents``
    (``signal_engine.bootstrap.Storage``); ``experts(folder)`` builds the expert client of one timeframe model's
    bundle folder (default: its fitted experts in process, with the text expert of a bundle with the news slot,
    which ``text_expert`` answers instead where given: the experts' endpoint of the book-step Lambda, whose image has
    no text encoder); ``until`` (naive UTC) steps no bar after it; ``on_bar(book, done, total)`` reports progress.
    Raises ``BundleError`` for an incomplete bundle, ``StaleBarError`` / ``BookStateError`` as ``advance_book``
    does, ``ExpertFailure`` when an expert (the text expert included) or the document store fails.
    """
    bundle = BookBundle.load(version_dir)
    stores = LiveStores(storage.prices, storage.recent_bars, storage.books, getattr(storage, "documents", None))
    clients: dict[str, ExpertClient] = {}
    chosen = [bundle.book(name) for name in books] if books else list(bundle.books)
    reports = []
    for book in chosen:
        models = []
        for entry in book.models:
            served = bundle.bundles[entry.bundle]
            if entry.bundle not in clients:
                folder = bundle.folder(entry.bundle)
                clients[entry.bundle] = experts(folder) if experts else in_process(folder, served, text_expert)
            models.append(LiveTimeframeModel(entry.spec, served, clients[entry.bundle], documents=stores.documents))
        reports.append(_step_book(stores, bundle, book, models, until, ended_after, on_bar))
    return reports


def in_process(folder: Path, bundle: ServingBundle, text_expert: ExpertClient | None = None) -> ExpertClient:
    """The fitted experts of the bundle at ``folder`` answering in process; for a bundle with the news slot, its
    text expert too (in process, as ``signal-engine serve`` runs it), or ``text_expert`` where given."""
    from signal_engine.adapters.inprocess_experts import InProcessExperts, bundle_news_expert

    if not bundle.news_slot or bundle.news is None:
        return InProcessExperts(folder / "experts")
    if text_expert is None:
        return InProcessExperts(folder / "experts", news=bundle_news_expert(folder, bundle))
    from signal_engine.adapters.routed_experts import RoutedExperts

    return RoutedExperts(InProcessExperts(folder / "experts"), {bundle.news.expert: text_expert})


def _step_book(stores: LiveStores, bundle: BookBundle, book: BookSpec, models: Sequence[LiveTimeframeModel],
               until: datetime | None, ended_after: float,
               on_bar: Callable[[str, int, int], None] | None) -> BookStepReport:
    latest = stores.books.latest(book.name)
    seeded = False
    if latest is None:
        seed = bundle.seed_state(book)
        if seed is not None:
            seeded = seed_book(stores.books, book.name, seed)
            latest = stores.books.latest(book.name)
    after = latest[0] if latest is not None else _trained_through(bundle, book)
    previous = (latest[1].unmanaged.copy() if latest is not None
                else np.full((len(models), len(book.symbols)), np.nan))
    last_bar = {s: _latest_bar(stores.recent_bars, s, book.timeframes[s], until) for s in book.symbols}
    known = [t for t in last_bar.values() if t is not None]
    if not known:
        return BookStepReport(book.name, 0, 0, None if latest is None else latest[0], waiting=book.symbols,
                              seeded=seeded)
    newest = max(known)
    limit = timedelta(seconds=ended_after * SECONDS_PER_YEAR / book.periods_per_year)
    ended = tuple(s for s, t in last_bar.items() if t is None or t < newest - limit)
    trading = [s for s in book.symbols if s not in ended]
    cutoff = min(t for s, t in last_bar.items() if s in trading and t is not None)
    waiting = tuple(s for s in trading if last_bar[s] != newest)
    timeline = _timeline(stores.prices, book, book.symbols, after, cutoff)
    stepped = replayed = 0
    model_state = {} if latest is None else dict(latest[1].model_state)
    for i, when in enumerate(timeline):
        inputs = bar_inputs(book.symbols, book.timeframes, book.config, models, when, stores.recent_bars, previous,
                            model_state)
        result = advance_book(stores.books, book.name, [inputs], book.config, book.periods_per_year,
                              book.specs, book.cost_bps)[0]
        previous = result.state.unmanaged.copy()
        model_state = dict(result.state.model_state)
        stepped, replayed = stepped + (not result.replayed), replayed + result.replayed
        if on_bar is not None:
            on_bar(book.name, i + 1, len(timeline))
    final = stores.books.latest(book.name)
    positions = {} if final is None else {p.symbol: p.position for p in stores.books.positions(book.name, final[0])}
    return BookStepReport(book.name, stepped, replayed, None if final is None else final[0], waiting, ended,
                          positions, seeded)


def bar_inputs(symbols: Sequence[str], timeframes: Mapping[str, str], config: OrchestrationConfig,
               models: Sequence[LiveTimeframeModel], when: pd.Timestamp, bars: BarSource,
               previous: np.ndarray, model_state: Mapping[str, Any] | None = None) -> BarInputs:
    """What the book sees at ``when``: per symbol with a stored bar at ``when``, its return and regime features
    from the stored bars up to it, and each model's call; ``previous[m, s]`` is model m's own last position.

    ``model_state`` is what the models carried after the previous bar (the book state's ``model_state``: the
    online learners of models that learn between retrains, keyed ``model/symbol``); the inputs carry it on,
    updated for the symbols with a bar."""
    lookback = lookback_bars(config)
    count = max([lookback, *(m.bars_needed for m in models)])
    k = len(symbols)
    has_bar = np.zeros(k, dtype=bool)
    returns = np.full(k, np.nan)
    features = np.full((k, len(REGIME_FEATURES)), np.nan)
    calls: list[tuple[TimeframeSignal | None, ...]] = []
    carried = dict(model_state or {})
    for j, symbol in enumerate(symbols):
        rows = bars.recent_bars(symbol, timeframes[symbol], bar_time_of(when), count)
        if not rows or pd.Timestamp(str(rows[-1]["timestamp"])) != pd.Timestamp(bar_time_of(when)):
            calls.append(tuple(None for _ in models))
            continue
        has_bar[j] = True
        window = window_frame(rows[-lookback:])
        returns[j] = last_return(window["close"])
        features[j] = regime_row(window, config)
        row: list[TimeframeSignal | None] = []
        for i, m in enumerate(models):
            key = f"{m.spec.name}/{symbol}"
            call, learnt = m.call_learning(symbol, timeframes[symbol], rows, float(previous[i, j]), carried.get(key))
            row.append(call)
            if learnt is not None:
                carried[key] = learnt
        calls.append(tuple(row))
    return BarInputs(timestamp=pd.Timestamp(when), symbols=tuple(symbols), models=tuple(m.spec.name for m in models),
                     has_bar=has_bar, asset_returns=returns, features=features, calls=tuple(calls),
                     model_state=carried if carried or model_state else None)


def lookback_bars(config: OrchestrationConfig) -> int:
    """Bars of history a step reads back for its regime features: the longest window and the bar before it."""
    return max(config.trend_window, config.vol_long_window, config.liquidity_long_window) + 2


def window_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Stored bars (the bar source's rows) as a close / volume frame; volume NaN where not stored."""
    index = pd.DatetimeIndex([pd.Timestamp(str(r["timestamp"])) for r in rows]).as_unit("ns")
    volume = [np.nan if r.get("volume") is None else float(r["volume"]) for r in rows]
    return pd.DataFrame({"close": [float(r["close"]) for r in rows], "volume": volume}, index=index)


def regime_row(window: pd.DataFrame, config: OrchestrationConfig, with_volume: bool | None = None) -> np.ndarray:
    """The regime features at the window's last bar; volume is used when the symbol has it (``with_volume``;
    by default, when any bar of the window stored one)."""
    uses_volume = bool(window["volume"].notna().any()) if with_volume is None else with_volume
    volume = window["volume"] if uses_volume else None
    frame = regime_features(window["close"], config, volume)
    return frame.iloc[-1].loc[list(REGIME_FEATURES)].to_numpy(dtype=float)


def last_return(close: pd.Series) -> float:
    if len(close) < 2:
        return float("nan")
    return float(close.iloc[-1] / close.iloc[-2] - 1.0)


def _latest_bar(bars: BarSource, symbol: str, timeframe: str, until: datetime | None) -> datetime | None:
    rows = bars.recent_bars(symbol, timeframe, until, 1)
    return None if not rows else bar_time_of(pd.Timestamp(str(rows[-1]["timestamp"])))


def _trained_through(bundle: BookBundle, book: BookSpec) -> datetime:
    """The last bar any of the book's models was fitted on: a new book steps only later bars."""
    stamps = [pd.Timestamp(b.trained_through[s]) for m in book.models for b in [bundle.bundles[m.bundle]]
              for s in book.symbols if s in b.trained_through]
    if not stamps:
        raise SignalEngineError(f"book {book.name!r}: the bundle records no trained_through date for its symbols; "
                                "retrain it")
    return bar_time_of(max(stamps))


def _timeline(prices: PriceStore, book: BookSpec, symbols: Sequence[str], after: datetime,
              cutoff: datetime) -> pd.DatetimeIndex:
    if cutoff <= after:
        return pd.DatetimeIndex([])
    stamps: set[pd.Timestamp] = set()
    for symbol in symbols:
        series = prices.read_bars(symbol, book.timeframes[symbol], start=after + timedelta(seconds=1), end=cutoff)
        stamps.update(pd.Timestamp(bar_time_of(t)) for t in series.bars.index)
    return pd.DatetimeIndex(sorted(stamps))
