"""The walk-forward across several series at once, on a common calendar of refit dates.

The per-series walk-forward (:func:`~signal_engine.evaluation.walkforward.schedule`) refits every ``refit_every``
bars of one series. A model trained on several series needs refit *dates* that all series share:

- the calendar is the union of the series' dates (a date is on it when any series has a bar then);
- the refit dates are every ``refit_every``-th date of that calendar, anchored at the first date on which some
  series has ``initial_window`` bars before it, so adding bars at the end never moves an earlier refit;
- a model fitted at refit date D (at the close of D) decides, in every series, the bars dated D or later and
  before the next refit date; a series is decided from the first refit date on which it has ``initial_window``
  bars (its first refit is at most ``refit_every`` calendar dates after that bar);
- in each series, the training rows at D are those whose label is known by the series' last bar at or before D,
  less ``embargo`` bars (:func:`~signal_engine.evaluation.walkforward.known_by`), for every series at once; a
  series that has not started by D contributes nothing, one that has ended contributes all its rows.

Blocks in which no series has a bar to decide are skipped. :func:`leaks` checks a fit's inputs against this, from
the dates alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine.archetypes.pooled_expert import SERIES_COLUMN
from signal_engine.config import WalkForwardConfig
from signal_engine.evaluation import baselines
from signal_engine.evaluation.walkforward import known_by


@dataclass(frozen=True)
class PanelSeries:
    """One series of a panel: its frame (time-ordered, with the ``series`` column), trend labels (-1 where the
    horizon runs past the data) and the bar at whose close each label is known."""

    frame: pd.DataFrame
    trend: np.ndarray
    known_at: np.ndarray


def panel_series(name: str, frame: pd.DataFrame, trend: np.ndarray, known_at: np.ndarray) -> PanelSeries:
    """A :class:`PanelSeries` whose frame carries ``name`` in its ``series`` column."""
    if not (frame.index.is_monotonic_increasing and frame.index.is_unique):
        raise ValueError(f"{name}: the dates must increase")
    if not len(frame) == len(trend) == len(known_at):
        raise ValueError(f"{name}: frame, labels and known_at differ in length")
    return PanelSeries(frame.assign(**{SERIES_COLUMN: name}), np.asarray(trend), np.asarray(known_at))


@dataclass(frozen=True)
class PooledBlock:
    """Models fitted at ``fit_date``'s close decide, in each series of ``decide``, its bars start .. stop - 1.

    ``fit_at`` holds every series' last bar at or before ``fit_date`` (-1 before its first bar).
    """

    fit_date: pd.Timestamp
    fit_at: dict[str, int]
    decide: dict[str, tuple[int, int]]


def common_schedule(indexes: Mapping[str, pd.DatetimeIndex], config: WalkForwardConfig, *,
                    from_initial_window: bool = False) -> list[PooledBlock]:
    """The refit dates on the union calendar and, at each, every series' fit bar and decided bars.

    ``from_initial_window``: each series is decided from its own ``initial_window`` bar on (as the per-symbol
    walk-forward decides it), by the model of the refit date at or before that bar, rather than from its first
    refit date on; still no bar is decided by a model fitted after it."""
    first = {name: index[config.initial_window] for name, index in indexes.items()
             if len(index) > config.initial_window}
    if not first:
        return []
    calendar = pd.DatetimeIndex(sorted(set().union(*(set(index) for index in indexes.values()))))
    dates = calendar[calendar.searchsorted(min(first.values())) :: config.refit_every]
    blocks = []
    for j, date in enumerate(dates):
        end = dates[j + 1] if j + 1 < len(dates) else None
        decide = {}
        for name, begins in first.items():
            index = indexes[name]
            start = int(index.searchsorted(date, side="left"))
            stop = len(index) if end is None else int(index.searchsorted(end, side="left"))
            if from_initial_window:
                start = max(start, config.initial_window)
            if (from_initial_window or date >= begins) and stop > start:
                decide[name] = (start, stop)
        if decide:
            fit_at = {name: int(index.searchsorted(date, side="right")) - 1 for name, index in indexes.items()}
            blocks.append(PooledBlock(pd.Timestamp(date), fit_at, decide))
    return blocks


def training_rows(series: PanelSeries, fit_at: int, embargo: int) -> np.ndarray:
    """Rows of ``series`` whose trend label is known at bar ``fit_at``'s close less ``embargo`` bars."""
    if fit_at < 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(known_by(series.known_at, fit_at, embargo) & (series.trend >= 0))


def pooled_training_set(panel: Mapping[str, PanelSeries], block: PooledBlock,
                        embargo: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The pooled fit's rows: every started series' bars up to its fit bar, labelled where the label is known by
    then less the embargo (-1 elsewhere: history only)."""
    frames, labels = [], []
    for name, series in panel.items():
        fit_at = block.fit_at[name]
        if fit_at < 0:
            continue
        rows = training_rows(series, fit_at, embargo)
        y = np.full(fit_at + 1, -1, dtype=np.int64)
        y[rows] = series.trend[rows]
        frames.append(series.frame.iloc[: fit_at + 1])
        labels.append(y)
    return pd.concat(frames), np.concatenate(labels)


def pooled_prediction_set(panel: Mapping[str, PanelSeries], block: PooledBlock,
                          context: int | None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The decided bars of every series with ``context`` bars before them (all when None), and where each series'
    decided bars sit in that frame."""
    frames, where, offset = [], {}, 0
    for name, (start, stop) in block.decide.items():
        first = 0 if context is None else max(0, start - context)
        frames.append(panel[name].frame.iloc[first:stop])
        where[name] = np.arange(offset + start - first, offset + stop - first)
        offset += stop - first
    return pd.concat(frames), where


def pooled_block(panel: Mapping[str, PanelSeries], block: PooledBlock, expert: Any,
                 embargo: int) -> tuple[Any, dict[str, np.ndarray]]:
    """One pooled model fitted at the block's date on every series at once, and its probabilities for each
    series' decided bars."""
    X, y = pooled_training_set(panel, block, embargo)
    model = clone(expert).fit(X, y)
    frame, where = pooled_prediction_set(panel, block, model.context_bars())
    proba = np.asarray(model.predict_proba(frame))
    return model, {name: proba[rows] for name, rows in where.items()}


def pooled_out_of_sample(panel: Mapping[str, PanelSeries], expert: Any, config: WalkForwardConfig, *,
                         on_fit: Callable[[PooledBlock, Any], None] | None = None, cache: Path | None = None,
                         ) -> tuple[dict[str, np.ndarray], list[PooledBlock]]:
    """The pooled expert's out-of-sample probabilities of every series (one row per bar, NaN before its
    ``initial_window`` bar), each bar decided by the model fitted at the last common refit date at or before it on
    every series' rows known by then less the embargo (:func:`pooled_block`), and the blocks walked.
    ``on_fit(block, model)`` is called with each refit's fitted model (e.g. to keep a tuned expert's study record).
    ``cache``: a folder of each refit's probabilities (``block-NNN-DATE.npz``), read instead of fitting where present
    (``on_fit`` is then not called) and written after each fit, so an interrupted walk resumes; the caller names a
    folder of one panel, expert and config."""
    blocks = common_schedule({name: pd.DatetimeIndex(s.frame.index) for name, s in panel.items()}, config,
                             from_initial_window=True)
    out = {name: np.full((len(s.frame), 3), np.nan) for name, s in panel.items()}
    for j, block in enumerate(blocks):
        path = None if cache is None else cache / f"block-{j:03d}-{block.fit_date.date()}.npz"
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as stored:
                proba = {name: stored[name] for name in block.decide}
        else:
            model, proba = pooled_block(panel, block, expert, config.embargo)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f"partial-{path.name}")
                np.savez(partial, **proba)  # type: ignore[arg-type]
                partial.replace(path)
            if on_fit is not None:
                on_fit(block, model)
        for name, (start, stop) in block.decide.items():
            out[name][start:stop] = proba[name]
    return out, blocks


def per_series_block(panel: Mapping[str, PanelSeries], block: PooledBlock, expert: Any,
                     embargo: int) -> dict[str, np.ndarray]:
    """One model per decided series, fitted at the block's date on that series' known rows alone (as the backtest
    fits its trend expert), and its probabilities for the series' decided bars."""
    out = {}
    for name, (start, stop) in block.decide.items():
        series = panel[name]
        rows = training_rows(series, block.fit_at[name], embargo)
        model = clone(expert).fit(series.frame.iloc[rows], series.trend[rows])
        out[name] = np.asarray(model.predict_proba(series.frame.iloc[start:stop]))
    return out


def prior_block(panel: Mapping[str, PanelSeries], block: PooledBlock, embargo: int) -> dict[str, np.ndarray]:
    """Each decided series' class prior: the frequencies of its training labels."""
    out = {}
    for name, (start, stop) in block.decide.items():
        series = panel[name]
        rows = training_rows(series, block.fit_at[name], embargo)
        out[name] = baselines.majority_proba(baselines.majority_classifier(series.trend[rows]), stop - start)
    return out


def leaks(panel: Mapping[str, PanelSeries], block: PooledBlock, X: pd.DataFrame, y: np.ndarray,
          embargo: int) -> list[str]:
    """What a fit at ``block`` was given that it should not have been, from the dates alone (empty when clean).

    For every series in ``X``: its last bar at or before the fit date is found again from the dates; no input row
    may come after it; every labelled row's label must be known by it less ``embargo`` bars (max label-known time
    <= fit time - embargo) and equal the series' label; and the series' decided bars must start at or after the
    fit date.
    """
    found = []
    names = X[SERIES_COLUMN].to_numpy().astype(str)
    labels = np.asarray(y)
    for name in dict.fromkeys(names.tolist()):
        series, mine = panel[name], names == name
        index = series.frame.index
        fit_bar = int(index.searchsorted(block.fit_date, side="right")) - 1
        rows = index.get_indexer(X.index[mine])
        if (rows < 0).any() or rows.max() > fit_bar:
            found.append(f"{block.fit_date.date()} {name}: an input bar after the fit date")
        labelled = rows[labels[mine] >= 0]
        if len(labelled) and series.known_at[labelled].max() > fit_bar - embargo:
            known = index[min(int(series.known_at[labelled].max()), len(index) - 1)].date()
            found.append(f"{block.fit_date.date()} {name}: a training label known at {known}, after the fit bar "
                         f"less {embargo} bars")
        if not np.array_equal(labels[mine][labels[mine] >= 0], series.trend[labelled]):
            found.append(f"{block.fit_date.date()} {name}: a training label differs from the series' label")
        if name in block.decide and index[block.decide[name][0]] < block.fit_date:
            found.append(f"{block.fit_date.date()} {name}: decided bars start before the fit date")
    return found
