"""Values made safe for ``json.dumps(..., allow_nan=False)``: the one converter metrics and artefacts use."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""How the book state and store write numbers JSON lacks (``json_number``)."""


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, NumPy scalars as Python numbers, tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_number(x: float) -> float | str:
    """A float as JSON allows it: itself when finite, else ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    value = float(x)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def number_from_json(value: float | int | str) -> float:
    """The inverse of ``json_number`` (other strings are a ``ValueError``)."""
    if isinstance(value, str):
        if value not in NON_FINITE:
            raise ValueError(f"expected a number or one of {', '.join(NON_FINITE)}, got {value!r}")
        return NON_FINITE[value]
    return float(value)
