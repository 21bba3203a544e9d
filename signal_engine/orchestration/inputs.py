"""The orchestrator's inputs on one timeline: signal streams as models, closes as returns and regime features.

The timeline is the union of the symbols' bar timestamps from the first signal on. A symbol without a bar
at a timestamp has no return, no features and no new signal there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.orchestration.adapter import PrecomputedTimeframeModel, TimeframeModel
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.regime import REGIME_FEATURES, regime_features
from signal_engine.orchestration.timeframes import TimeframeSpec, timeframe_specs

SignalInput = pd.DataFrame | TimeframeModel
Signals = Mapping[str, Mapping[str, SignalInput]]


@dataclass(frozen=True)
class Inputs:
    """Aligned inputs: ``streams[s][m]`` is symbol s's model m (None if that symbol lacks it)."""

    symbols: tuple[str, ...]
    models: tuple[str, ...]
    specs: tuple[TimeframeSpec, ...]
    streams: tuple[tuple[TimeframeModel | None, ...], ...]
    timeline: pd.DatetimeIndex
    has_bar: np.ndarray
    asset_returns: np.ndarray
    features: np.ndarray

    @property
    def rank(self) -> np.ndarray:
        return np.array([s.rank for s in self.specs])

    @property
    def expected_holding(self) -> np.ndarray:
        return np.array([s.expected_holding for s in self.specs])

    @property
    def min_holding(self) -> np.ndarray:
        return np.array([s.min_holding for s in self.specs])


def prepare(
    signals: Signals,
    closes: Mapping[str, pd.Series],
    config: OrchestrationConfig,
    volumes: Mapping[str, pd.Series] | None = None,
) -> Inputs:
    """Check the inputs and put them on one timeline."""
    if not signals:
        raise SignalEngineError("orchestrate: no signals given; expected {symbol: {model: signal frame}}")
    symbols = tuple(signals)
    prices = {s: _close_series(s, closes) for s in symbols}
    models_by_symbol = {s: _models_of(s, signals[s], config) for s in symbols}
    specs = _ordered_specs(models_by_symbol)
    models = tuple(spec.name for spec in specs)
    start = _first_signal(signals, prices)
    timeline = _timeline(prices, start)
    has_bar = np.column_stack([timeline.isin(prices[s].index) for s in symbols])
    asset_returns = np.column_stack([prices[s].pct_change().reindex(timeline).to_numpy() for s in symbols])
    features = np.stack([
        regime_features(prices[s], config, _volume(volumes, s)).reindex(timeline).loc[:, list(REGIME_FEATURES)]
        .to_numpy() for s in symbols
    ], axis=1)
    streams = tuple(tuple(models_by_symbol[s].get(m) for m in models) for s in symbols)
    return Inputs(symbols=symbols, models=models, specs=specs, streams=streams, timeline=timeline,
                  has_bar=has_bar, asset_returns=np.where(has_bar, asset_returns, np.nan), features=features)


def _close_series(symbol: str, closes: Mapping[str, pd.Series]) -> pd.Series:
    if symbol not in closes:
        raise SignalEngineError(f"orchestrate: no closes for symbol '{symbol}'; expected closes[{symbol!r}]")
    close = closes[symbol]
    if not isinstance(close.index, pd.DatetimeIndex):
        raise SignalEngineError(f"orchestrate: closes of '{symbol}' must be indexed by bar timestamp")
    if not close.index.is_monotonic_increasing or not close.index.is_unique:
        raise SignalEngineError(f"orchestrate: closes of '{symbol}' must have strictly increasing timestamps")
    values = close.to_numpy(dtype=float)
    if not np.all(np.isfinite(values) & (values > 0)):
        raise SignalEngineError(f"orchestrate: closes of '{symbol}' must be positive numbers")
    return pd.Series(values, index=close.index.as_unit("ns"), name=symbol)


def _volume(volumes: Mapping[str, pd.Series] | None, symbol: str) -> pd.Series | None:
    if volumes is None or symbol not in volumes:
        return None
    volume = volumes[symbol]
    return pd.Series(volume.to_numpy(dtype=float), index=pd.DatetimeIndex(volume.index).as_unit("ns"))


def _models_of(symbol: str, streams: Mapping[str, SignalInput], config: OrchestrationConfig) -> dict[
        str, TimeframeModel]:
    specs = timeframe_specs(config)
    models: dict[str, TimeframeModel] = {}
    for name, stream in streams.items():
        if isinstance(stream, pd.DataFrame):
            if name not in specs:
                raise SignalEngineError(f"orchestrate: unknown timeframe model '{name}' for '{symbol}'; expected "
                                        f"one of {', '.join(specs)} (or a TimeframeModel carrying its own spec)")
            models[name] = PrecomputedTimeframeModel(stream, spec=specs[name], symbol=symbol)
        elif stream.spec.name != name:
            raise SignalEngineError(f"orchestrate: model given as '{name}' for '{symbol}' calls itself "
                                    f"'{stream.spec.name}'")
        else:
            models[name] = stream
    return models


def _ordered_specs(models_by_symbol: Mapping[str, Mapping[str, TimeframeModel]]) -> tuple[TimeframeSpec, ...]:
    specs: dict[str, TimeframeSpec] = {}
    for models in models_by_symbol.values():
        for name, model in models.items():
            if specs.setdefault(name, model.spec) != model.spec:
                raise SignalEngineError(f"orchestrate: model '{name}' has different timeframes across symbols")
    if not specs:
        raise SignalEngineError("orchestrate: no timeframe models given")
    return tuple(sorted(specs.values(), key=lambda s: (s.rank, s.name)))


def _first_signal(signals: Signals, prices: Mapping[str, pd.Series]) -> pd.Timestamp:
    firsts = [stream.index[0] for streams in signals.values() for stream in streams.values()
              if isinstance(stream, pd.DataFrame) and len(stream)]
    if firsts:
        return pd.Timestamp(min(firsts)).as_unit("ns")
    return min(p.index[0] for p in prices.values())


def _timeline(prices: Mapping[str, pd.Series], start: pd.Timestamp) -> pd.DatetimeIndex:
    stamps = np.unique(np.concatenate([pd.DatetimeIndex(p.index).asi8 for p in prices.values()]))
    union = pd.DatetimeIndex(stamps.astype("datetime64[ns]"))
    timeline = union[union >= start]
    if len(timeline) == 0:
        raise SignalEngineError("orchestrate: no closes at or after the first signal")
    return timeline.rename("timestamp")
