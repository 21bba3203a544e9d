"""One pooled kernel-bank network per archetype: each series routed by its fingerprint to an archetype of the
catalogue, and every archetype's network, its first layer that archetype's 1-D kernel bank, trained on the series
routed to it at once."""

from __future__ import annotations

import time
from typing import Self

import numpy as np
import pandas as pd
from sklearn.base import clone

from signal_engine.archetypes.catalogue import ARCHETYPES
from signal_engine.archetypes.fingerprint import route, series_fingerprint
from signal_engine.archetypes.pooled_expert import (
    SERIES_COLUMN,
    PooledKernelTrendExpert,
    SeriesExpert,
    labelled_window_bars,
    series_positions,
)
from signal_engine.experts.base import Expert
from signal_engine.labels import TREND_CLASSES

FINGERPRINT_COLUMNS = ("open", "high", "low", "close", "volume")


def series_archetype(bars: pd.DataFrame, fallback: str, last: int | None = None) -> str:
    """The archetype the rule gate routes ``bars`` (one series, the rows known at the fit) to, by the fingerprint of
    its last ``last`` bars (all when None); ``fallback`` when the gate names an archetype that does not read bars."""
    columns = [c for c in FINGERPRINT_COLUMNS if c in bars.columns]
    archetype = route(series_fingerprint(bars.loc[:, columns], last=last))
    return archetype if ARCHETYPES[archetype].inputs == "bars" else fallback


class PooledArchetypeTrendExpert(Expert):
    """Trend probabilities (down, neutral, up) from one pooled kernel-bank network per archetype.

    At ``fit``, each series of ``X`` (rows named by the ``series`` column, each series' rows in time order) is routed
    by the rule gate (:func:`~signal_engine.archetypes.fingerprint.route`) from the fingerprint of its own rows in
    ``X``, which are those known at the fit: point in time. Every archetype that some series is routed to gets a
    clone of ``network`` (a :class:`~signal_engine.archetypes.pooled_expert.PooledKernelTrendExpert`) with that
    archetype's kernel bank as its first layer, trained on the rows of that archetype's series only, with the
    pooled training (equal rows of every series per epoch, validation tails, early stopping, Platt calibration).
    A series answers from its archetype's network; a series not trained on (too few labelled rows, or new) is routed
    from the rows given to ``predict_proba`` and answered by that archetype's network with the mean embedding, or by
    the network trained on the most series when no network has its archetype.

    Parameters
    ----------
    network : the kernel-bank network of every archetype (its ``archetype`` is replaced; default settings when None).
    fingerprint_bars : bars of each series the fingerprint summarises (its last ones; all when None).
    fallback_archetype : the bar archetype of a series the gate routes to an archetype without bars.

    References
    ----------
    Seed 001 (market archetypes, one expert per archetype with its own kernel bank, the rule gate v0 that routes a
    series to one archetype by its fingerprint).
    """

    name = "trend"
    target = "trend"
    outputs = tuple(f"p_{c}" for c in TREND_CLASSES)
    uses_tensorflow = True

    def __init__(self, network: PooledKernelTrendExpert | None = None, fingerprint_bars: int | None = None,
                 fallback_archetype: str = "equity_daily") -> None:
        self.network = network
        self.fingerprint_bars = fingerprint_bars
        self.fallback_archetype = fallback_archetype

    def _template(self) -> PooledKernelTrendExpert:
        return self.network if self.network is not None else PooledKernelTrendExpert()

    def context_bars(self) -> int | None:
        return self._template().context_bars()

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        started = time.perf_counter()
        labels = np.asarray(y, dtype=np.int64)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        template = self._template()
        self.classes_ = np.arange(len(TREND_CLASSES))
        self.archetypes_ = {name: self._route(X.iloc[positions])
                            for name, positions in self._positions(X).items()
                            if len(labelled_window_bars(labels[positions], template.window))
                            >= template.min_series_rows}
        if not self.archetypes_:
            raise ValueError(f"no series has {template.min_series_rows} rows with a known trend label (0, 1 or 2)")
        self.networks_: dict[str, PooledKernelTrendExpert] = {}
        for archetype in dict.fromkeys(self.archetypes_.values()):
            rows = np.flatnonzero(X[SERIES_COLUMN].astype(str).map(self.archetypes_).to_numpy() == archetype)
            network = clone(template).set_params(archetype=archetype)
            self.networks_[archetype] = network.fit(X.iloc[rows], labels[rows])
        self.series_ = tuple(self.archetypes_)
        networks = self.networks_.values()
        self.samples_seen_ = sum(n.samples_seen_ for n in networks)
        self.train_seconds_ = sum(n.train_seconds_ for n in networks)
        self.epochs_run_ = max(n.epochs_run_ for n in networks)
        self.best_epoch_ = max(n.best_epoch_ for n in networks)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _positions(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        if SERIES_COLUMN not in X.columns:
            raise ValueError(f"a pooled expert reads a '{SERIES_COLUMN}' column naming each row's series")
        return series_positions(X[SERIES_COLUMN].to_numpy())

    def _route(self, bars: pd.DataFrame) -> str:
        return series_archetype(bars, self.fallback_archetype, self.fingerprint_bars)

    def network_of(self, name: str, bars: pd.DataFrame) -> PooledKernelTrendExpert:
        """The network that answers series ``name`` (``bars``: its rows, routed when the series was not trained)."""
        archetype = self.archetypes_.get(name) or self._route(bars)
        if archetype in self.networks_:
            return self.networks_[archetype]
        most = max(self.networks_, key=lambda a: len(self.networks_[a].series_))
        return self.networks_[most]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities in the order down, neutral, up, each series' rows from its archetype's network."""
        proba = np.zeros((len(X), len(self.classes_)))
        for name, positions in self._positions(X).items():
            rows = X.iloc[positions]
            proba[positions] = self.network_of(name, rows).predict_proba(rows)
        return proba

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)

    def for_series(self, name: str) -> SeriesExpert:
        """The fitted networks as the expert of series ``name``: rows without a ``series`` column are that
        series'."""
        return SeriesExpert(self, name)
