"""The paper trading ledger: orders from the book's targets, fills at a close with the cost model, P&L.

The book decides at bar t's close the position to hold in each symbol (a fraction of the book's equity). A
live trader sees that close and trades after it, so by default (``fill="next_close"``) the order decided at t
is filled at the symbol's next bar close, and the position is held from then on; ``fill="same_close"`` fills
at t's own close, the backtest's assumption. Each fill pays ``cost_bps`` basis points of the equity traded,
booked at the fill. Between fills the held fractions are kept (the book is rebalanced to its fractions
each bar, as the backtest's returns assume), and each bar's net return compounds the equity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from signal_engine.errors import ConfigError

FillRule = Literal["next_close", "same_close"]
FILL_RULES: tuple[FillRule, ...] = ("next_close", "same_close")

ORDER_COLUMNS = ("decided_at", "book", "symbol", "from_position", "to_position", "change")
FILL_COLUMNS = ("filled_at", "decided_at", "book", "symbol", "price", "change", "position", "shares", "notional",
                "cost")
LEDGER_COLUMNS = ("timestamp", "book", "gross_return", "cost", "net_return", "equity", "gross_exposure")


@dataclass(frozen=True)
class Ledger:
    """Orders, fills and the per-bar account of one book (frames with the ``*_COLUMNS`` above)."""

    orders: pd.DataFrame
    fills: pd.DataFrame
    account: pd.DataFrame


def paper_ledger(
    book: str,
    symbols: Sequence[str],
    timeline: pd.DatetimeIndex,
    has_bar: np.ndarray,
    closes: np.ndarray,
    asset_returns: np.ndarray,
    targets: np.ndarray,
    cost_bps: Sequence[float] | np.ndarray,
    *,
    fill: FillRule = "next_close",
    start: pd.Timestamp | None = None,
    equity: float = 1.0,
) -> Ledger:
    """Trade ``targets`` (bars x symbols, decided at each bar's close) from ``start`` (default: the first bar).

    ``closes`` and ``asset_returns`` are per bar and symbol (NaN without a bar); the account starts flat with
    ``equity`` at ``start``.
    """
    if fill not in FILL_RULES:
        raise ConfigError(f"paper: fill {fill!r} is not one of {', '.join(FILL_RULES)}")
    first = 0 if start is None else int(timeline.searchsorted(pd.Timestamp(start)))
    costs = np.asarray(cost_bps, dtype=float) / 1e4
    held = np.zeros(len(symbols))
    pending: dict[int, tuple[pd.Timestamp, float]] = {}
    orders: list[dict[str, object]] = []
    fills: list[dict[str, object]] = []
    account: list[dict[str, object]] = []
    for i in range(first, len(timeline)):
        when = timeline[i]
        realised = np.where(has_bar[i], np.nan_to_num(asset_returns[i], nan=0.0), 0.0)
        gross = float(held @ realised) if i > first else 0.0
        marked = equity * (1.0 + gross)
        if fill == "same_close":
            pending.update(_orders(book, symbols, when, has_bar[i], held, pending, targets[i], orders))
        paid = 0.0
        for j in [j for j in sorted(pending) if has_bar[i, j]]:
            decided, target = pending.pop(j)
            change = target - held[j]
            cost = costs[j] * abs(change)
            paid += cost
            fills.append({"filled_at": when, "decided_at": decided, "book": book, "symbol": symbols[j],
                          "price": closes[i, j], "change": change, "position": target,
                          "shares": change * marked / closes[i, j], "notional": change * marked,
                          "cost": cost * marked})
            held[j] = target
        if fill == "next_close":
            pending.update(_orders(book, symbols, when, has_bar[i], held, pending, targets[i], orders))
        net = gross - paid
        equity *= 1.0 + net
        account.append({"timestamp": when, "book": book, "gross_return": gross, "cost": paid, "net_return": net,
                        "equity": equity, "gross_exposure": float(np.abs(held).sum())})
    return Ledger(orders=pd.DataFrame(orders, columns=list(ORDER_COLUMNS)),
                  fills=pd.DataFrame(fills, columns=list(FILL_COLUMNS)),
                  account=pd.DataFrame(account, columns=list(LEDGER_COLUMNS)))


def _orders(book: str, symbols: Sequence[str], when: pd.Timestamp, bar: np.ndarray, held: np.ndarray,
            pending: dict[int, tuple[pd.Timestamp, float]], targets: np.ndarray,
            orders: list[dict[str, object]]) -> dict[int, tuple[pd.Timestamp, float]]:
    """The orders decided at ``when``: a target that differs from what is held (or already on its way)."""
    new: dict[int, tuple[pd.Timestamp, float]] = {}
    for j, symbol in enumerate(symbols):
        if not bar[j] or not np.isfinite(targets[j]):
            continue
        current = pending[j][1] if j in pending else held[j]
        if targets[j] == current:
            continue
        orders.append({"decided_at": when, "book": book, "symbol": symbol, "from_position": current,
                       "to_position": float(targets[j]), "change": float(targets[j] - current)})
        new[j] = (when, float(targets[j]))
    return new
