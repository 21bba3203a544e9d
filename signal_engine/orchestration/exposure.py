"""Exposure monitor of seed 004 section 3: limits per model (timeframe), per symbol, per direction, in all.

Positions are fractions of the book's capital. A symbol may have a tighter limit on its short side than on
its long side (``OrchestrationConfig.max_asset_short_exposure``; 0 keeps it long or flat). Scales are in
[0, 1] and computed so that the limits hold after scaling, also when some symbols cannot trade at this bar
(their positions are held as they are and use up part of each limit). The net limit is applied last, as one
factor for every tradable symbol, because scaling the long and short sides differently could raise the net.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from signal_engine.orchestration.config import OrchestrationConfig

_NOTHING = 1e-300  # exposure below this is none (and keeps room / used finite)


@dataclass(frozen=True)
class ExposureLimits:
    """Exposure limits as fractions of capital (see ``OrchestrationConfig``)."""

    gross: float = 1.0
    net: float = 1.0
    asset: float = 1.0
    long: float = 1.0
    short: float = 1.0
    timeframe: float = 0.5
    asset_short: tuple[float, ...] | None = None  # per symbol of the book, in its order; None: ``asset`` for all

    @classmethod
    def from_config(cls, config: OrchestrationConfig, symbols: Sequence[str] = ()) -> ExposureLimits:
        """The book's limits; ``symbols`` (the book's, in order) picks up their per-symbol short limits."""
        shorts = tuple(config.asset_short_limit(symbol) for symbol in symbols)
        return cls(gross=config.max_gross_exposure, net=config.max_net_exposure, asset=config.max_asset_exposure,
                   long=config.max_long_exposure, short=config.max_short_exposure,
                   timeframe=config.max_timeframe_exposure,
                   asset_short=shorts if any(limit < config.max_asset_exposure for limit in shorts) else None)

    def asset_limits(self, positions: np.ndarray) -> np.ndarray:
        """Per symbol, the |position| limit of the side each position is on."""
        x = np.asarray(positions, dtype=float)
        if self.asset_short is None:
            return np.full(x.shape, self.asset)
        return np.where(x < 0, np.minimum(np.asarray(self.asset_short, dtype=float), self.asset), self.asset)


@dataclass(frozen=True)
class BookScales:
    """Per-symbol scale (the tightest of its asset, direction and gross caps) and one net factor.

    ``asset_cap`` is the per-symbol asset limit's own factor and ``asset_limit`` that limit (of the side the
    proposed position is on); ``binding`` says which book limits bound; ``per_symbol`` is the factor each
    symbol's position is scaled by (``asset x net``; 1 if it cannot trade).
    """

    asset: np.ndarray
    net: float
    asset_cap: np.ndarray
    binding: dict[str, bool]
    per_symbol: np.ndarray
    asset_limit: np.ndarray


def capped_ratio(room: float | np.ndarray, used: float | np.ndarray) -> np.ndarray:
    """``min(1, room / used)`` with ``used == 0`` giving 1 and a negative room giving 0."""
    room = np.maximum(np.asarray(room, dtype=float), 0.0)
    used = np.asarray(used, dtype=float)
    some = used > _NOTHING
    return np.where(some, np.minimum(1.0, room / np.where(some, used, 1.0)), 1.0)


def _ratio(room: float, used: float) -> float:
    """``capped_ratio`` of two numbers."""
    return min(1.0, max(room, 0.0) / used) if used > _NOTHING else 1.0


def timeframe_scales(contributions: np.ndarray, limit: float, tradable: np.ndarray | None = None,
                     held: np.ndarray | None = None) -> np.ndarray:
    """Per model (rows): the factor on its tradable contributions that keeps sum |contribution| within ``limit``.

    ``held`` gives the contributions of symbols that cannot trade (columns where ``tradable`` is False).
    """
    c = np.asarray(contributions, dtype=float)
    tradable = np.ones(c.shape[1], dtype=bool) if tradable is None else tradable
    fixed = np.abs(held[:, ~tradable]).sum(axis=1) if held is not None else 0.0
    return capped_ratio(limit - fixed, np.abs(c[:, tradable]).sum(axis=1))


def book_scales(positions: np.ndarray, limits: ExposureLimits, tradable: np.ndarray | None = None,
                held: np.ndarray | None = None) -> BookScales:
    """Scales on each tradable symbol's position so the book meets the asset, direction, gross and net limits.

    ``positions`` are the proposed positions per symbol; for symbols that cannot trade, ``held`` gives the
    positions they keep. Their scale is reported as 1.
    """
    x = np.asarray(positions, dtype=float)
    tradable = np.ones(len(x), dtype=bool) if tradable is None else np.asarray(tradable, dtype=bool)
    fixed = np.where(tradable, 0.0, held if held is not None else 0.0)
    free = np.where(tradable, x, 0.0)
    asset_limit = limits.asset_limits(free)
    asset = capped_ratio(asset_limit, np.abs(free))
    long = _ratio(limits.long - float(fixed[fixed > 0].sum()), float(free[free > 0].sum()))
    short = _ratio(limits.short + float(fixed[fixed < 0].sum()), float(-free[free < 0].sum()))
    gross = _ratio(limits.gross - float(np.abs(fixed).sum()), float(np.abs(free).sum()))
    per_symbol = np.minimum(np.minimum(asset, gross), np.where(free > 0, long, short))
    per_symbol = np.where(tradable, per_symbol, 1.0)
    net = _net_factor(float(fixed.sum()), float((free * per_symbol).sum()), limits.net)
    binding = {
        "asset": bool(np.any(asset < 1.0)), "long": long < 1.0, "short": short < 1.0, "gross": gross < 1.0,
        "net": net < 1.0,
    }
    return BookScales(asset=per_symbol, net=net, asset_cap=np.where(tradable, asset, 1.0), binding=binding,
                      per_symbol=np.where(tradable, per_symbol * net, 1.0), asset_limit=asset_limit)


def _net_factor(fixed_net: float, free_net: float, limit: float) -> float:
    """The largest u in [0, 1] with ``|fixed_net + u x free_net| <= limit`` (or the u nearest to it)."""
    if abs(fixed_net + free_net) <= limit or free_net == 0.0:
        return 1.0
    bound = limit if fixed_net + free_net > 0 else -limit
    return float(np.clip((bound - fixed_net) / free_net, 0.0, 1.0))


def within_limits(contributions: np.ndarray, limits: ExposureLimits, tolerance: float = 1e-12) -> bool:
    """Whether contributions (models x symbols) meet every limit: per model, per symbol (and side), long, short,
    gross, net."""
    c = np.asarray(contributions, dtype=float)
    positions = c.sum(axis=0)
    return bool(
        np.abs(c).sum(axis=1).max(initial=0.0) <= limits.timeframe + tolerance
        and np.all(np.abs(positions) <= limits.asset_limits(positions) + tolerance)
        and positions[positions > 0].sum() <= limits.long + tolerance
        and -positions[positions < 0].sum() <= limits.short + tolerance
        and np.abs(positions).sum() <= limits.gross + tolerance
        and abs(positions.sum()) <= limits.net + tolerance
    )
