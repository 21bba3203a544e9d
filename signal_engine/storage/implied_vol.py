"""The implied-volatility series derived from the stored option chains: one value per bar, point in time, stored.

The HAR-implied volatility expert reads an ``implied_vol`` column (annualised %, as the VIX is quoted) on every bar
of its trailing window, so the value of each bar is derived once from the chains and stored
(``MarketDataStore.write_implied_volatility``) rather than recomputed from thousands of contracts per request.

For a bar of ``symbol``:

- the decision time is the bar's close (:func:`signal_engine.storage.timeline.bar_close_times`): only quotes with
  ``as_of`` at or before it, and at most ``max_age`` old, count. A chain fetched after the close (the collector
  runs in the evening, and Yahoo stamps a chain with the underlying's last trade, 16:00:01 New York for a chain
  fetched after the close) reaches the next bar, not this one;
- the spot is the bar's raw close (``PriceStore.raw_closes``): option strikes are quoted against the traded price,
  so the split- and dividend-adjusted close the models read would put the "at the money" strike elsewhere (a
  quarter of the way up the strikes after a 4:1 split, a few % off after years of dividends). Bars the collectors
  store are raw; a CSV ingested with a split-adjusted ``Close`` gives that close, so a chain from before a later
  split would be read at the wrong strike (such files come from before the chains were collected);
- the value is :func:`signal_engine.storage.option_chains.chain_volatility`: the at-the-money volatility
  interpolated in total variance to ``horizon_days`` (30 calendar days by default, as the VIX), with the
  term-structure slope (90 days minus the horizon) and the 90%/110% skew beside it.

Incremental: bars that already have a stored value are never recomputed (delete the rows to recompute). Bars
without a chain known at their close stay missing (the expert abstains there), and so do those whose chain gives
no value (no strikes around the spot, no expiry at or beyond the horizon, placeholder volatilities); those are
tried again on the next run, which is cheap (only bars with a chain snapshot in their window are read).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from signal_engine.data.loader import IMPLIED_VOL, IV_SKEW, IV_TERM_SLOPE
from signal_engine.ports import MarketDataStore, PriceStore
from signal_engine.storage.option_chains import MAX_AGE, chain_volatility
from signal_engine.storage.records import IMPLIED_VOL_HORIZON_DAYS, ImpliedVolatility
from signal_engine.storage.timeline import bar_close_times
from signal_engine.storage.times import utc_now

# Bars whose chains are read in one query: their closes lie within this span (plus max_age before the first).
BATCH_SPAN = timedelta(days=10)


@dataclass(frozen=True)
class DeriveResult:
    """What one derivation did for one symbol's bars.

    ``stored``: bars that already had a value (left as they were); ``derived``: values computed and stored now;
    ``abstained``: bars with a chain known at their close that gives no value; ``without_chain``: bars with no
    chain snapshot within ``max_age`` before their close.
    """

    symbol: str
    timeframe: str
    stored: int = 0
    derived: int = 0
    abstained: int = 0
    without_chain: int = 0


@dataclass(frozen=True)
class _Bar:
    timestamp: datetime
    close_time: datetime
    spot: float


def derive_implied_volatility(prices: PriceStore, market: MarketDataStore, symbol: str, timeframe: str = "1d", *,
                              horizon_days: int = IMPLIED_VOL_HORIZON_DAYS, max_age: timedelta = MAX_AGE,
                              batch_span: timedelta = BATCH_SPAN,
                              now: Callable[[], datetime] = utc_now) -> DeriveResult:
    """Derive and store the implied volatility of the stored bars of ``symbol`` that have none yet (see the module).

    Each batch of bars is written in its own transaction, so a run cut off keeps what it derived.
    """
    closes = prices.raw_closes(symbol, timeframe)
    done = {row.timestamp for row in market.read_implied_volatility(symbol, timeframe, horizon_days)}
    missing = [(stamp, spot) for stamp, spot in closes if stamp not in done]
    if not missing:
        return DeriveResult(symbol, timeframe, stored=len(closes) - len(missing))
    close_times = bar_close_times(pd.DatetimeIndex([stamp for stamp, _ in missing]), timeframe).to_pydatetime()
    bars = [_Bar(stamp, close_time, spot) for (stamp, spot), close_time in zip(missing, close_times, strict=True)]
    snapshots = market.option_snapshot_times(symbol, since=bars[0].close_time - max_age, until=bars[-1].close_time)
    with_chain = [bar for bar in bars if _has_snapshot(snapshots, bar.close_time - max_age, bar.close_time)]
    derived = abstained = 0
    for batch in _batches(with_chain, batch_span):
        quotes = market.read_option_quotes(symbol, since=batch[0].close_time - max_age, until=batch[-1].close_time)
        fetched = [quote.as_of for quote in quotes]
        rows = []
        for bar in batch:
            window = quotes[bisect_left(fetched, bar.close_time - max_age):bisect_right(fetched, bar.close_time)]
            reading = chain_volatility(window, bar.spot, bar.close_time, horizon_days, max_age=max_age)
            if reading.atm is None:
                abstained += 1
                continue
            rows.append(ImpliedVolatility(symbol, timeframe, bar.timestamp, horizon_days, reading.atm, bar.spot,
                                          now(), reading.term_slope, reading.skew))
        if rows:
            market.write_implied_volatility(rows)
            derived += len(rows)
    return DeriveResult(symbol, timeframe, stored=len(closes) - len(missing), derived=derived, abstained=abstained,
                        without_chain=len(bars) - len(with_chain))


def implied_vol_column(market: MarketDataStore, symbol: str, timeframe: str, index: pd.DatetimeIndex, *,
                       horizon_days: int = IMPLIED_VOL_HORIZON_DAYS) -> pd.Series:
    """The stored values on ``index`` (a price series' bar timestamps) as the ``implied_vol`` column: annualised %,
    NaN on the bars without one."""
    return implied_vol_columns(market, symbol, timeframe, index, horizon_days=horizon_days)[IMPLIED_VOL]


def implied_vol_columns(market: MarketDataStore, symbol: str, timeframe: str, index: pd.DatetimeIndex, *,
                        horizon_days: int = IMPLIED_VOL_HORIZON_DAYS) -> pd.DataFrame:
    """The stored readings on ``index`` as the columns ``implied_vol`` (annualised %), ``implied_term_slope`` and
    ``implied_skew`` (% points), each NaN on the bars without a value (a stored row may lack the slope or the skew)."""
    stamps = pd.DatetimeIndex(index)
    stored = market.read_implied_volatility(symbol, timeframe, horizon_days,
                                            start=stamps[0].to_pydatetime() if len(stamps) else None,
                                            end=stamps[-1].to_pydatetime() if len(stamps) else None)
    readings = {IMPLIED_VOL: [row.implied_vol for row in stored], IV_TERM_SLOPE: [row.term_slope for row in stored],
                IV_SKEW: [row.skew for row in stored]}
    frame = pd.DataFrame(readings, index=pd.DatetimeIndex([pd.Timestamp(row.timestamp) for row in stored]),
                         dtype=float)
    return frame.reindex(stamps)


def _has_snapshot(snapshots: Sequence[datetime], since: datetime, until: datetime) -> bool:
    return bisect_right(snapshots, until) > bisect_left(snapshots, since)


def _batches(bars: Sequence[_Bar], span: timedelta) -> list[list[_Bar]]:
    batches: list[list[_Bar]] = []
    for bar in bars:
        if batches and bar.close_time - batches[-1][0].close_time <= span:
            batches[-1].append(bar)
        else:
            batches.append([bar])
    return batches
