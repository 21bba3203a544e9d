"""At-the-money implied volatility of a stored option chain, interpolated to a forecast horizon.

The result is an annualised percentage, as the VIX is quoted, so it fills the ``implied_vol`` column that
:mod:`signal_engine.experts.implied_volatility` reads. Point in time: only quotes whose ``as_of`` is at or
before the decision time are used, and the horizon is counted from the decision time. Wherever the chain
cannot give a value (no quote bracketing the spot, no expiration at or beyond the horizon, quotes too old,
Yahoo's placeholder volatilities of unquoted contracts, which the collector stores as missing) the answer
is None: the expert abstains on that bar.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

from signal_engine.storage.records import OptionQuote

# US equity options stop trading at 16:00 New York time: 21:00 UTC in winter (20:00 in summer; the hour
# of difference is under 1% of a week's expiry and is ignored).
EXPIRY_TIME_UTC = time(21, 0)
DAYS_PER_YEAR = 365.0


def years_to_expiry(expiration: date, at: datetime) -> float:
    """Calendar time from ``at`` (naive UTC) to the expiration's close, in years of 365 days."""
    return (datetime.combine(expiration, EXPIRY_TIME_UTC) - at) / timedelta(days=DAYS_PER_YEAR)


def atm_volatility(quotes: Iterable[OptionQuote], spot: float) -> float | None:
    """Implied volatility (a decimal) at the strike ``spot`` of one expiration's quotes, or None.

    At each strike the volatility is the mean of the call's and the put's where both have one; the
    at-the-money value is linear in strike between the nearest strikes at or below and at or above
    ``spot``. None when no strike with a volatility lies on one of the two sides (no extrapolation).
    """
    by_strike: dict[float, list[float]] = {}
    for quote in quotes:
        iv = quote.implied_volatility
        if iv is not None and math.isfinite(iv) and iv > 0:
            by_strike.setdefault(quote.strike, []).append(iv)
    below = [k for k in by_strike if k <= spot]
    above = [k for k in by_strike if k >= spot]
    if not below or not above:
        return None
    low, high = max(below), min(above)
    iv_low, iv_high = (sum(by_strike[k]) / len(by_strike[k]) for k in (low, high))
    if high == low:
        return iv_low
    return iv_low + (spot - low) / (high - low) * (iv_high - iv_low)


def term_structure(quotes: Iterable[OptionQuote], spot: float, at: datetime, *,
                   max_age: timedelta = timedelta(days=4), min_days: float = 1.0) -> list[tuple[float, float]]:
    """``[(years to expiry, ATM volatility), ...]`` by expiry, from the latest quotes known at ``at``.

    Per expiration, only the latest snapshot with ``as_of <= at`` and ``at - as_of <= max_age`` counts;
    expirations closer than ``min_days`` calendar days (their volatility is noise) and those without an
    at-the-money value are left out.
    """
    if not spot > 0:
        raise ValueError(f"spot must be a positive price, got {spot}")
    latest: dict[date, datetime] = {}
    usable = [q for q in quotes if q.as_of <= at and at - q.as_of <= max_age]
    for quote in usable:
        latest[quote.expiration] = max(latest.get(quote.expiration, quote.as_of), quote.as_of)
    points = []
    for expiration in sorted(latest):
        years = years_to_expiry(expiration, at)
        if years <= 0 or years * DAYS_PER_YEAR < min_days:
            continue
        iv = atm_volatility((q for q in usable if q.expiration == expiration and q.as_of == latest[expiration]),
                            spot)
        if iv is not None:
            points.append((years, iv))
    return points


def volatility_at_horizon(points: Sequence[tuple[float, float]], horizon_years: float) -> float | None:
    """The volatility at ``horizon_years``, linear in total variance ``w = iv^2 T`` between expiries.

    Before the first expiry the total variance is linear from (0, 0), so the first expiry's volatility
    holds; beyond the last there is no value (None): the chain says nothing about that horizon.
    """
    if not horizon_years > 0:
        raise ValueError(f"the horizon must be positive, got {horizon_years} years")
    nodes = [(0.0, 0.0), *sorted((t, iv * iv * t) for t, iv in points)]
    for (t0, w0), (t1, w1) in itertools.pairwise(nodes):
        if t0 <= horizon_years <= t1:
            w = w0 + (horizon_years - t0) / (t1 - t0) * (w1 - w0)
            return math.sqrt(w / horizon_years) if w > 0 else None
    return None


def chain_implied_volatility(quotes: Iterable[OptionQuote], spot: float, at: datetime, horizon_days: float, *,
                             max_age: timedelta = timedelta(days=4), min_days: float = 1.0) -> float | None:
    """At-the-money implied volatility for the next ``horizon_days`` calendar days from ``at``, in annualised %.

    ``spot`` is the underlying's price at ``at`` (the bar's close); None means abstain.
    """
    points = term_structure(quotes, spot, at, max_age=max_age, min_days=min_days)
    iv = volatility_at_horizon(points, horizon_days / DAYS_PER_YEAR)
    return None if iv is None else 100.0 * iv
