"""What an orchestrated run produced: positions, contributions, allocations, scales, returns and events.

Every frame is indexed by the run's timeline (the union of the symbols' bar timestamps from the first
signal on), named ``timestamp``. Positions are fractions of the whole book's capital; each symbol has an
equal sleeve of ``1 / n_symbols`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from signal_engine.orchestration.correlation import correlation_matrix

if TYPE_CHECKING:
    from signal_engine.orchestration.events import OrchestrationEvent
    from signal_engine.orchestration.state import BookState

RETURN_COLUMNS: tuple[str, ...] = ("orchestrated", "undefended", "coordinated", "sum_of_parts")
MODEL_RETURN_PREFIX = "model_"


@dataclass(frozen=True)
class OrchestrationResult:
    """The orchestrated book and everything the report draws from.

    Parameters
    ----------
    symbols, models : tuple of str
        In the order of the columns below (models shortest timeframe first).
    positions : pandas.DataFrame
        timestamp x symbol: the orchestrated position held from the bar's close to the symbol's next bar,
        as a fraction of the book's capital (carried on bars where the symbol has none).
    bars : pandas.DataFrame
        timestamp x symbol, bool: whether the symbol has a bar (a close, and a decision) at that timestamp.
    contributions : dict of str to pandas.DataFrame
        symbol -> timestamp x model: each model's part of the position; rows sum to ``positions[symbol]``.
    unmanaged : dict of str to pandas.DataFrame
        symbol -> timestamp x model: the position each model asked for on its own (direction x size, a
        fraction of the symbol's sleeve), before allocation, coordination and risk.
    allocations, target_allocations : pandas.DataFrame
        timestamp x model: the capital shares in force at each bar, and the optimiser's latest target.
    risk_scales : pandas.DataFrame
        timestamp x component (``RISK_COMPONENTS``): drawdown, volatility, correlation (tightest model),
        timeframe (tightest model), exposure (book caps) and final (all legs after over before), in [0, 1].
    harmony : pandas.DataFrame
        timestamp x symbol: the harmony score of the models' calls (0 where the symbol had no bar).
    regimes : pandas.DataFrame
        timestamp x (trend, volatility, liquidity): the book's market regime.
    returns : pandas.DataFrame
        timestamp x (orchestrated, undefended, coordinated, sum_of_parts, model_<name>...): the net return
        realised at each bar's close by the positions decided at the previous bar, less the costs of the
        trades that set them (``strategy_returns`` of those positions, one row later). ``orchestrated`` is
        the managed book, ``undefended`` the book the risk manager would hold without the drawdown
        defender, ``coordinated`` the book before the risk manager, ``model_<name>`` each model on its own
        over all sleeves, ``sum_of_parts`` their mean (equal fixed shares, no coordination, no risk layer).
    asset_returns : pandas.DataFrame
        timestamp x symbol: simple close-to-close returns realised at the bar (NaN without a bar).
    events : pandas.DataFrame
        The event log (``EVENT_COLUMNS``).
    event_counts : dict of str to int
        Events per kind.
    performance : pandas.DataFrame
        model x statistic: the performance tracker at the end of the run.
    final_state : BookState or None
        The book's state after the last bar (what a live book continues from; ``seed_book`` stores it).
    last_events : tuple of OrchestrationEvent
        The events of the last bar, in the order they happened.
    """

    symbols: tuple[str, ...]
    models: tuple[str, ...]
    positions: pd.DataFrame
    bars: pd.DataFrame
    contributions: dict[str, pd.DataFrame]
    unmanaged: dict[str, pd.DataFrame]
    allocations: pd.DataFrame
    target_allocations: pd.DataFrame
    risk_scales: pd.DataFrame
    harmony: pd.DataFrame
    regimes: pd.DataFrame
    returns: pd.DataFrame
    asset_returns: pd.DataFrame
    events: pd.DataFrame
    event_counts: dict[str, int]
    performance: pd.DataFrame
    final_state: BookState | None = None
    last_events: tuple[OrchestrationEvent, ...] = ()

    def symbol_positions(self, symbol: str, *, per_sleeve: bool = False) -> pd.Series:
        """The orchestrated position at the symbol's own bars (for its rows of ``signals.csv``).

        With ``per_sleeve``, as a fraction of the symbol's sleeve (x n_symbols), comparable to the
        single-symbol backtest's ``position``.
        """
        column = self.positions.loc[self.bars[symbol], symbol]
        return column * len(self.symbols) if per_sleeve else column

    def model_returns(self) -> pd.DataFrame:
        """timestamp x model: each model's net return on its own."""
        frame = self.returns.loc[:, [f"{MODEL_RETURN_PREFIX}{m}" for m in self.models]]
        return frame.set_axis(list(self.models), axis=1)

    def model_correlation(self) -> pd.DataFrame:
        """model x model: correlation of the models' returns over the whole run (the heatmap)."""
        returns = self.model_returns().iloc[1:]
        return pd.DataFrame(correlation_matrix(returns.to_numpy()), index=list(self.models), columns=list(self.models))

    def asset_correlation(self) -> pd.DataFrame:
        """symbol x symbol: correlation of the symbols' returns over the whole run."""
        values = correlation_matrix(self.asset_returns.to_numpy())
        return pd.DataFrame(values, index=list(self.symbols), columns=list(self.symbols))
