"""One expert's answer for the last bar: what an expert endpoint (or the in-process client) returns.

This module runs where the experts run (SageMaker inference containers, the local in-process client):
it may use pandas. The combiner never imports it.

Answers, by expert kind (``docs/model-bundle.md``)::

    trend       {"p_down", "p_neutral", "p_up"}
    levels      {"support", "resistance"}
    volatility  {"vol_forecast", "vol_history": [forecasts of the last ``history`` bars, oldest first]}
                (``vol_forecast`` is the forecast positions are sized by; ``vol_history`` the one the MoE's
                volatility score reads: the same model unless ``moe.experts.sizing_volatility`` differs)

A value the expert cannot give (e.g. a level before enough swings) is ``null``. A bar may carry ``implied_vol``
(annualised %, > 0; null or absent where missing), the input of ``vol_har_implied``: where the decided bar has
none, that expert's forecast, and so the last ``vol_history`` value, is ``null`` (it abstains). It may also carry
``implied_term_slope`` and ``implied_skew`` (% points, any sign), read by a ``vol_har_implied`` trained with
``volatility.implied_terms``, which abstains the same way where they are missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.data.loader import IMPLIED_VOL, IV_STRUCTURE
from signal_engine.features import feature_frame

KINDS = ("trend", "levels", "volatility")
BAR_COLUMNS = ("open", "high", "low", "close")


def bars_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Bars as the experts read them (lower-case ``open, high, low, close[, volume]`` by timestamp) from JSON rows.

    Each row holds ``timestamp`` (ISO-8601) and the price fields; ``volume`` is kept only when every row has it,
    ``implied_vol`` (annualised %, > 0) when any row has it (NaN on the rows without one), and so ``implied_term_slope``
    and ``implied_skew`` (% points). Raises ValueError naming the bar for an ``implied_vol`` that is not a number > 0 or
    a term that is not a finite number.
    """
    if not rows:
        raise ValueError("bars: empty; expected at least one bar {timestamp, open, high, low, close[, volume]}")
    index = pd.DatetimeIndex([pd.Timestamp(str(row["timestamp"])) for row in rows], name="timestamp")
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    data: dict[str, Any] = {c: np.asarray([float(row[c]) for row in rows]) for c in BAR_COLUMNS}
    if all(row.get("volume") is not None for row in rows):
        data["volume"] = np.asarray([float(row["volume"]) for row in rows])
    if any(row.get(IMPLIED_VOL) is not None for row in rows):
        data[IMPLIED_VOL] = np.asarray([implied_vol(row.get(IMPLIED_VOL), i) for i, row in enumerate(rows)])
    for term in IV_STRUCTURE:
        if any(row.get(term) is not None for row in rows):
            data[term] = np.asarray([surface_term(row.get(term), term, i) for i, row in enumerate(rows)])
    return pd.DataFrame(data, index=index)


def implied_vol(value: Any, position: int) -> float:
    """A bar's ``implied_vol`` as a float: NaN when null, else a finite number > 0 (ValueError naming the bar)."""
    if value is None:
        return math.nan
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"bars[{position}].{IMPLIED_VOL} is {value!r}; expected implied volatility in annualised %, "
                         "a number > 0 such as 15.3, or null where missing")
    return number


def surface_term(value: Any, term: str, position: int) -> float:
    """A bar's option term slope or skew as a float: NaN when null, else a finite number (ValueError naming it)."""
    if value is None:
        return math.nan
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number):
        raise ValueError(f"bars[{position}].{term} is {value!r}; expected a number in % points, or null where missing")
    return number


def market_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars joined with their point-in-time features: the frame every expert was trained on (``implied_vol`` kept
    where the bars carry it, as the training datasets keep it)."""
    lower = bars.rename(columns=str.lower)
    missing = [c for c in BAR_COLUMNS if c not in lower.columns]
    if missing:
        raise ValueError(f"bars lack the column(s) {missing}; expected open, high, low, close[, volume]")
    keep = [c for c in (*BAR_COLUMNS, "volume", IMPLIED_VOL, *IV_STRUCTURE) if c in lower.columns]
    base = lower.loc[:, keep].astype(float)
    return base.join(feature_frame(base))


def answer(expert_kind: str, fitted_expert: Any, bars: pd.DataFrame, *, history: int = 252,
           frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """The JSON answer of one fitted expert for the last bar of ``bars``.

    Parameters
    ----------
    expert_kind : ``trend``, ``levels`` or ``volatility``.
    fitted_expert : a fitted expert of that kind (``signal_engine.experts``).
    bars : the symbol's recent bars, oldest first (see :func:`bars_frame`).
    history : for the volatility expert, how many past forecasts to return as ``vol_history``.
    frame : the precomputed :func:`market_frame` of ``bars`` (saves recomputing it for several experts).
    """
    if expert_kind not in KINDS:
        raise ValueError(f"expert kind {expert_kind!r} is unknown; expected one of {list(KINDS)}")
    X = market_frame(bars) if frame is None else frame
    if len(X) == 0:
        raise ValueError("bars: empty; expected the symbol's recent bars")
    if expert_kind == "trend":
        context = fitted_expert.context_bars() if hasattr(fitted_expert, "context_bars") else None
        rows = X if context is None else X.iloc[-(int(context) + 1):]
        proba = np.asarray(fitted_expert.predict_proba(rows), dtype=float)[-1]
        return {"p_down": _number(proba[0]), "p_neutral": _number(proba[1]), "p_up": _number(proba[2])}
    if expert_kind == "levels":
        levels = np.asarray(fitted_expert.predict(X), dtype=float)[-1]
        return {"support": _number(levels[0]), "resistance": _number(levels[1])}
    absent = [c for c in (IMPLIED_VOL, *IV_STRUCTURE) if c not in X.columns]
    if absent:  # bars without implied volatility (or its surface terms): an expert that reads them abstains
        X = X.assign(**dict.fromkeys(absent, np.nan))
    if hasattr(fitted_expert, "predict_variance"):
        vol = np.sqrt(np.asarray(fitted_expert.predict_variance(X), dtype=float))
    else:
        vol = np.asarray(fitted_expert.predict(X), dtype=float).reshape(len(X), -1)[:, 0]
    # an expert that sizes by another forecast than its score reads (SizedVolatility) gives the score's history
    scored = np.sqrt(np.asarray(fitted_expert.score_variance(X), dtype=float)) if hasattr(
        fitted_expert, "score_variance") else vol
    return {"vol_forecast": _number(vol[-1]), "vol_history": [_number(v) for v in scored[-history:]]}


def for_symbol(fitted_expert: Any, symbol: str) -> Any:
    """The expert answering ``symbol``: a pooled expert (one network over several series, with ``for_series``) as
    that symbol's series, any other expert as it is."""
    return fitted_expert.for_series(symbol) if hasattr(fitted_expert, "for_series") else fitted_expert


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def respond(expert_kind: str, fitted_expert: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one request body ``{"bars": [...], "history": N, ...}`` (an expert endpoint's whole job).

    The SageMaker inference entry point calls this from ``predict_fn`` with the parsed JSON body.
    """
    return PreparedRequest.of(payload).answer(expert_kind, fitted_expert)


class PreparedRequest:
    """A request body read once: its bars, history and market frame, for every expert asked about it (the
    in-process client asks all of a bundle's experts about the same bars)."""

    def __init__(self, bars: pd.DataFrame, history: int) -> None:
        self.bars = bars
        self.history = history
        self.frame = market_frame(bars)

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> PreparedRequest:
        rows = payload.get("bars")
        if not isinstance(rows, list):
            raise ValueError("request body: field 'bars' must be a list of {timestamp, open, high, low, close[, "
                             "volume]}")
        history = payload.get("history", 252)
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"request body: field 'history' is {history!r}; expected a positive integer")
        return cls(bars_frame(rows), history)

    def answer(self, expert_kind: str, fitted_expert: Any) -> dict[str, Any]:
        return answer(expert_kind, fitted_expert, self.bars, history=self.history, frame=self.frame)
