"""The scaling benchmark's universe: valid bars whose returns and ranges are the source's own, in blocks."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_scale import resampled_bars


def _source(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.integers(1_000, 5_000, n).astype(float)},
                        index=pd.bdate_range("2010-01-04", periods=n))


def test_resampled_bars_are_valid_and_made_of_the_sources_own_bars() -> None:
    source = _source()
    bars = resampled_bars(source, 1000, seed=3)
    assert len(bars) == 1000 and bars.index.is_monotonic_increasing and not bars.isna().any().any()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    source_steps = np.log(source["close"].to_numpy()[1:] / source["close"].to_numpy()[:-1])
    steps = np.log(bars["close"].to_numpy()[1:] / bars["close"].to_numpy()[:-1])
    assert np.isin(np.round(steps, 12), np.round(source_steps, 12)).all()
    # whole blocks: most consecutive resampled steps are consecutive source steps (mean block 20 bars)
    position = {round(v, 12): i for i, v in enumerate(source_steps)}
    follows = np.mean([position[round(b, 12)] == position[round(a, 12)] + 1 for a, b in itertools.pairwise(steps)])
    assert 0.85 < follows < 1.0
    assert not resampled_bars(source, 1000, seed=4)["close"].equals(bars["close"])
    pd.testing.assert_frame_equal(resampled_bars(source, 1000, seed=3), bars)
