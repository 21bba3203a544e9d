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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from signal_engine.storage.records import OptionQuote, OptionSide

# US equity options stop trading at 16:00 New York time: 21:00 UTC in winter (20:00 in summer; the hour
# of difference is under 1% of a week's expiry and is ignored).
EXPIRY_TIME_UTC = time(21, 0)
DAYS_PER_YEAR = 365.0
MAX_AGE = timedelta(days=4)  # a chain older than this says nothing about the bar
SIDES: tuple[OptionSide, ...] = ("call", "put")
STRIKE_TOLERANCE = 1e-9  # relative: a strike this close to the one asked for is that strike
PUTS: tuple[OptionSide, ...] = ("put",)
CALLS: tuple[OptionSide, ...] = ("call",)


def years_to_expiry(expiration: date, at: datetime) -> float:
    """Calendar time from ``at`` (naive UTC) to the expiration's close, in years of 365 days."""
    return (datetime.combine(expiration, EXPIRY_TIME_UTC) - at) / timedelta(days=DAYS_PER_YEAR)


def volatility_at_strike(quotes: Iterable[OptionQuote], strike: float,
                         sides: Collection[OptionSide] = SIDES) -> float | None:
    """Implied volatility (a decimal) at ``strike`` of one expiration's quotes of ``sides``, or None.

    At each quoted strike the volatility is the mean of the call's and the put's where both have one (and
    both sides are asked for); the value at ``strike`` is linear in strike between the nearest quoted strikes
    at or below and at or above it. None when no strike with a volatility lies on one of the two sides (no
    extrapolation).
    """
    by_strike: dict[float, list[float]] = {}
    for quote in quotes:
        iv = quote.implied_volatility
        if quote.side in sides and iv is not None and math.isfinite(iv) and iv > 0:
            by_strike.setdefault(quote.strike, []).append(iv)
    on_strike = [k for k in by_strike if math.isclose(k, strike, rel_tol=STRIKE_TOLERANCE)]  # 1.1 * 100 is 110.0..01
    below = on_strike or [k for k in by_strike if k <= strike]
    above = on_strike or [k for k in by_strike if k >= strike]
    if not below or not above:
        return None
    low, high = max(below), min(above)
    iv_low, iv_high = (sum(by_strike[k]) / len(by_strike[k]) for k in (low, high))
    if high == low:
        return iv_low
    return iv_low + (strike - low) / (high - low) * (iv_high - iv_low)


def atm_volatility(quotes: Iterable[OptionQuote], spot: float) -> float | None:
    """Implied volatility (a decimal) at the strike ``spot`` of one expiration's quotes, or None.

    At each strike the volatility is the mean of the call's and the put's where both have one; the
    at-the-money value is linear in strike between the nearest strikes at or below and at or above
    ``spot``. None when no strike with a volatility lies on one of the two sides (no extrapolation).
    """
    return volatility_at_strike(quotes, spot)


def latest_snapshots(quotes: Iterable[OptionQuote], at: datetime, *,
                     max_age: timedelta = MAX_AGE) -> dict[date, list[OptionQuote]]:
    """Per expiration, the quotes of its latest snapshot with ``as_of <= at`` and ``at - as_of <= max_age``."""
    latest: dict[date, datetime] = {}
    by_snapshot: dict[tuple[date, datetime], list[OptionQuote]] = {}
    for quote in quotes:
        if quote.as_of <= at and at - quote.as_of <= max_age:
            by_snapshot.setdefault((quote.expiration, quote.as_of), []).append(quote)
            latest[quote.expiration] = max(latest.get(quote.expiration, quote.as_of), quote.as_of)
    return {expiration: by_snapshot[(expiration, as_of)] for expiration, as_of in sorted(latest.items())}


def term_structure(quotes: Iterable[OptionQuote], spot: float, at: datetime, *,
                   max_age: timedelta = MAX_AGE, min_days: float = 1.0, moneyness: float = 1.0,
                   sides: Collection[OptionSide] = SIDES) -> list[tuple[float, float]]:
    """``[(years to expiry, volatility), ...]`` by expiry, from the latest quotes known at ``at``.

    The volatility is read at the strike ``moneyness * spot`` (1.0: at the money) from the quotes of
    ``sides``. Per expiration, only the latest snapshot with ``as_of <= at`` and ``at - as_of <= max_age``
    counts; expirations closer than ``min_days`` calendar days (their volatility is noise) and those
    without a value at that strike are left out.
    """
    if not spot > 0:
        raise ValueError(f"spot must be a positive price, got {spot}")
    return _term_structure(latest_snapshots(quotes, at, max_age=max_age), spot * moneyness, at, min_days, sides)


def _term_structure(snapshots: Mapping[date, Sequence[OptionQuote]], strike: float, at: datetime,
                    min_days: float, sides: Collection[OptionSide] = SIDES) -> list[tuple[float, float]]:
    points = []
    for expiration, quotes in sorted(snapshots.items()):
        years = years_to_expiry(expiration, at)
        if years <= 0 or years * DAYS_PER_YEAR < min_days:
            continue
        iv = volatility_at_strike(quotes, strike, sides)
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
                             max_age: timedelta = MAX_AGE, min_days: float = 1.0) -> float | None:
    """At-the-money implied volatility for the next ``horizon_days`` calendar days from ``at``, in annualised %.

    ``spot`` is the underlying's price at ``at`` (the bar's close); None means abstain.
    """
    points = term_structure(quotes, spot, at, max_age=max_age, min_days=min_days)
    iv = volatility_at_horizon(points, horizon_days / DAYS_PER_YEAR)
    return None if iv is None else 100.0 * iv


@dataclass(frozen=True)
class ChainVolatility:
    """What one bar's chain says, each in annualised % (as the VIX is quoted), None where it says nothing.

    ``atm``: the at-the-money volatility at the horizon (:func:`chain_implied_volatility`).
    ``term_slope``: the at-the-money volatility at ``long_days`` minus that at the horizon (positive: the
    usual upward term structure; negative in stress, when near-term fear is priced above the long run).
    ``skew``: at the horizon, the out-of-the-money puts' volatility at strike ``low * spot`` minus the
    out-of-the-money calls' at ``high * spot`` (fixed moneyness; positive: crash protection is dear).
    """

    atm: float | None
    term_slope: float | None
    skew: float | None


def chain_volatility(quotes: Iterable[OptionQuote], spot: float, at: datetime, horizon_days: float, *,
                     long_days: float = 90.0, low: float = 0.9, high: float = 1.1, max_age: timedelta = MAX_AGE,
                     min_days: float = 1.0) -> ChainVolatility:
    """The at-the-money volatility, term-structure slope and skew of the chain known at ``at`` (see
    :class:`ChainVolatility`); every reading is interpolated in total variance between expiries as the
    at-the-money one is, from the same snapshots (the latest per expiration, at most ``max_age`` old)."""
    if not spot > 0:
        raise ValueError(f"spot must be a positive price, got {spot}")
    if not 0 < low < 1 < high:
        raise ValueError(f"skew moneyness must satisfy 0 < low < 1 < high, got low={low}, high={high}")
    snapshots = latest_snapshots(quotes, at, max_age=max_age)
    horizon = horizon_days / DAYS_PER_YEAR
    atm_points = _term_structure(snapshots, spot, at, min_days)
    atm = _percent(volatility_at_horizon(atm_points, horizon))
    far = _percent(volatility_at_horizon(atm_points, long_days / DAYS_PER_YEAR))
    puts = _percent(volatility_at_horizon(_term_structure(snapshots, low * spot, at, min_days, PUTS), horizon))
    calls = _percent(volatility_at_horizon(_term_structure(snapshots, high * spot, at, min_days, CALLS), horizon))
    return ChainVolatility(atm=atm, term_slope=None if atm is None or far is None else far - atm,
                           skew=None if puts is None or calls is None else puts - calls)


def _percent(volatility: float | None) -> float | None:
    return None if volatility is None else 100.0 * volatility
