"""Reading a stored book state back (issue 25's mutation pass of ``orchestration/state.py``'s reading side).

The live book step writes its state as JSON after every bar and reads it back on the next bar or after a crash.
Here a small book state built by hand (2 models x 3 symbols, so a models-for-symbols mix-up changes a shape) is
written with ``to_json`` and read back bit for bit, and then damaged one field at a time: each damaged document is
refused with a ``BookStateError`` whose whole message, written out here, names the field's path and the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from signal_engine.orchestration import OrchestrationConfig
from signal_engine.orchestration.regime import Regime
from signal_engine.orchestration.state import (
    BookState,
    BookStateError,
    CorrelationState,
    DefenderState,
    HoldingState,
    MomentsState,
    TrackerState,
    WindowState,
)
from signal_engine.orchestration.timeframes import TimeframeSpec

MODELS, SYMBOLS = ("short", "long"), ("A", "B", "C")
SPECS = (TimeframeSpec("short", 0, 5, 1, 5, 20), TimeframeSpec("long", 3, 60, 15, 60, 240))
CONFIG = OrchestrationConfig(
    timeframe_horizons=(1, 5, 20, 120), timeframes=("short", "long"), holding_discipline=True, no_trade_band=0.25,
    no_trade_band_cuts=True, conflict_strategy="hedge", max_asset_short_exposure=(("B", 0.5),),
    drawdown_lookback=0, cost_bps=7.5)
BIG = 2**53 + 1  # a whole number a float cannot hold: read as a float, it would come back as 2**53
TOP_FIELDS = ("schema_version, symbols, models, specs, config, periods_per_year, cost_bps, bar_time, bars, "
              "allocation, target, last_update, regime, scheduled, final, undefended, unmanaged, scores, "
              "pending_models, harmony, vol, pending_account, pending_undefended, pending_coordinated, tracker, "
              "correlation, defender, holding, active_limits")
NUMBER = 'a number (or "NaN", "Infinity", "-Infinity")'


def floats(shape: tuple[int, ...], offset: float) -> np.ndarray:
    """Distinct eighths from ``offset``: each field of the state holds other values, row-major order visible."""
    return (offset + np.arange(math.prod(shape)) / 8).reshape(shape)


def moments(offset: float) -> MomentsState:
    return MomentsState(weight=floats((2,), offset), first=floats((2,), offset + 1), second=floats((2,), offset + 2),
                        count=np.array([BIG, int(offset)], dtype=np.int64))


def full_state() -> BookState:
    """A book after 42 bars with every optional part filled, non-finite numbers, -0.0 and floats like 0.1."""
    scores = floats((2, 3), 10)
    scores[1, 1] = np.nan
    vol = np.array([0.1, np.inf, np.nan])
    losses = floats((2,), 30)
    losses[0] = -np.inf
    models_window = floats((3, 2), 40)  # 3 rows of 2 models: the next row overwrites row 2, all 3 filled
    assets_window = floats((4, 3), 50)
    assets_window[2:] = np.nan  # 4 rows of 3 symbols: 2 filled, the next row is row 0 again
    return BookState(
        symbols=SYMBOLS, models=MODELS, specs=SPECS, config=CONFIG, periods_per_year=252.0,
        cost_bps=(7.5, 0.1, 1 / 3), bar_time=pd.Timestamp("2024-03-01 16:00", tz="UTC"), bars=42,
        allocation=np.array([0.375, 0.625]), target=np.array([-0.0, 5e-324]), last_update=21,
        regime=Regime("range", "high", "thin"),
        scheduled=floats((2, 3), 1), final=floats((2, 3), 2), undefended=floats((2, 3), 3),
        unmanaged=floats((2, 3), 4), scores=scores, pending_models=floats((2, 3), 5),
        harmony=floats((3,), 6), vol=vol, pending_account=floats((3,), 7), pending_undefended=floats((3,), 8),
        pending_coordinated=floats((3,), 9),
        tracker=TrackerState(
            returns=moments(20), by_regime={"range/high": moments(23), "trend/low": moments(26)},
            gains=floats((2,), 29), losses=losses, wins=floats((2,), 31), active=floats((2,), 32),
            equity=floats((2,), 33), peak=floats((2,), 34), max_drawdown=floats((2,), 35), ic=floats((6, 2), 36)),
        correlation=CorrelationState(models=WindowState(models_window, next=2, filled=3),
                                     assets=WindowState(assets_window, next=0, filled=2)),
        defender=DefenderState(equity=0.875, peak=1.125, pushed=7, candidates=[(3, 1.125), (6, 0.96875)]),
        holding=HoldingState(direction=np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]), size=floats((2, 3), 60),
                             confidence=floats((2, 3), 61), age=np.array([[0, 1, 2], [3, 4, BIG]], dtype=np.int64)),
        active_limits=(("gross", "book", "short", "A"), ("asset", "symbol", "long", "B")),
        model_state={"short/A": {"sigma": "NaN", "updates": 3}},  # keys sorted, as written
    )


def empty_state() -> BookState:
    """A book before its first bar: no time, regime or update yet, empty windows, nothing optional."""
    zeros = np.zeros((2, 3))
    return dataclasses.replace(
        full_state(), bar_time=None, bars=0, last_update=None, regime=None,
        tracker=dataclasses.replace(full_state().tracker, by_regime={}),
        correlation=CorrelationState(models=WindowState(np.zeros((0, 2)), next=0, filled=0),
                                     assets=WindowState(np.zeros((0, 3)), next=0, filled=0)),
        defender=DefenderState(equity=1.0, peak=1.0, pushed=0, candidates=[]),
        holding=HoldingState(direction=zeros, size=zeros, confidence=zeros, age=np.zeros((2, 3), dtype=np.int64)),
        active_limits=(), model_state={})


def assert_identical(got: Any, want: Any, path: str = "state") -> None:
    """Equal to the bit and of the same types, all the way down (NaN equals NaN, -0.0 differs from 0.0)."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} for {type(want).__name__}"
    if isinstance(want, np.ndarray):
        assert (got.dtype, got.shape) == (want.dtype, want.shape), path
        assert got.tobytes() == want.tobytes(), f"{path}: {got} for {want}"
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{path}: {got!r} for {want!r}"
    elif isinstance(want, pd.Timestamp):
        assert got == want and got.utcoffset() == want.utcoffset(), f"{path}: {got!r} for {want!r}"
    elif dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            assert_identical(getattr(got, f.name), getattr(want, f.name), f"{path}.{f.name}")
    elif isinstance(want, dict):
        assert list(got) == list(want), path
        for key in want:
            assert_identical(got[key], want[key], f"{path}[{key!r}]")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_identical(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} for {want!r}"


@pytest.mark.parametrize("make", [full_state, empty_state], ids=["after 42 bars", "before the first bar"])
def test_a_state_reads_back_to_the_bit_and_writes_the_same_text(make: Callable[[], BookState]) -> None:
    state = make()
    text = state.to_json()
    back = BookState.from_json(text)
    assert_identical(back, state)
    assert back.to_json() == text


def test_a_naive_bar_time_stays_naive_and_an_offset_is_kept() -> None:
    for stamp in (pd.Timestamp("2024-03-01 16:00"), pd.Timestamp("2024-03-01 16:00+05:30")):
        back = BookState.from_json(dataclasses.replace(full_state(), bar_time=stamp).to_json())
        assert back.bar_time == stamp and back.bar_time.utcoffset() == stamp.utcoffset()
        assert (back.bar_time.tzinfo is None) is (stamp.tzinfo is None)


def test_whole_numbers_where_floats_are_stored_read_as_floats() -> None:
    document = json.loads(full_state().to_json())
    document.update(periods_per_year=252, cost_bps=[7, 0, -1])
    document["config"].update(cost_bps=8, no_trade_band=0)
    document["defender"].update(equity=1, peak=2, candidates=[[3, 1]])
    document["allocation"]["values"] = [0, 1]
    back = BookState.from_json(json.dumps(document))
    assert_identical(back.periods_per_year, 252.0)
    assert_identical(back.cost_bps, (7.0, 0.0, -1.0))
    assert_identical((back.config.cost_bps, back.config.no_trade_band), (8.0, 0.0))
    assert_identical(back.defender, DefenderState(equity=1.0, peak=2.0, pushed=7, candidates=[(3, 1.0)]))
    assert_identical(back.allocation, np.array([0.0, 1.0]))


def test_whole_numbers_read_to_the_ends_of_64_bits() -> None:
    document = json.loads(full_state().to_json())
    document["holding"]["age"]["values"] = [0, 1, 2, 3, -(2**63), 2**63 - 1]
    back = BookState.from_json(json.dumps(document))
    assert_identical(back.holding.age, np.array([[0, 1, 2], [3, -9223372036854775808, 9223372036854775807]]))


def test_a_window_may_be_empty_or_full_but_its_next_row_must_be_in_it() -> None:
    document = json.loads(empty_state().to_json())
    document["correlation"]["models"].update(next=1)
    with pytest.raises(BookStateError) as refused:
        BookState.from_json(json.dumps(document))
    assert str(refused.value) == ("book state: field 'correlation.models': next=1, filled=0 do not fit a window of "
                                  "0 rows")


def test_the_model_state_is_a_field_only_when_written() -> None:
    document = json.loads(empty_state().to_json())
    assert "model_state" not in document
    document.update(extra=1)
    with pytest.raises(BookStateError) as refused:
        BookState.from_json(json.dumps(document))
    assert str(refused.value) == (f"book state: field 'extra': unknown field (schema version 1 has {TOP_FIELDS})")


DROP = object()


def damaged(where: tuple[str | int, ...], value: Any) -> str:
    """The full state's JSON with the field at ``where`` set to ``value`` (or dropped with ``DROP``)."""
    document = json.loads(full_state().to_json())
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    if value is DROP:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return json.dumps(document)


def two_damages(first: tuple[tuple[str, ...], Any], second: tuple[tuple[str, ...], Any]) -> str:
    document = json.loads(damaged(*first))
    parent = document
    for key in second[0][:-1]:
        parent = parent[key]
    if second[1] is DROP:
        del parent[second[0][-1]]
    else:
        parent[second[0][-1]] = second[1]
    return json.dumps(document)


DAMAGES: list[tuple[str, str, str]] = [
    # (the document, as text; the message after "book state: field "; an id)
    ("[]", "'(document)': expected a JSON object, got list", "document"),
    (two_damages((("schema_version",), DROP), (("bars",), DROP)), "'schema_version': missing", "no version"),
    (damaged(("schema_version",), True), "'schema_version': unknown version True; this release reads 1", "version"),
    (damaged(("schema_version",), 2), "'schema_version': unknown version 2; this release reads 1", "version 2"),
    (damaged(("schema_version",), "1"), "'schema_version': unknown version '1'; this release reads 1", "version 1"),
    (damaged(("schema_version",), 1.0), "'schema_version': unknown version 1.0; this release reads 1",
     "version 1.0"),
    (two_damages((("target",), DROP), (("bars",), DROP)), "'bars': missing", "missing"),
    (two_damages((("zeta",), 1), (("alpha",), 1)),
     f"'alpha': unknown field (schema version 1 has {TOP_FIELDS}, model_state)", "unknown"),
    (damaged(("symbols",), ["A", "A", "C"]), "'symbols': expected distinct names, got ['A', 'A', 'C']", "symbols"),
    (damaged(("symbols",), []), "'symbols': expected distinct names, got []", "no symbols"),
    (damaged(("models", 1), 3), "'models[1]': expected a string, got 3", "model"),
    (damaged(("models",), "short"), "'models': expected a list, got str", "models"),
    (damaged(("specs",), [dataclasses.asdict(SPECS[0])]), "'specs': expected 2 entries, got 1", "specs"),
    (damaged(("specs", 1), 5), "'specs[1]': expected a JSON object, got int", "spec"),
    (damaged(("specs", 1, "name"), "short"), "'specs[1].name': expected 'long' (models[1]), got 'short'", "name"),
    (damaged(("specs", 0, "name"), 5), "'specs[0].name': expected a string, got 5", "spec name"),
    (damaged(("specs", 1, "rank"), -1), "'specs[1].rank': expected at least 0, got -1", "rank"),
    (damaged(("specs", 1, "max_holding"), 240.0), "'specs[1].max_holding': expected a whole number, got 240.0",
     "holding"),
    (damaged(("specs", 0, "horizon"), DROP), "'specs[0].horizon': missing", "horizon"),
    (damaged(("specs", 0, "extra"), 1), "'specs[0].extra': unknown field (schema version 1 has name, rank, horizon, "
     "min_holding, expected_holding, max_holding)", "spec field"),
    (damaged(("config",), []), "'config': expected a JSON object, got list", "config"),
    (damaged(("config", "cost_bps"), DROP), "'config.cost_bps': missing", "config missing"),
    (damaged(("config", "holding_discipline"), 1), "'config.holding_discipline': expected true or false, got 1",
     "flag"),
    (damaged(("config", "warmup_bars"), True), "'config.warmup_bars': expected a whole number, got True", "bool"),
    (damaged(("config", "warmup_bars"), 63.0), "'config.warmup_bars': expected a whole number, got 63.0", "int"),
    (damaged(("config", "cost_bps"), "7.5"), f"'config.cost_bps': expected {NUMBER}, got '7.5'", "float"),
    (damaged(("config", "conflict_strategy"), 1), "'config.conflict_strategy': expected a string, got 1", "str"),
    (damaged(("config", "max_asset_short_exposure"), "B"),
     "'config.max_asset_short_exposure': expected a list, got str", "limits"),
    (damaged(("config", "max_asset_short_exposure"), [["B", 0.5, 1]]),
     "'config.max_asset_short_exposure[0]': expected 2 entries, got 3", "pair"),
    (damaged(("config", "max_asset_short_exposure"), [["B", 0.5], [2, 0.5]]),
     "'config.max_asset_short_exposure[1][0]': expected a string, got 2", "pair symbol"),
    (damaged(("config", "max_asset_short_exposure"), [["B", 0.5], ["C", "half"]]),
     f"'config.max_asset_short_exposure[1][1]': expected {NUMBER}, got 'half'", "pair limit"),
    (damaged(("config", "timeframe_horizons"), "1,5,20,120"),
     "'config.timeframe_horizons': expected a list, got str", "horizons list"),
    (damaged(("config", "timeframes"), {"short": 1}), "'config.timeframes': expected a list, got dict",
     "timeframes list"),
    (damaged(("config", "timeframe_horizons"), [1, 5, 20.5, 120]),
     "'config.timeframe_horizons[2]': expected a whole number, got 20.5", "horizons"),
    (damaged(("config", "timeframes"), ["short", 2]), "'config.timeframes[1]': expected a string, got 2",
     "timeframes"),
    (damaged(("config", "min_allocation"), 0.75),
     "'config': orchestration: expected 'min_allocation' <= 'max_allocation'", "config check"),
    (damaged(("periods_per_year",), "252"), f"'periods_per_year': expected {NUMBER}, got '252'", "periods"),
    (damaged(("periods_per_year",), True), f"'periods_per_year': expected {NUMBER}, got True", "periods bool"),
    (damaged(("periods_per_year",), -(10**400)),
     "'periods_per_year': expected a number a float can hold, got a whole number of 401 digits", "periods huge"),
    (damaged(("periods_per_year",), "nan"), f"'periods_per_year': expected {NUMBER}, got 'nan'", "periods nan"),
    (damaged(("cost_bps",), [7.5, 0.1]), "'cost_bps': expected 3 entries, got 2", "costs"),
    (damaged(("cost_bps", 2), None), f"'cost_bps[2]': expected {NUMBER}, got None", "cost"),
    (damaged(("bar_time",), 5), "'bar_time': expected a string, got 5", "time"),
    (damaged(("bar_time",), "yesterday"), "'bar_time': expected an ISO 8601 time, got 'yesterday'", "not a time"),
    (damaged(("bar_time",), "NaT"), "'bar_time': expected an ISO 8601 time, got 'NaT'", "NaT"),
    (damaged(("bars",), -1), "'bars': expected at least 0, got -1", "bars"),
    (damaged(("bars",), True), "'bars': expected a whole number, got True", "bars bool"),
    (damaged(("allocation", "shape"), [3]), "'allocation': expected shape 2, got 3", "allocation"),
    (damaged(("target", "values"), [0.5, 0.5, 0.0]), "'target.values': expected 2 entries, got 3", "target"),
    (damaged(("last_update",), -1), "'last_update': expected at least 0, got -1", "update"),
    (damaged(("last_update",), "21"), "'last_update': expected a whole number, got '21'", "update str"),
    (damaged(("regime",), "range"), "'regime': expected a JSON object, got str", "regime"),
    (damaged(("regime", "liquidity"), DROP), "'regime.liquidity': missing", "regime missing"),
    (damaged(("regime", "trend"), "up"), "'regime.trend': expected one of trend, range, got 'up'", "trend"),
    (damaged(("regime", "volatility"), "extreme"),
     "'regime.volatility': expected one of low, medium, high, got 'extreme'", "volatility"),
    (damaged(("regime", "liquidity"), "thick"), "'regime.liquidity': expected one of normal, thin, got 'thick'",
     "liquidity"),
    (damaged(("final",), []), "'final': expected a JSON object, got list", "array"),
    (damaged(("final", "values"), DROP), "'final.values': missing", "no values"),
    (damaged(("final", "extra"), 1), "'final.extra': unknown field (schema version 1 has shape, values)",
     "array field"),
    (damaged(("final", "shape"), [3, 2]), "'final': expected shape 2x3, got 3x2", "transposed"),
    (damaged(("scores", "shape"), [6]), "'scores': expected shape 2x3, got 6", "flat"),
    (damaged(("scheduled", "shape"), []), "'scheduled': expected shape 2x3, got scalar", "scalar"),
    (damaged(("pending_models", "shape"), [2, 3.0]),
     "'pending_models.shape[1]': expected a whole number, got 3.0", "shape float"),
    (damaged(("unmanaged", "shape"), [-2, 3]), "'unmanaged.shape[0]': expected at least 0, got -2", "negative"),
    (damaged(("undefended", "shape"), 6), "'undefended.shape': expected a list, got int", "shape"),
    (damaged(("final", "values"), [0.0] * 5), "'final.values': expected 6 entries, got 5", "values"),
    (damaged(("final", "values", 4), "x"), f"'final.values[4]': expected {NUMBER}, got 'x'", "value"),
    (damaged(("vol", "shape"), [2]), "'vol': expected shape 3, got 2", "vector"),
    (damaged(("harmony", "values", 0), "nan"), f"'harmony.values[0]': expected {NUMBER}, got 'nan'", "nan"),
    (damaged(("tracker",), []), "'tracker': expected a JSON object, got list", "tracker"),
    (damaged(("tracker", "ic"), DROP), "'tracker.ic': missing", "no ic"),
    (damaged(("tracker", "extra"), 1), "'tracker.extra': unknown field (schema version 1 has returns, by_regime, "
     "gains, losses, wins, active, equity, peak, max_drawdown, ic)", "tracker field"),
    (damaged(("tracker", "returns"), []), "'tracker.returns': expected a JSON object, got list", "returns"),
    (damaged(("tracker", "returns", "second"), DROP), "'tracker.returns.second': missing", "moments"),
    (damaged(("tracker", "returns", "extra"), 1),
     "'tracker.returns.extra': unknown field (schema version 1 has weight, first, second, count)", "moments field"),
    (damaged(("tracker", "returns", "weight", "shape"), [3]), "'tracker.returns.weight': expected shape 2, got 3",
     "weight"),
    (damaged(("tracker", "returns", "count", "values", 1), 1.5),
     "'tracker.returns.count.values[1]': expected a whole number, got 1.5", "count"),
    (damaged(("tracker", "returns", "count", "values", 0), 2**63),
     "'tracker.returns.count.values[0]': expected a whole number that fits in 64 bits, got 9223372036854775808",
     "count too big"),
    (damaged(("holding", "age", "values", 0), -(2**63) - 1),
     "'holding.age.values[0]': expected a whole number that fits in 64 bits, got -9223372036854775809",
     "age too small"),
    (damaged(("tracker", "by_regime"), []), "'tracker.by_regime': expected a JSON object, got list", "by regime"),
    (damaged(("tracker", "by_regime", "range/high", "first", "shape"), [3]),
     "'tracker.by_regime.range/high.first': expected shape 2, got 3", "regime moments"),
    (damaged(("tracker", "wins", "shape"), [3]), "'tracker.wins': expected shape 2, got 3", "wins"),
    (damaged(("tracker", "ic", "shape"), [2, 6]), "'tracker.ic': expected shape 6x2, got 2x6", "ic"),
    (damaged(("correlation",), []), "'correlation': expected a JSON object, got list", "correlation"),
    (damaged(("correlation", "assets"), DROP), "'correlation.assets': missing", "no assets"),
    (damaged(("correlation", "models", "extra"), 1),
     "'correlation.models.extra': unknown field (schema version 1 has rows, next, filled)", "window field"),
    (damaged(("correlation", "models", "rows", "shape"), [3, 3]),
     "'correlation.models.rows': expected shape nx2, got 3x3", "models window"),
    (damaged(("correlation", "assets", "rows", "shape"), [4, 2]),
     "'correlation.assets.rows': expected shape nx3, got 4x2", "assets window"),
    (damaged(("correlation", "models", "rows"), {"shape": [2**63, 2], "values": []}),  # 2**64 rows x columns
     "'correlation.models.rows.values': expected 18446744073709551616 entries, got 0", "huge window"),
    (damaged(("correlation", "models", "rows"), {"shape": [2**62, 2], "values": []}),
     "'correlation.models.rows.values': expected 9223372036854775808 entries, got 0", "big window"),
    (damaged(("correlation", "models", "next"), 3),
     "'correlation.models': next=3, filled=3 do not fit a window of 3 rows", "next"),
    (damaged(("correlation", "assets", "filled"), 5),
     "'correlation.assets': next=0, filled=5 do not fit a window of 4 rows", "filled"),
    (damaged(("correlation", "models", "filled"), -1), "'correlation.models.filled': expected at least 0, got -1",
     "filled negative"),
    (damaged(("correlation", "models", "next"), -1), "'correlation.models.next': expected at least 0, got -1",
     "next negative"),
    (damaged(("correlation", "assets", "next"), 1.0), "'correlation.assets.next': expected a whole number, got 1.0",
     "next float"),
    (damaged(("defender",), []), "'defender': expected a JSON object, got list", "defender"),
    (damaged(("defender", "pushed"), DROP), "'defender.pushed': missing", "no pushed"),
    (damaged(("defender", "extra"), 1),
     "'defender.extra': unknown field (schema version 1 has equity, peak, pushed, candidates)", "defender field"),
    (damaged(("defender", "equity"), "high"), f"'defender.equity': expected {NUMBER}, got 'high'", "equity"),
    (damaged(("defender", "peak"), None), f"'defender.peak': expected {NUMBER}, got None", "peak"),
    (damaged(("defender", "pushed"), -1), "'defender.pushed': expected at least 0, got -1", "pushed"),
    (damaged(("defender", "candidates"), "x"), "'defender.candidates': expected a list, got str", "candidates"),
    (damaged(("defender", "candidates", 1), [6]), "'defender.candidates[1]': expected 2 entries, got 1",
     "candidate"),
    (damaged(("defender", "candidates", 1, 0), -1), "'defender.candidates[1][0]': expected at least 0, got -1",
     "candidate bar"),
    (damaged(("defender", "candidates", 1, 1), None), f"'defender.candidates[1][1]': expected {NUMBER}, got None",
     "candidate peak"),
    (damaged(("holding",), []), "'holding': expected a JSON object, got list", "holding"),
    (damaged(("holding", "age"), DROP), "'holding.age': missing", "no age"),
    (damaged(("holding", "extra"), 1),
     "'holding.extra': unknown field (schema version 1 has direction, size, confidence, age)", "holding field"),
    (damaged(("holding", "size", "shape"), [3, 2]), "'holding.size': expected shape 2x3, got 3x2", "size"),
    (damaged(("holding", "age", "values", 5), 1.5), "'holding.age.values[5]': expected a whole number, got 1.5",
     "age"),
    (damaged(("active_limits",), "gross"), "'active_limits': expected a list, got str", "limits list"),
    (damaged(("active_limits", 1), ["asset", "symbol", "long"]), "'active_limits[1]': expected 4 entries, got 3",
     "limit"),
    (damaged(("active_limits", 1, 2), 1), "'active_limits[1][2]': expected a string, got 1", "limit name"),
    (damaged(("model_state",), [1]), "'model_state': expected a JSON object, got list", "model state"),
]


@pytest.mark.parametrize(("text", "message"), [case[:2] for case in DAMAGES], ids=[case[2] for case in DAMAGES])
def test_a_damaged_state_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(BookStateError) as refused:
        BookState.from_json(text)
    assert str(refused.value) == f"book state: field {message}"
