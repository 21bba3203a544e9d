"""What the book's numbers are made of (seed 004 section 6): each model's contribution, signal alignment and
its impact on performance, and how trades cluster.

Every function reads an ``OrchestrationResult`` (and the symbols' costs where money is counted), so the
analyses hold for any book, and all of them keep the orchestrator's accounting: the position decided at a
bar earns the next bar's return, and the costs of the trades that set it are paid with that return.

- ``model_attribution``: the book's net return split over the timeframe models. A model's gross part is
  its share of each position times the return; the costs of a trade are shared by the models' traded
  parts (``|change of its part| / sum over models of |change of their parts|``). The parts add up to the
  book's net return at every bar.
- ``agreement_matrix`` / ``with_book``: how often the timeframes agree (alignment frequency by timeframe).
- ``harmony_buckets``: the book's gross return per unit of exposure by the harmony score of the calls;
  ``side_split`` the same for its long and its short positions.
- ``trade_log`` / ``trade_clustering``: the book's trades and whether they bunch up in time or across symbols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.orchestration.result import OrchestrationResult

HARMONY_EDGES: tuple[float, ...] = (1 / 3, 2 / 3, 1.0 - 1e-9)  # lower bounds of all buckets but the first
HARMONY_LABELS: tuple[str, ...] = ("low (< 1/3)", "medium (1/3 - 2/3)", "high (2/3 - 1)", "unanimous (1)")
TRADE_TOLERANCE = 1e-9  # a position change smaller than this (a fraction of the book) is rounding, not a trade


@dataclass(frozen=True)
class ModelAttribution:
    """timestamp x model frames whose rows add up to the book's gross P&L, costs and net return.

    ``gross`` at a bar is what the model's parts of the positions held since the previous bar earned;
    ``costs`` is its share of the costs of the trades made at the previous bar (paid with that return).
    """

    gross: pd.DataFrame
    costs: pd.DataFrame

    @property
    def net(self) -> pd.DataFrame:
        return self.gross - self.costs

    def summary(self, periods_per_year: float) -> dict[str, dict[str, float]]:
        """Per model: gross, costs and net a year (fractions of the book's capital) and its share of the
        book's net P&L (NaN when the book made nothing)."""
        realised = slice(1, None)
        gross = self.gross.iloc[realised].mean() * periods_per_year
        costs = self.costs.iloc[realised].mean() * periods_per_year
        net = gross - costs
        total = float(net.sum())
        return {
            str(m): {"gross_return": float(gross[m]), "costs": float(costs[m]), "net_return": float(net[m]),
                     "share_of_net": float(net[m] / total) if abs(total) > 1e-12 else float("nan")}
            for m in self.gross.columns
        }


def model_attribution(result: OrchestrationResult, cost_bps: Mapping[str, float]) -> ModelAttribution:
    """Split the book's net return over its models; ``cost_bps`` is the symbol's cost per unit traded."""
    missing = [s for s in result.symbols if s not in cost_bps]
    if missing:
        raise KeyError(f"model_attribution: no cost for symbol(s) {missing}; pass cost_bps for every symbol")
    realised = np.nan_to_num(result.asset_returns.loc[:, list(result.symbols)].to_numpy(dtype=float), nan=0.0)
    parts = np.stack([result.contributions[s].loc[:, list(result.models)].to_numpy(dtype=float)
                      for s in result.symbols], axis=2)  # time x model x symbol
    t, m, _ = parts.shape
    gross = np.zeros((t, m))
    gross[1:] = np.einsum("tms,ts->tm", parts[:-1], realised[1:])
    change = np.abs(np.diff(parts, axis=0, prepend=0.0))
    traded = np.abs(np.diff(result.positions.loc[:, list(result.symbols)].to_numpy(dtype=float), axis=0,
                            prepend=0.0))
    cost = traded * np.array([cost_bps[s] for s in result.symbols]) / 1e4  # time x symbol
    total_change = change.sum(axis=1, keepdims=True)
    share = np.divide(change, total_change, out=np.zeros_like(change), where=total_change > 0)
    costs = np.zeros((t, m))
    costs[1:] = np.einsum("tms,ts->tm", share[:-1], cost[:-1])
    index, columns = result.positions.index, list(result.models)
    return ModelAttribution(gross=pd.DataFrame(gross, index=index, columns=columns),
                            costs=pd.DataFrame(costs, index=index, columns=columns))


def _views(result: OrchestrationResult) -> np.ndarray:
    """(symbol-bar) x model: each model's direction (-1, 0, 1) at every bar a symbol has, pooled over symbols."""
    rows = [np.sign(result.unmanaged[s].loc[result.bars[s], list(result.models)].to_numpy(dtype=float))
            for s in result.symbols]
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, len(result.models)))


def agreement_matrix(result: OrchestrationResult) -> pd.DataFrame:
    """model x model: of the symbol-bars on which both models have a view, the share on the same side.

    The diagonal is the share of symbol-bars on which the model has a view at all; NaN where two models
    never hold views together.
    """
    views = _views(result)
    active = views != 0
    both = active.T.astype(float) @ active.astype(float)
    same = (views[:, :, None] * views[:, None, :] > 0).sum(axis=0).astype(float)
    agreement = np.divide(same, both, out=np.full_like(same, np.nan), where=both > 0)
    np.fill_diagonal(agreement, active.mean(axis=0) if len(views) else np.nan)
    return pd.DataFrame(agreement, index=list(result.models), columns=list(result.models))


def with_book(result: OrchestrationResult) -> pd.Series:
    """Per model: of the symbol-bars on which it has a view and the book holds a position, the share on the
    book's side (how often the coordinated book follows that timeframe)."""
    hits = np.zeros(len(result.models))
    counts = np.zeros(len(result.models))
    for s in result.symbols:
        bar = result.bars[s].to_numpy()
        views = np.sign(result.unmanaged[s].loc[:, list(result.models)].to_numpy(dtype=float))[bar]
        book = np.sign(result.positions[s].to_numpy(dtype=float))[bar][:, None]
        shown = (views != 0) & (book != 0)
        counts += shown.sum(axis=0)
        hits += (shown & (views == book)).sum(axis=0)
    share = np.divide(hits, counts, out=np.full_like(hits, np.nan), where=counts > 0)
    return pd.Series(share, index=list(result.models), name="with_book")


def held_positions(result: OrchestrationResult) -> pd.DataFrame:
    """Every symbol-bar where the book holds a position and the symbol has its next bar: symbol, the harmony
    score of the symbol's latest decision, the position (fraction of the book) and the gross P&L it made
    over that next bar. Their P&L adds up to the book's gross P&L."""
    frames = []
    for s in result.symbols:
        bars = result.bars[s]
        harmony = result.harmony[s].where(bars).ffill()
        position = result.positions[s]
        next_return = result.asset_returns[s].shift(-1)
        held = (position.abs() > TRADE_TOLERANCE) & bars.shift(-1, fill_value=False).astype(bool) & harmony.notna()
        frames.append(pd.DataFrame({"symbol": s, "harmony": harmony[held], "position": position[held],
                                    "pnl": (position * next_return)[held]}))
    columns = ["symbol", "harmony", "position", "pnl"]
    return pd.concat(frames) if frames else pd.DataFrame(columns=columns)


def _bucket_table(rows: pd.DataFrame, buckets: np.ndarray, labels: tuple[str, ...], key: str, n_symbols: int,
                  periods_per_year: float) -> pd.DataFrame:
    total_pnl = float(rows["pnl"].sum())
    nan = float("nan")
    table = []
    for i, label in enumerate(labels):
        part = rows[buckets == i]
        exposure = float(part["position"].abs().sum())
        table.append({
            key: label,
            "positions": len(part),
            "share_of_positions": len(part) / len(rows) if len(rows) else nan,
            "mean_sleeve_position": float(part["position"].abs().mean() * n_symbols) if len(part) else nan,
            "hit_rate": float((part["pnl"] > 0).mean()) if len(part) else nan,
            "return_per_exposure": float(part["pnl"].sum() / exposure * periods_per_year) if exposure > 0 else nan,
            "share_of_gross_pnl": float(part["pnl"].sum() / total_pnl) if abs(total_pnl) > 1e-12 else nan,
        })
    return pd.DataFrame(table)


def harmony_buckets(result: OrchestrationResult, periods_per_year: float) -> pd.DataFrame:
    """The book's gross result by the harmony of the calls behind each position (impact of alignment).

    Every position of ``held_positions`` is put in a bucket of ``HARMONY_LABELS`` by its harmony score. Per
    bucket: how many, the mean position as a fraction of the sleeve, the hit rate (the position's side
    matched the next return's), the gross return a year per unit of exposure, and the bucket's share of the
    book's gross P&L.
    """
    rows = held_positions(result)
    buckets = np.digitize(rows["harmony"].to_numpy(dtype=float), HARMONY_EDGES, right=False)
    return _bucket_table(rows, buckets, HARMONY_LABELS, "harmony", len(result.symbols), periods_per_year)


def side_split(result: OrchestrationResult, periods_per_year: float) -> pd.DataFrame:
    """``harmony_buckets``' numbers for the book's long and its short positions: which side earns."""
    rows = held_positions(result)
    buckets = (rows["position"].to_numpy(dtype=float) < 0).astype(int)
    return _bucket_table(rows, buckets, ("long", "short"), "side", len(result.symbols), periods_per_year)


def trade_log(result: OrchestrationResult) -> pd.DataFrame:
    """Every change of the book's position in a symbol: timestamp, symbol, traded (signed fraction of the
    book), and the position after it."""
    positions = result.positions.loc[:, list(result.symbols)]
    change = positions.diff()
    change.iloc[0] = positions.iloc[0]
    stacked = pd.Series(change.stack())
    traded = stacked[(stacked.abs() > TRADE_TOLERANCE).to_numpy()]
    after = positions.stack().loc[traded.index]
    frame = pd.DataFrame({"traded": traded.to_numpy(), "position": after.to_numpy()},
                         index=traded.index.set_names(["timestamp", "symbol"]))
    return frame.reset_index()


def trade_clustering(
    result: OrchestrationResult, periods_per_year: float, log: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Whether the book's trades (every change of a position, ``trade_log``) bunch up.

    Trades a year; bars of the book's timeline between one symbol's trades (mean, median, and the share of
    trades one bar after the previous); the share of trading bars on which several symbols trade together;
    and the largest exposure traded in one bar against the mean over trading bars (what the trade
    scheduler's per-bar budget bounds). ``metrics.json``'s ``trades`` counts direction changes only. ``log``:
    the result's ``trade_log``, when the caller has it already.
    """
    log = trade_log(result) if log is None else log
    timeline = pd.Index(result.positions.index)
    years = len(timeline) / periods_per_year if periods_per_year > 0 else 0.0
    gaps: list[int] = []
    for _symbol, trades in log.groupby("symbol"):
        gaps.extend(np.diff(timeline.get_indexer(pd.Index(trades["timestamp"]))).tolist())
    per_bar = log.groupby("timestamp").agg(symbols=("symbol", "size"), traded=("traded", lambda x: x.abs().sum()))
    gap = np.asarray(gaps, dtype=float)
    nan = float("nan")
    return {
        "trades": len(log),
        "trades_per_year": len(log) / years if years > 0 else nan,
        "mean_bars_between_trades": float(gap.mean()) if len(gap) else nan,
        "median_bars_between_trades": float(np.median(gap)) if len(gap) else nan,
        "share_of_trades_one_bar_apart": float((gap <= 1).mean()) if len(gap) else nan,
        "share_of_trading_bars_multi_symbol": float((per_bar["symbols"] > 1).mean()) if len(per_bar) else nan,
        "max_traded_in_one_bar": float(per_bar["traded"].max()) if len(per_bar) else 0.0,
        "mean_traded_per_trading_bar": float(per_bar["traded"].mean()) if len(per_bar) else 0.0,
    }


def analytics_section(
    result: OrchestrationResult, cost_bps: Mapping[str, float], periods_per_year: float
) -> dict[str, Any]:
    """The book's analyses as ``metrics.json`` data: ``contribution`` (per model, a year), ``alignment``
    (agreement matrix, share with the book, harmony buckets), ``sides`` (long against short positions) and
    ``trading`` (``trade_clustering``)."""
    agreement = agreement_matrix(result)
    buckets = harmony_buckets(result, periods_per_year)
    return {
        "contribution": model_attribution(result, cost_bps).summary(periods_per_year),
        "alignment": {
            "agreement": {str(a): {str(b): float(v) for b, v in row.items()} for a, row in agreement.iterrows()},
            "with_book": {str(m): float(v) for m, v in with_book(result).items()},
            "harmony_buckets": buckets.to_dict(orient="records"),
        },
        "sides": side_split(result, periods_per_year).to_dict(orient="records"),
        "trading": trade_clustering(result, periods_per_year),
    }


__all__ = [
    "HARMONY_EDGES",
    "HARMONY_LABELS",
    "ModelAttribution",
    "agreement_matrix",
    "analytics_section",
    "harmony_buckets",
    "held_positions",
    "model_attribution",
    "side_split",
    "trade_clustering",
    "trade_log",
    "with_book",
]
