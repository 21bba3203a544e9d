"""Raw prices and corporate actions: turning a source's split-adjusted bars back into raw ones, and deriving
adjusted prices when bars are read, as known at a given time.

A split of ratio r (4.0 for 4:1) on ex-date e divides every price before e by r (and multiplies volume by
r); a cash dividend D on ex-date e multiplies every price before e by ``1 - D / C`` with C the raw close of
the last session before e (the CRSP / Yahoo convention). Both only count once known (``known_at``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime

import numpy as np

from signal_engine.storage.records import Bar, CorporateAction


def known(actions: Iterable[CorporateAction], as_of: datetime | None) -> list[CorporateAction]:
    """The actions a reader at ``as_of`` knew of and that had taken effect (all when ``as_of`` is None)."""
    if as_of is None:
        return list(actions)
    return [a for a in actions if a.known_at <= as_of and a.ex_date <= as_of.date()]


def split_factor(day: date, splits: Iterable[CorporateAction]) -> float:
    """The product of the ratios of the splits that went ex after ``day``."""
    factor = 1.0
    for split in splits:
        if split.kind == "split" and split.ex_date > day:
            factor *= split.value
    return factor


def in_effect(actions: Iterable[CorporateAction], at: datetime) -> list[CorporateAction]:
    """The splits that had gone ex by ``at``, whenever we learned of them: a source's prices as of ``at`` are
    adjusted for all of them (a split stored from a later fetch still applies to an earlier payload)."""
    return [a for a in actions if a.kind == "split" and a.ex_date <= at.date()]


def unadjust_bars(bars: Sequence[Bar], actions: Iterable[CorporateAction], adjusted_as_of: datetime) -> list[Bar]:
    """Raw bars from bars split-adjusted as of ``adjusted_as_of`` (with the splits in effect by then)."""
    splits = in_effect(actions, adjusted_as_of)
    raw = []
    for bar in bars:
        factor = split_factor(bar.timestamp.date(), splits)
        raw.append(replace(bar, open=bar.open * factor, high=bar.high * factor, low=bar.low * factor,
                           close=bar.close * factor, adj_close=None,
                           volume=None if bar.volume is None else bar.volume / factor))
    return raw


def unadjust_dividends(actions: Sequence[CorporateAction], splits: Iterable[CorporateAction],
                       adjusted_as_of: datetime) -> list[CorporateAction]:
    """Dividend amounts in the raw basis of their ex-date, from amounts split-adjusted as of ``adjusted_as_of``."""
    known_splits = in_effect(splits, adjusted_as_of)
    return [replace(a, value=a.value * split_factor(a.ex_date, known_splits)) if a.kind == "dividend" else a
            for a in actions]


def adjustment(days: Sequence[date], raw_closes: Sequence[float], actions: Iterable[CorporateAction]) -> np.ndarray:
    """The factor that turns each raw bar (oldest first) into its adjusted price, given the applicable actions.

    A dividend whose ex-date has no earlier bar in ``days`` (so no close to scale it by) is not applied.
    """
    factors = np.ones(len(days))
    ordinals = np.array([d.toordinal() for d in days])
    for action in actions:
        before = ordinals < action.ex_date.toordinal()
        if not before.any():
            continue
        if action.kind == "split":
            factors[before] /= action.value
        else:
            previous_close = raw_closes[int(np.flatnonzero(before)[-1])]
            if previous_close > action.value > 0:
                factors[before] *= 1.0 - action.value / previous_close
    return factors


def read_factors(days: Sequence[date], closes: np.ndarray, adj_closes: np.ndarray,
                 actions: Sequence[CorporateAction]) -> tuple[np.ndarray, np.ndarray]:
    """What a read multiplies each raw bar's prices by and divides its volume by (oldest first).

    A bar stored with its own adjusted close (``adj_closes`` not NaN; CSV ingest) keeps that adjustment and its
    volume; the others are adjusted by ``actions`` (:func:`adjustment`) and their volume by the splits among them.
    The factors of a trailing window of bars depend only on the window and the actions that go ex after its
    first day, so a window read gives the same factors as a read of the whole history up to its last bar.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        stored = adj_closes / closes
    raw = np.isnan(stored)
    from_actions = adjustment(days, closes.tolist(), actions)
    splits = adjustment(days, closes.tolist(), [a for a in actions if a.kind == "split"])
    return np.where(raw, from_actions, stored), np.where(raw, splits, 1.0)
