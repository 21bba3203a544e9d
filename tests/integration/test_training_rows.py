"""No look-ahead at every refit: the exact rows each expert is fitted on, not only ``known_by`` itself.

At a refit at bar ``r`` (``fit_at``), a label decided at bar i is known once bar i + H has closed (H: the label's
horizon; 1 for the next-bar variance). With an embargo of E bars, the newest row a model may learn from is
``r - H - E``. The experts are wrapped so that every ``fit`` records which bars it was given a label for; any call
site that selects rows by the wrong ``known_at`` (or forgets the embargo) fails here, for each label kind and for
the horizons the timeframe models use.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import load_config
from signal_engine.data import load_prices
from signal_engine.evaluation import backtest
from signal_engine.experts.levels import SwingLevelsExpert
from signal_engine.experts.trend import GradientBoostedTrendExpert
from signal_engine.experts.volatility import VolatilityExpert

pytestmark = pytest.mark.slow

SMALL = """walk_forward:
  initial_window: 300
  validation_bars: 150
  refit_every: 150
  min_test_bars: 100
trend:
  n_estimators: 20
suite:
  enabled: false
"""
BARS = 900


@pytest.fixture(scope="module")
def goog_head(goog_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = goog_csv.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("rows") / "GOOG.csv"
    path.write_text("".join(lines[: BARS + 1]))
    return path


def _recorded_fits(monkeypatch: pytest.MonkeyPatch, index: pd.DatetimeIndex) -> dict[str, list[np.ndarray]]:
    """Wrap each MoE expert's ``fit`` so it records the bar positions that carry a label."""
    calls: dict[str, list[np.ndarray]] = {"trend": [], "volatility": [], "levels": []}

    def labelled_rows(frame: pd.DataFrame, labels: Any) -> np.ndarray:
        rows = index.get_indexer(frame.index)
        assert (rows >= 0).all()
        target = np.asarray(labels, dtype=float)
        known = np.isfinite(target) if target.ndim == 1 else np.isfinite(target).all(axis=1)
        return np.asarray(rows[known])

    for name, cls in (("trend", GradientBoostedTrendExpert), ("volatility", VolatilityExpert),
                      ("levels", SwingLevelsExpert)):
        original = cls.fit

        def fit(self: Any, X: pd.DataFrame, y: Any, *args: Any, _original: Any = original, _name: str = name,
                **kwargs: Any) -> Any:
            calls[_name].append(labelled_rows(X, y))
            return _original(self, X, y, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)
    return calls


@pytest.mark.parametrize(("horizon", "embargo"), [(5, 0), (5, 3), (20, 2), (1, 0)])
def test_every_refit_learns_exactly_up_to_the_last_known_label(
    goog_head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, horizon: int, embargo: int
) -> None:
    config_path = tmp_path / "small.yaml"
    config_path.write_text(SMALL)
    config = load_config("quick", config_path)
    config = replace(config, labels=replace(config.labels, horizon=horizon),
                     walk_forward=replace(config.walk_forward, embargo=embargo))
    series = load_prices(goog_head)
    blocks = list(backtest.schedule(len(series), config.walk_forward))
    calls = _recorded_fits(monkeypatch, pd.DatetimeIndex(series.bars.index))

    backtest.run_symbol(series, config)

    fit_at = [block.fit_at for block in blocks]
    assert len(fit_at) >= 3
    for kind, newest in (("trend", [r - horizon - embargo for r in fit_at]),
                         ("levels", [r - horizon - embargo for r in fit_at]),
                         ("volatility", [r - 1 - embargo for r in fit_at])):
        recorded = calls[kind]
        assert len(recorded) == len(fit_at), f"{kind}: one fit per refit"
        for r, rows, expected in zip(fit_at, recorded, newest, strict=True):
            assert rows.max() == expected, (
                f"{kind} fitted at bar {r} learned from bar {rows.max()}; the newest label known with horizon "
                f"{horizon} and embargo {embargo} is bar {expected}")
