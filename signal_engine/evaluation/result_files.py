"""A symbol's walk-forward results and bars as plain files (CSV + JSON), read back to the same values.

The batches of a fanned-out backtest (``signal_engine.fanout``) write each symbol's ``SymbolResult`` and bars
with ``write_result`` and ``write_series``; the merge reads them back with ``read_result`` and ``read_series``.
No object is pickled. Every table is a CSV whose column and index types are recorded in JSON beside it, and
whose floats are written as Python's ``repr`` (the shortest text that reads back to the same float); every
dictionary is JSON as Python's ``json`` module writes it (``NaN`` and ``Infinity`` literals included), so a
value read back is the value written, bit for bit. Layout: docs/files.md#backtest-batch-folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SymbolResult

RESULT_TABLES = ("signals", "explanations", "returns")
REALISED_VOL = "realised_vol"
RESULT_FILE = "result.json"
SERIES_FILE = "series.json"


class ResultFileError(ValueError):
    """A value the files cannot hold exactly, or files that do not hold what their JSON says."""


def write_result(result: SymbolResult, folder: Path) -> None:
    """``result`` as ``folder/result.json`` (its dictionaries and the tables' types) and one CSV per table."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {name: getattr(result, name) for name in RESULT_TABLES}
    tables[REALISED_VOL] = result.realised_vol.to_frame()
    document = {
        "symbol": result.symbol,
        "data": exact_json(result.data),
        "metrics": exact_json(result.metrics),
        "diagnostics": exact_json(result.diagnostics),
        "experts": exact_json(result.experts),
        "realised_vol_name": result.realised_vol.name,
        "tables": {name: write_table(frame, folder / f"{name}.csv") for name, frame in tables.items()},
    }
    (folder / RESULT_FILE).write_text(dump_json(document))


def read_result(folder: Path) -> SymbolResult:
    """The ``SymbolResult`` that ``write_result`` wrote into ``folder``."""
    document = json.loads((folder / RESULT_FILE).read_text())
    tables = {name: read_table(folder / f"{name}.csv", schema) for name, schema in document["tables"].items()}
    realised = tables[REALISED_VOL].iloc[:, 0].rename(document["realised_vol_name"])
    return SymbolResult(
        symbol=document["symbol"], data=document["data"], signals=tables["signals"], metrics=document["metrics"],
        returns=tables["returns"], realised_vol=realised, diagnostics=document["diagnostics"],
        experts=document["experts"], explanations=tables["explanations"],
    )


def write_series(series: PriceSeries, folder: Path) -> None:
    """The bars of ``series`` as ``folder/bars.csv``, its symbol, source and the bars' types as ``series.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"symbol": series.symbol, "source": series.source,
                "bars": write_table(series.bars, folder / "bars.csv")}
    (folder / SERIES_FILE).write_text(dump_json(document))


def read_series(folder: Path) -> PriceSeries:
    """The ``PriceSeries`` that ``write_series`` wrote into ``folder``."""
    document = json.loads((folder / SERIES_FILE).read_text())
    return PriceSeries(symbol=document["symbol"], source=document["source"],
                       bars=read_table(folder / "bars.csv", document["bars"]))


def write_table(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    """Write ``frame`` as CSV; return its schema (column and index names and types) for ``read_table``."""
    kinds = [_kind(frame[name], f"{path.name}: column {name!r}") for name in frame.columns]
    text = pd.DataFrame({name: _as_text(frame[name], kind) for name, kind in zip(frame.columns, kinds, strict=True)})
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None:
        index_schema: dict[str, Any] = {"kind": "range"}
        text.index = pd.RangeIndex(len(frame))
    elif isinstance(index, pd.DatetimeIndex):
        index_schema = {"kind": "datetime", "name": index.name, "unit": index.unit,
                        "tz": None if index.tz is None else str(index.tz)}
        text.index = pd.Index([t.isoformat() for t in index], dtype=object, name=index.name)
        if not _timestamps(text.index, index_schema).equals(index):
            raise ResultFileError(f"{path.name}: its timestamps do not read back as themselves")
    else:
        raise ResultFileError(f"{path.name}: index {type(index).__name__} cannot be written; expected a range from 0 "
                              "or timestamps")
    text.to_csv(path, index=index_schema["kind"] == "datetime", lineterminator="\n")
    columns = [[str(name), kind] for name, kind in zip(frame.columns, kinds, strict=True)]
    return {"columns": columns, "index": index_schema, "rows": len(frame)}


def read_table(path: Path, schema: dict[str, Any]) -> pd.DataFrame:
    """The frame ``write_table`` wrote at ``path`` with ``schema``."""
    index = schema["index"]
    timestamps = index["kind"] == "datetime"
    raw = pd.read_csv(path, dtype=object, keep_default_na=False, na_filter=False, index_col=0 if timestamps else None)
    names = [name for name, _ in schema["columns"]]
    if list(raw.columns) != names or len(raw) != schema["rows"]:
        raise ResultFileError(f"{path}: holds columns {list(raw.columns)} and {len(raw)} rows; its schema says "
                              f"{names} and {schema['rows']}")
    frame = pd.DataFrame({name: _from_text(raw[name].to_numpy(dtype=object), kind)
                          for name, kind in schema["columns"]})
    if timestamps:
        frame.index = _timestamps(raw.index, index)
    return frame


def _timestamps(text: pd.Index, schema: dict[str, Any]) -> pd.DatetimeIndex:
    if schema["tz"] is None:
        parsed = pd.DatetimeIndex([pd.Timestamp(t) for t in text])
    else:
        parsed = pd.DatetimeIndex([pd.Timestamp(t).tz_convert("UTC") for t in text]).tz_convert(schema["tz"])
    return parsed.as_unit(schema["unit"]).rename(schema["name"])


# What each column's values are, and how their text reads back exactly.
_FLOAT, _INT, _BOOL, _STR, _OBJECT_STR = "float64", "int64", "bool", "str", "object-str"


def _kind(column: pd.Series, where: str) -> str:
    dtype = column.dtype
    if dtype == np.float64:
        return _FLOAT
    if dtype == np.int64:
        return _INT
    if dtype == np.bool_:
        return _BOOL
    texts = all(isinstance(v, str) for v in column)
    if isinstance(dtype, pd.StringDtype) and texts:
        return _STR
    if dtype == np.dtype(object) and texts:
        return _OBJECT_STR
    raise ResultFileError(f"{where}: values of type {dtype} (or text with gaps) cannot be written exactly")


def _as_text(column: pd.Series, kind: str) -> np.ndarray:
    if kind == _FLOAT:
        return np.array([repr(float(v)) for v in column], dtype=object)
    return np.array([str(v) for v in column], dtype=object)


def _from_text(values: np.ndarray, kind: str) -> pd.Series:
    if kind == _FLOAT:
        return pd.Series(np.array([float(v) for v in values], dtype=np.float64))
    if kind == _INT:
        return pd.Series(np.array([int(v) for v in values], dtype=np.int64))
    if kind == _BOOL:
        return pd.Series(np.array([v == "True" for v in values], dtype=bool))
    if kind == _STR:
        return pd.Series(values, dtype="str")
    return pd.Series(values, dtype=object)


def exact_json(value: Any, where: str = "") -> Any:
    """``value`` with NumPy scalars as Python numbers; anything JSON would not read back as itself (a tuple, a
    key that is not text, an object) is a ``ResultFileError`` naming where it is."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ResultFileError(f"{where or 'value'}: key {key!r} is not text")
        return {k: exact_json(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [exact_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    raise ResultFileError(f"{where or 'value'}: {type(value).__name__} {value!r} cannot be written exactly as JSON")


def dump_json(document: Any) -> str:
    """``document`` as indented JSON; non-finite floats as Python's ``NaN``/``Infinity`` literals."""
    return json.dumps(document, indent=1, allow_nan=True) + "\n"

