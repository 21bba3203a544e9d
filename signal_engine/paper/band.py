"""What the backtest expected, as a band, and the alarm when live results leave it (seed 004: predicted
against actual).

The backtest's net returns of the book are resampled with Politis and Romano's stationary bootstrap (blocks
of random length, so the serial dependence is kept; the mean block length by Politis and White's rule) into
paths as long as the live period. At each bar k of the live period the band is the central ``level`` share of
the paths' cumulative log returns over k bars. The live account's cumulative log return is compared with it
bar by bar; a bar outside is an alarm, and the first bar of each excursion is reported. With a pointwise band
a process that matches the backtest still sits outside about ``1 - level`` of the time, so the share of bars
outside is reported beside the alarms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.evaluation.significance import block_length

DEFAULT_LEVEL = 0.95
DEFAULT_PATHS = 1000
MIN_EXPECTATION_BARS = 60


@dataclass(frozen=True)
class Band:
    """Per live bar: the live cumulative log return, the backtest's median and band, and whether it is outside."""

    frame: pd.DataFrame
    level: float
    block: int
    paths: int
    expectation_bars: int

    @property
    def outside_share(self) -> float:
        return float(self.frame["outside"].mean()) if len(self.frame) else 0.0

    def alarms(self) -> pd.DataFrame:
        """The first bar of each run of bars outside the band."""
        outside = self.frame["outside"].to_numpy(dtype=bool)
        starts = outside & ~np.concatenate([[False], outside[:-1]])
        return self.frame.loc[starts]


def expectation_band(
    expected: np.ndarray,
    live: pd.Series,
    *,
    level: float = DEFAULT_LEVEL,
    paths: int = DEFAULT_PATHS,
    seed: int = 0,
) -> Band:
    """The band of cumulative log returns that ``expected`` (the backtest's net returns per bar) allows over
    ``len(live)`` bars, and ``live`` (the live net returns per bar, indexed by bar time) against it."""
    returns = np.asarray(expected, dtype=float)
    if len(returns) < MIN_EXPECTATION_BARS or not np.all(np.isfinite(returns)):
        raise SignalEngineError(f"paper: the backtest's expectation needs at least {MIN_EXPECTATION_BARS} finite "
                                f"returns, got {len(returns)}; start the paper period later (--from)")
    if not 0.0 < level < 1.0:
        raise SignalEngineError(f"paper: band level {level} is not in (0, 1)")
    logs = np.log1p(returns)
    block = block_length(logs)
    horizon = len(live)
    draws = np.cumsum(logs[stationary_indices(len(logs), horizon, block, paths, seed)], axis=1)
    tail = (1.0 - level) / 2.0
    low, median, high = np.quantile(draws, [tail, 0.5, 1.0 - tail], axis=0)
    cumulative = np.cumsum(np.log1p(live.to_numpy(dtype=float)))
    frame = pd.DataFrame({"live": cumulative, "expected": median, "band_low": low, "band_high": high,
                          "outside": (cumulative < low) | (cumulative > high)}, index=live.index)
    return Band(frame=frame, level=level, block=block, paths=paths, expectation_bars=len(returns))


def stationary_indices(n: int, horizon: int, block: float, paths: int, seed: int) -> np.ndarray:
    """``paths`` x ``horizon`` indices into a series of ``n``: blocks of geometric length with mean ``block``
    starting at uniform positions, wrapping around the end (Politis and Romano, 1994)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(paths, horizon))
    fresh = rng.random((paths, horizon)) < 1.0 / block
    fresh[:, 0] = True
    indices = np.empty((paths, horizon), dtype=np.int64)
    for k in range(horizon):
        follow = (indices[:, k - 1] + 1) % n if k else starts[:, 0]
        indices[:, k] = np.where(fresh[:, k], starts[:, k], follow)
    return indices
