"""The book's state between two bars: everything path-dependent the orchestrator carries, as plain data.

``BookState`` is what ``step`` reads and returns (``signal_engine.orchestration.step``). It holds the held
positions (each model's contribution, the book without the defender, before the risk manager and each
model on its own), the trades still to be paid for, the capital allocation and when it was last updated,
the market regime, the performance tracker's weighted sums, the correlation windows, the drawdown
defender's equity and peaks, the holding clocks and which risk limits are binding. The settings it was
built with (symbols, models and their timeframes, the ``OrchestrationConfig``, bars per year and costs)
are recorded too, so a step with other settings is refused instead of silently mixing two books.

``to_json``/``from_json`` round-trip exactly: floats are written with ``repr`` precision, NaN and
infinities as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, arrays as ``{"shape", "values"}``
(row-major). Reading checks every field (name, type, shape) and the ``schema_version``, and a bad one is a
``BookStateError`` that names the field. ``docs/book-state.md`` describes each field.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from signal_engine.errors import SignalEngineError
from signal_engine.json_values import NON_FINITE as _NON_FINITE
from signal_engine.json_values import json_number, number_from_json  # noqa: F401  (re-exported)
from signal_engine.orchestration.config import OrchestrationConfig
from signal_engine.orchestration.regime import Regime
from signal_engine.orchestration.timeframes import TimeframeSpec

SCHEMA_VERSION = 1
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
T = TypeVar("T")


class BookStateError(SignalEngineError):
    """A book state that cannot be read, or that does not fit the inputs or settings it is used with."""


@dataclass
class MomentsState:
    """Exponentially weighted sums of one set of returns per model (``performance.EWMoments``)."""

    weight: np.ndarray
    first: np.ndarray
    second: np.ndarray
    count: np.ndarray  # int64


@dataclass
class TrackerState:
    """The performance tracker's sums per model (``performance.PerformanceTracker``)."""

    returns: MomentsState
    by_regime: dict[str, MomentsState]
    gains: np.ndarray
    losses: np.ndarray
    wins: np.ndarray
    active: np.ndarray
    equity: np.ndarray
    peak: np.ndarray
    max_drawdown: np.ndarray
    ic: np.ndarray  # 6 x models: weight, sum x, sum y, sum xx, sum yy, sum xy


@dataclass
class WindowState:
    """A rolling window's ring buffer: ``rows`` (length x width), the next slot and how many are filled."""

    rows: np.ndarray
    next: int
    filled: int


@dataclass
class CorrelationState:
    """The correlation analyser's windows of model returns and asset returns."""

    models: WindowState
    assets: WindowState


@dataclass
class DefenderState:
    """The drawdown defender's equity, peak, and its rolling maximum (bars pushed, candidate peaks)."""

    equity: float
    peak: float
    pushed: int
    candidates: list[tuple[int, float]]


@dataclass
class HoldingState:
    """The holding discipline's clocks per model and symbol: direction held, for how many bars, last size."""

    direction: np.ndarray
    size: np.ndarray
    confidence: np.ndarray
    age: np.ndarray  # int64


@dataclass
class BookState:
    """The orchestrated book after ``bars`` steps, the last one at ``bar_time`` (None before the first).

    Arrays are models x symbols (``m x s``), per symbol (``s``) or per model (``m``), in the order of
    ``models`` and ``symbols``.
    """

    symbols: tuple[str, ...]
    models: tuple[str, ...]
    specs: tuple[TimeframeSpec, ...]
    config: OrchestrationConfig
    periods_per_year: float
    cost_bps: tuple[float, ...]
    bar_time: pd.Timestamp | None
    bars: int
    allocation: np.ndarray
    target: np.ndarray
    last_update: int | None
    regime: Regime | None
    scheduled: np.ndarray
    final: np.ndarray
    undefended: np.ndarray
    unmanaged: np.ndarray
    scores: np.ndarray
    pending_models: np.ndarray
    harmony: np.ndarray
    vol: np.ndarray
    pending_account: np.ndarray
    pending_undefended: np.ndarray
    pending_coordinated: np.ndarray
    tracker: TrackerState
    correlation: CorrelationState
    defender: DefenderState
    holding: HoldingState
    active_limits: tuple[tuple[str, str, str, str], ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)
    model_state: dict[str, Any] = field(default_factory=dict)

    @property
    def positions(self) -> np.ndarray:
        """The book's position per symbol (fraction of capital), held from ``bar_time``'s close."""
        return np.asarray(self.final.sum(axis=0))

    def copy(self) -> BookState:
        """A deep copy: every array and list is copied (the settings, specs and regime are immutable)."""
        t, c, d, h = self.tracker, self.correlation, self.defender, self.holding
        return dataclasses.replace(
            self,
            allocation=self.allocation.copy(), target=self.target.copy(),
            **{name: getattr(self, name).copy() for name in _BOOK_MATRICES + _BOOK_VECTORS},
            tracker=TrackerState(
                returns=_copy_moments(t.returns), by_regime={k: _copy_moments(m) for k, m in t.by_regime.items()},
                **{name: getattr(t, name).copy() for name in _TRACKER_VECTORS}, ic=t.ic.copy()),
            correlation=CorrelationState(models=_copy_window(c.models), assets=_copy_window(c.assets)),
            defender=DefenderState(equity=d.equity, peak=d.peak, pushed=d.pushed, candidates=list(d.candidates)),
            holding=HoldingState(direction=h.direction.copy(), size=h.size.copy(), confidence=h.confidence.copy(),
                                 age=h.age.copy()),
            model_state=copy.deepcopy(self.model_state),
        )

    def to_json(self) -> str:
        """The state as one JSON document (keys sorted, no NaN tokens: see the module docstring)."""
        return json.dumps(_encode_state(self), sort_keys=True, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> BookState:
        """Read a state written by ``to_json``; a bad document is a ``BookStateError`` naming the field."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BookStateError(f"book state: not JSON ({exc})") from None
        return _decode_state(data)

    def check_settings(self, config: OrchestrationConfig, periods_per_year: float, cost_bps: Sequence[float]) -> None:
        """Refuse settings other than those the book was built with (a ``BookStateError`` naming the first)."""
        if config != self.config:
            ours, theirs = _config_dict(self.config), _config_dict(config)
            name = next(k for k in ours if ours[k] != theirs[k])
            raise BookStateError(f"book state: built with config.{name}={ours[name]!r}, given {theirs[name]!r}; a "
                                 "book keeps its settings (start a new book to change them)")
        if float(periods_per_year) != self.periods_per_year:
            raise BookStateError(f"book state: built for periods_per_year={self.periods_per_year!r}, given "
                                 f"{periods_per_year!r}")
        given = tuple(float(c) for c in cost_bps)
        if given != self.cost_bps:
            ours = dict(zip(self.symbols, self.cost_bps, strict=True))
            raise BookStateError(f"book state: built with cost_bps={ours}, given "
                                 f"{dict(zip(self.symbols, given, strict=True))}")


def _copy_moments(m: MomentsState) -> MomentsState:
    return MomentsState(weight=m.weight.copy(), first=m.first.copy(), second=m.second.copy(), count=m.count.copy())


def _copy_window(w: WindowState) -> WindowState:
    return WindowState(rows=w.rows.copy(), next=w.next, filled=w.filled)


# -- encoding --------------------------------------------------------------------------------------------


def _array(a: np.ndarray) -> dict[str, Any]:
    values = np.asarray(a)
    flat = values.ravel().tolist()
    if values.dtype.kind == "f":
        flat = [json_number(v) for v in flat]
    return {"shape": list(values.shape), "values": flat}


def _config_dict(config: OrchestrationConfig) -> dict[str, Any]:
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return json_number(value)
    return value


def _moments(m: MomentsState) -> dict[str, Any]:
    return {"weight": _array(m.weight), "first": _array(m.first), "second": _array(m.second),
            "count": _array(m.count)}


def _window(w: WindowState) -> dict[str, Any]:
    return {"rows": _array(w.rows), "next": w.next, "filled": w.filled}


def _encode_state(state: BookState) -> dict[str, Any]:
    t = state.tracker
    return {
        "schema_version": state.schema_version,
        "symbols": list(state.symbols),
        "models": list(state.models),
        "specs": [dataclasses.asdict(spec) for spec in state.specs],
        "config": _config_dict(state.config),
        "periods_per_year": json_number(state.periods_per_year),
        "cost_bps": [json_number(c) for c in state.cost_bps],
        "bar_time": None if state.bar_time is None else state.bar_time.isoformat(),
        "bars": state.bars,
        "allocation": _array(state.allocation),
        "target": _array(state.target),
        "last_update": state.last_update,
        "regime": None if state.regime is None else dataclasses.asdict(state.regime),
        **{name: _array(getattr(state, name)) for name in _BOOK_MATRICES + _BOOK_VECTORS},
        "tracker": {
            "returns": _moments(t.returns),
            "by_regime": {key: _moments(m) for key, m in t.by_regime.items()},
            **{name: _array(getattr(t, name)) for name in _TRACKER_VECTORS},
            "ic": _array(t.ic),
        },
        "correlation": {"models": _window(state.correlation.models), "assets": _window(state.correlation.assets)},
        "defender": {"equity": json_number(state.defender.equity), "peak": json_number(state.defender.peak),
                     "pushed": state.defender.pushed,
                     "candidates": [[i, json_number(v)] for i, v in state.defender.candidates]},
        "holding": {name: _array(getattr(state.holding, name)) for name in ("direction", "size", "confidence", "age")},
        "active_limits": [list(key) for key in state.active_limits],
        **({"model_state": state.model_state} if state.model_state else {}),
    }


_BOOK_MATRICES: tuple[str, ...] = ("scheduled", "final", "undefended", "unmanaged", "scores", "pending_models")
_BOOK_VECTORS: tuple[str, ...] = ("harmony", "vol", "pending_account", "pending_undefended", "pending_coordinated")
_TRACKER_VECTORS: tuple[str, ...] = ("gains", "losses", "wins", "active", "equity", "peak", "max_drawdown")
_TOP_FIELDS: tuple[str, ...] = (
    "schema_version", "symbols", "models", "specs", "config", "periods_per_year", "cost_bps", "bar_time", "bars",
    "allocation", "target", "last_update", "regime", *_BOOK_MATRICES, *_BOOK_VECTORS, "tracker", "correlation",
    "defender", "holding", "active_limits",
)


# -- decoding --------------------------------------------------------------------------------------------


def _fail(path: str, problem: str) -> BookStateError:
    return BookStateError(f"book state: field '{path}': {problem}")


def _object(data: Any, path: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(path or "(document)", f"expected a JSON object, got {type(data).__name__}")
    if keys is not None:
        missing = [k for k in keys if k not in data]
        if missing:
            raise _fail(_join(path, missing[0]), "missing")
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise _fail(_join(path, unknown[0]), f"unknown field (schema version {SCHEMA_VERSION} has "
                                                 f"{', '.join(keys)})")
    return data


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(path, f"expected at least {minimum}, got {value}")
    return value


def _float(value: Any, path: str) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, f"expected a number (or \"NaN\", \"Infinity\", \"-Infinity\"), got {value!r}")
    try:
        return float(value)
    except OverflowError:  # a whole number of more than about 309 digits
        raise _fail(path, f"expected a number a float can hold, got a whole number of {len(str(abs(value)))} "
                          "digits") from None


def _int64(value: Any, path: str) -> int:
    number = _int(value, path)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _fail(path, f"expected a whole number that fits in 64 bits, got {number}")
    return number


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {value!r}")
    return value


def _list(value: Any, path: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise _fail(path, f"expected {length} entries, got {len(value)}")
    return value


def _ndarray(value: Any, path: str, shape: tuple[int | None, ...], dtype: type) -> np.ndarray:
    data = _object(value, path, ("shape", "values"))
    got = tuple(_int(n, f"{path}.shape[{i}]", 0) for i, n in enumerate(_list(data["shape"], f"{path}.shape")))
    if len(got) != len(shape) or any(want is not None and want != n for want, n in zip(shape, got, strict=False)):
        expected = "x".join("n" if n is None else str(n) for n in shape)
        raise _fail(path, f"expected shape {expected}, got {'x'.join(map(str, got)) or 'scalar'}")
    flat = _list(data["values"], f"{path}.values", math.prod(got))  # Python's ints: a huge shape cannot wrap
    read: Callable[[Any, str], Any] = _float if dtype is float else _int64
    values = [read(v, f"{path}.values[{i}]") for i, v in enumerate(flat)]
    return np.array(values, dtype=np.float64 if dtype is float else np.int64).reshape(got)


def _names(value: Any, path: str) -> tuple[str, ...]:
    names = tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path)))
    if not names or len(set(names)) != len(names):
        raise _fail(path, f"expected distinct names, got {list(names)}")
    return names


def _optional(value: Any, read: Callable[[Any], T]) -> T | None:
    return None if value is None else read(value)


def _spec(value: Any, path: str) -> TimeframeSpec:
    names = [f.name for f in dataclasses.fields(TimeframeSpec)]
    data = _object(value, path, names)
    return TimeframeSpec(name=_str(data["name"], f"{path}.name"),
                         **{n: _int(data[n], f"{path}.{n}", 0) for n in names if n != "name"})


def _config(value: Any, path: str) -> OrchestrationConfig:
    names = [f.name for f in dataclasses.fields(OrchestrationConfig)]
    data = _object(value, path, names)
    defaults = OrchestrationConfig()
    values: dict[str, Any] = {}
    for name in names:
        default, raw = getattr(defaults, name), data[name]
        where = f"{path}.{name}"
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise _fail(where, f"expected true or false, got {raw!r}")
            values[name] = raw
        elif isinstance(default, int):
            values[name] = _int(raw, where)
        elif isinstance(default, float):
            values[name] = _float(raw, where)
        elif isinstance(default, str):
            values[name] = _str(raw, where)
        elif name == "max_asset_short_exposure":
            pairs = [_list(p, f"{where}[{i}]", 2) for i, p in enumerate(_list(raw, where))]
            values[name] = tuple((_str(s, f"{where}[{i}][0]"), _float(v, f"{where}[{i}][1]"))
                                 for i, (s, v) in enumerate(pairs))
        elif name == "timeframe_horizons":
            values[name] = tuple(_int(v, f"{where}[{i}]") for i, v in enumerate(_list(raw, where)))
        else:
            values[name] = tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(raw, where)))
    try:
        return OrchestrationConfig(**values)
    except SignalEngineError as exc:
        raise _fail(path, str(exc)) from None


def _regime(value: Any, path: str) -> Regime:
    data = _object(value, path, ("trend", "volatility", "liquidity"))
    allowed = {"trend": ("trend", "range"), "volatility": ("low", "medium", "high"), "liquidity": ("normal", "thin")}
    for name, options in allowed.items():
        if data[name] not in options:
            raise _fail(f"{path}.{name}", f"expected one of {', '.join(options)}, got {data[name]!r}")
    return Regime(trend=data["trend"], volatility=data["volatility"], liquidity=data["liquidity"])


def _timestamp(value: Any, path: str) -> pd.Timestamp:
    text = _str(value, path)
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise _fail(path, f"expected an ISO 8601 time, got {text!r}") from None
    if stamp is pd.NaT:
        raise _fail(path, f"expected an ISO 8601 time, got {text!r}")
    return stamp


def _read_moments(value: Any, path: str, m: int) -> MomentsState:
    data = _object(value, path, ("weight", "first", "second", "count"))
    weight, first, second = (_ndarray(data[n], f"{path}.{n}", (m,), float) for n in ("weight", "first", "second"))
    return MomentsState(weight=weight, first=first, second=second,
                        count=_ndarray(data["count"], f"{path}.count", (m,), int))


def _read_window(value: Any, path: str, width: int) -> WindowState:
    data = _object(value, path, ("rows", "next", "filled"))
    rows = _ndarray(data["rows"], f"{path}.rows", (None, width), float)
    length = rows.shape[0]
    filled = _int(data["filled"], f"{path}.filled", 0)
    position = _int(data["next"], f"{path}.next", 0)
    if filled > length or position >= max(length, 1):
        raise _fail(path, f"next={position}, filled={filled} do not fit a window of {length} rows")
    return WindowState(rows=rows, next=position, filled=filled)


def _decode_state(document: Any) -> BookState:
    top = _object(document, "")
    if "schema_version" not in top:
        raise _fail("schema_version", "missing")
    version = top["schema_version"]
    if version not in SUPPORTED_VERSIONS or type(version) is not int:
        raise _fail("schema_version", f"unknown version {version!r}; this release reads "
                                      f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    data = _object(top, "", _TOP_FIELDS + (("model_state",) if "model_state" in top else ()))
    symbols, models = _names(data["symbols"], "symbols"), _names(data["models"], "models")
    s, m = len(symbols), len(models)
    specs = tuple(_spec(v, f"specs[{i}]") for i, v in enumerate(_list(data["specs"], "specs", m)))
    for i, (spec, name) in enumerate(zip(specs, models, strict=True)):
        if spec.name != name:
            raise _fail(f"specs[{i}].name", f"expected {name!r} (models[{i}]), got {spec.name!r}")
    tracker = _object(data["tracker"], "tracker", ("returns", "by_regime", *_TRACKER_VECTORS, "ic"))
    by_regime = _object(tracker["by_regime"], "tracker.by_regime")
    correlation = _object(data["correlation"], "correlation", ("models", "assets"))
    defender = _object(data["defender"], "defender", ("equity", "peak", "pushed", "candidates"))
    holding = _object(data["holding"], "holding", ("direction", "size", "confidence", "age"))
    candidates = [_list(c, f"defender.candidates[{i}]", 2)
                  for i, c in enumerate(_list(defender["candidates"], "defender.candidates"))]
    limits = [tuple(_str(v, f"active_limits[{i}][{j}]") for j, v in enumerate(_list(key, f"active_limits[{i}]", 4)))
              for i, key in enumerate(_list(data["active_limits"], "active_limits"))]
    return BookState(
        schema_version=version,
        symbols=symbols,
        models=models,
        specs=specs,
        config=_config(data["config"], "config"),
        periods_per_year=_float(data["periods_per_year"], "periods_per_year"),
        cost_bps=tuple(_float(v, f"cost_bps[{i}]") for i, v in enumerate(_list(data["cost_bps"], "cost_bps", s))),
        bar_time=_optional(data["bar_time"], lambda v: _timestamp(v, "bar_time")),
        bars=_int(data["bars"], "bars", 0),
        allocation=_ndarray(data["allocation"], "allocation", (m,), float),
        target=_ndarray(data["target"], "target", (m,), float),
        last_update=_optional(data["last_update"], lambda v: _int(v, "last_update", 0)),
        regime=_optional(data["regime"], lambda v: _regime(v, "regime")),
        **{name: _ndarray(data[name], name, (m, s), float) for name in _BOOK_MATRICES},
        **{name: _ndarray(data[name], name, (s,), float) for name in _BOOK_VECTORS},
        tracker=TrackerState(
            returns=_read_moments(tracker["returns"], "tracker.returns", m),
            by_regime={_str(k, "tracker.by_regime"): _read_moments(v, f"tracker.by_regime.{k}", m)
                       for k, v in by_regime.items()},
            **{name: _ndarray(tracker[name], f"tracker.{name}", (m,), float) for name in _TRACKER_VECTORS},
            ic=_ndarray(tracker["ic"], "tracker.ic", (6, m), float),
        ),
        correlation=CorrelationState(models=_read_window(correlation["models"], "correlation.models", m),
                                     assets=_read_window(correlation["assets"], "correlation.assets", s)),
        defender=DefenderState(
            equity=_float(defender["equity"], "defender.equity"), peak=_float(defender["peak"], "defender.peak"),
            pushed=_int(defender["pushed"], "defender.pushed", 0),
            candidates=[(_int(i, f"defender.candidates[{k}][0]", 0), _float(v, f"defender.candidates[{k}][1]"))
                        for k, (i, v) in enumerate(candidates)],
        ),
        holding=HoldingState(
            **{n: _ndarray(holding[n], f"holding.{n}", (m, s), float) for n in ("direction", "size", "confidence")},
            age=_ndarray(holding["age"], "holding.age", (m, s), int),
        ),
        active_limits=tuple(cast(tuple[str, str, str, str], key) for key in limits),
        model_state=dict(_object(data["model_state"], "model_state")) if "model_state" in data else {},
    )


def resolved_costs(symbols: Sequence[str], config: OrchestrationConfig,
                   cost_bps: Mapping[str, float] | None) -> tuple[float, ...]:
    """Cost in basis points per symbol: ``cost_bps[symbol]``, else ``config.cost_bps``."""
    given = cost_bps or {}
    return tuple(float(given.get(symbol, config.cost_bps)) for symbol in symbols)


def config_to_json(config: OrchestrationConfig) -> dict[str, Any]:
    """An orchestration config as the JSON object a book state and a whole-book bundle store."""
    return _config_dict(config)


def config_from_json(value: Any, where: str = "config") -> OrchestrationConfig:
    """The orchestration config of :func:`config_to_json`'s object; ``BookStateError`` names a bad field."""
    return _config(value, where)


def spec_from_json(value: Any, where: str = "spec") -> TimeframeSpec:
    """A timeframe spec from its JSON object (``dataclasses.asdict``); ``BookStateError`` names a bad field."""
    return _spec(value, where)
