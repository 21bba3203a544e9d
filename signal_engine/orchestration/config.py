"""Settings of the orchestration layer (seed 004), with the reason for each default.

Window lengths are in bars; the defaults are for daily bars. ``OrchestrationConfig.for_periods_per_year``
converts them for another bar frequency (the same calendar span) and picks the intraday horizons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from signal_engine.errors import ConfigError

TIMEFRAME_NAMES: tuple[str, ...] = ("scalping", "short", "medium", "long")
DAILY_HORIZONS: tuple[int, ...] = (1, 5, 20, 60)
HOURLY_HORIZONS: tuple[int, ...] = (1, 6, 24, 120)
CONFLICT_STRATEGIES: tuple[str, ...] = ("partial", "confidence", "hedge")
DRAWDOWN_BASES: tuple[str, ...] = ("undefended", "account")
DAILY_PERIODS_PER_YEAR = 252.0
INTRADAY_ABOVE_PERIODS_PER_YEAR = 400.0
# chosen on the hourly development series (benchmarks/bench_development.py --study band_hourly)
INTRADAY_DEFAULTS: dict[str, Any] = {"no_trade_band": 0.05, "no_trade_band_cuts": True}

_WINDOW_FIELDS = (
    "allocation_update_every", "warmup_bars", "performance_half_life", "regime_prior_bars", "trend_window",
    "vol_short_window", "vol_long_window", "liquidity_short_window", "liquidity_long_window",
    "correlation_window",
)
_POSITIVE_INTS = _WINDOW_FIELDS
_FRACTIONS = (
    "min_allocation", "max_allocation", "max_allocation_change", "thin_liquidity_budget",
    "drawdown_start", "drawdown_limit", "drawdown_floor", "emergency_drawdown", "emergency_scale",
    "correlation_threshold", "correlation_floor", "thin_liquidity_ratio",
)
_NON_NEGATIVE = (
    "correlation_penalty", "harmony_amplification", "no_trade_band", "max_gross_exposure", "max_net_exposure",
    "max_asset_exposure", "max_long_exposure", "max_short_exposure", "max_timeframe_exposure", "cost_bps",
    "trend_threshold",
)
_POSITIVE = (
    "allocation_temperature", "target_vol_annual", "vol_low_ratio", "vol_high_ratio", "max_trade_per_bar",
)


@dataclass(frozen=True)
class OrchestrationConfig:
    """How the timeframe models share capital, coordinate and are held to one set of risk limits.

    Parameters
    ----------
    timeframe_horizons : tuple of int
        Label horizon in bars of the ``scalping``, ``short``, ``medium`` and ``long`` models (in that
        order). Daily: 1, 5, 20, 60 bars (a day, a week, a month, a quarter); hourly: 1, 6, 24, 120.
    timeframes : tuple of str
        Which of the four timeframe models the backtest trains and orchestrates: all four by default (the
        quick profile's walk-forward of one model takes about 11 s per 5,000 daily bars on one core).
    min_allocation, max_allocation : float
        Bounds on each model's share of capital: 0.10 / 0.50 (seed 004 section 1). Every model keeps
        enough capital to keep proving itself; none can dominate. Infeasible when ``min x n > 1`` or
        ``max x n < 1`` for n models.
    max_allocation_change : float
        Largest change of one model's share per update: 0.10 (seed 004 ``_smooth_allocation_change``).
    allocation_update_every : int
        Bars between reallocations: 21 (monthly on daily bars), so allocations do not chase noise.
    warmup_bars : int
        Bars of realised model returns before the first reallocation: 63 (a quarter); equal shares before.
    performance_half_life : int
        Half-life in bars of the exponential weights of the performance tracker: 63 (a quarter).
    allocation_temperature : float
        Softmax temperature over the models' scores (annualised Sharpe units): 1.0, so a model whose Sharpe
        is one unit higher gets e (2.7) times the raw weight before the bounds apply.
    regime_prior_bars : int
        Shrinkage of a model's regime-specific Sharpe towards its overall Sharpe: with n bars seen in the
        current regime, weight ``n / (n + regime_prior_bars)`` on the regime's own figure: 126.
    correlation_penalty : float
        Score penalty per unit of a model's mean correlation with the others: 0.5 (seed 004: "adjust
        capital allocation to minimise correlation").
    trend_window, trend_threshold : int, float
        Trend vs range: Kaufman's efficiency ratio over 63 bars times sqrt(window) above 1.5 is a trend (for a
        random walk this statistic averages about 1 whatever the window, and exceeds 1.5 about a quarter of the time).
    vol_short_window, vol_long_window, vol_low_ratio, vol_high_ratio : int, int, float, float
        Volatility regime: 21-bar over 252-bar realised volatility below 0.8 is low, above 1.25 high.
    liquidity_short_window, liquidity_long_window, thin_liquidity_ratio : int, int, float
        Liquidity: mean volume over 21 bars below 0.5 x its 252-bar mean is thin (normal without volume).
    harmony_amplification : float
        Aligned models' positions are scaled by ``1 + amplification x harmony x breadth`` (seed 004 section 2,
        signal alignment): 0 (default), so the harmony score is measured, tracked per regime and reported
        but does not scale positions; 0.5 gives seed 004's amplification (a full consensus of every model
        adds half again). Chosen on the development series (``benchmarks/bench_development.py``: with the
        momentum features, Sharpe 1.60 / max DD 5.1% against 1.59 / 6.8% at 0.5); the session-3 ablation
        on the evaluation series pointed the same way (hourly book -0.78 against -1.05).
    conflict_strategy : str
        ``partial`` (default: both sides keep a share that shrinks with their disagreement), ``confidence``
        (the more confident side keeps at most the net) or ``hedge`` (both legs kept, the book holds the net).
    max_trade_per_bar : float
        Trade budget per symbol per bar, as a fraction of the symbol's capital: 1.0, so only simultaneous
        reversals of several models are staggered over bars (seed 004 trade scheduler).
    thin_liquidity_budget : float
        Share of the trade budget used in thin liquidity: 0.5.
    holding_discipline : bool
        False (default, off). True holds each model's call for its minimum holding period (seed 004 section 4
        adapter: a quarter of its label horizon, so on daily bars 5 bars for ``medium`` and 15 for ``long``,
        nothing for the 1- and 5-bar models): an exit or reversal sooner is read as the call still standing
        (``signal_engine.orchestration.holding``); risk cuts still apply.
    no_trade_band : float
        0 on daily bars (off), 0.05 on intraday bars (``INTRADAY_DEFAULTS``, with ``no_trade_band_cuts``).
        Above 0, a symbol's position is not raised when the risk-managed target is on the
        same side, larger by less than this fraction of the symbol's sleeve (a resize, not a new trade): the
        book keeps what it holds, which saves the costs of small top-ups. Cuts, flips and exits always go
        through, and the band is only used where the kept book meets every exposure limit. Since cuts pass
        and top-ups do not, positions ratchet down between entries: on the hourly development series a band
        of 0.25 held 1.5% exposure on average against 5.4% without it (``bench_development.py --study
        hourly_band``), far under the volatility target, which is why it is only used symmetric.
    no_trade_band_cuts : bool
        False on daily bars, True on intraday bars. True makes the band symmetric: a same-side cut smaller
        than the band is skipped too, except while the drawdown defender is scaling the book down; exits,
        flips and any kept book that would break an exposure limit still trade. Positions then stay within
        the band of their target instead of ratcheting down. Chosen on the hourly development series: 0.05
        gave -2.14 against -2.30 without a band, with 1.2% a year in costs against 2.5% (``--study
        band_hourly``); on MSFT every band lost (``band_daily``).
    max_gross_exposure, max_net_exposure : float
        Sum of |position| over symbols and |sum of positions|, as fractions of capital: 1.0 and 1.0 (no
        leverage, seed 004 ``max_exposure=1.0``).
    max_asset_exposure : float
        |position| in one symbol: 1.0.
    max_asset_short_exposure : mapping of str to float
        Per symbol, the most its position may be short, as a fraction of the book's capital (the exposure
        monitor's limit by asset and direction): none by default, so every symbol may go as short as
        ``max_asset_exposure``. 0 makes a symbol long or flat: the models' bearish calls still cut its longs,
        the book never sells it short. Given as ``{SPX: 0.0}``; kept as sorted (SYMBOL, limit) pairs.
    max_long_exposure, max_short_exposure : float
        Sum of long and of short positions: 1.0 and 1.0 (shorts allowed as in the trading defaults).
    max_timeframe_exposure : float
        Sum over symbols of one model's |contribution|: 0.5, the same as ``max_allocation``, so alignment
        amplification cannot make one model more than half the book.
    drawdown_start, drawdown_limit, drawdown_floor : float
        The drawdown defender scales exposure by 1 up to a 5% drawdown, linearly down to 0.25 at 15%.
    emergency_drawdown, emergency_scale : float
        Past a 25% drawdown, emergency deleveraging to 0 (flat) until the drawdown recovers.
    drawdown_basis : str
        ``undefended`` (default): the drawdown of the book the risk manager would hold without the drawdown
        defender (every other limit applied), so a defender that has gone flat still sees the strategy
        recover; ``account``: the drawdown of the managed book itself (seed 004 ``update_capital_values``),
        which needs ``emergency_scale > 0`` to ever recover.
    drawdown_lookback : int
        252 (default, a year of daily bars): the drawdown is measured from the highest equity of the last 252
        bars, which lets a strategy that recovers without a new high trade again (but lets a slow bleed add up
        over the years); 0: from the all-time high, as ``peak_capital`` is and as the max drawdown the
        run is judged by. Re-chosen for the current MoE on the first half of each book only
        (``benchmarks/bench_orchestration.py``; docs/research/drawdown-lookback.md): of 12
        pre-declared variants it had the best first-half Sharpe of the daily book within the drawdown rule
        (-0.05 against -0.31 for the all-time high, max DD 21.2% against 20.8%), and tied on the held-out
        second half (Sharpe 0.71 against 0.71, max DD 10.7% against 7.7%).
    correlation_window : int
        Rolling window in bars for the correlation of model returns and of asset returns: 63.
    correlation_threshold, correlation_floor : float
        A model whose mean correlation with the others exceeds 0.7 is scaled down linearly, to 0.5 at 1.
    target_vol_annual : float
        Annualised volatility target of the whole book from the volatility expert's forecasts: 0.15, the
        same as each model's own target, so the combined book never runs hotter than one model.
    cost_bps : float
        Cost per unit of traded exposure in basis points: 5, the trading default.
    """

    timeframe_horizons: tuple[int, ...] = DAILY_HORIZONS
    timeframes: tuple[str, ...] = TIMEFRAME_NAMES
    min_allocation: float = 0.10
    max_allocation: float = 0.50
    max_allocation_change: float = 0.10
    allocation_update_every: int = 21
    warmup_bars: int = 63
    performance_half_life: int = 63
    allocation_temperature: float = 1.0
    regime_prior_bars: int = 126
    correlation_penalty: float = 0.5
    trend_window: int = 63
    trend_threshold: float = 1.5
    vol_short_window: int = 21
    vol_long_window: int = 252
    vol_low_ratio: float = 0.8
    vol_high_ratio: float = 1.25
    liquidity_short_window: int = 21
    liquidity_long_window: int = 252
    thin_liquidity_ratio: float = 0.5
    harmony_amplification: float = 0.0
    conflict_strategy: str = "partial"
    max_trade_per_bar: float = 1.0
    thin_liquidity_budget: float = 0.5
    holding_discipline: bool = False
    no_trade_band: float = 0.0
    no_trade_band_cuts: bool = False
    max_gross_exposure: float = 1.0
    max_net_exposure: float = 1.0
    max_asset_exposure: float = 1.0
    max_asset_short_exposure: tuple[tuple[str, float], ...] = ()
    max_long_exposure: float = 1.0
    max_short_exposure: float = 1.0
    max_timeframe_exposure: float = 0.5
    drawdown_start: float = 0.05
    drawdown_limit: float = 0.15
    drawdown_floor: float = 0.25
    emergency_drawdown: float = 0.25
    emergency_scale: float = 0.0
    drawdown_basis: str = "undefended"
    drawdown_lookback: int = 252  # re-chosen on the first half only: benchmarks/bench_orchestration.py
    correlation_window: int = 63
    correlation_threshold: float = 0.7
    correlation_floor: float = 0.5
    target_vol_annual: float = 0.15
    cost_bps: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_asset_short_exposure", symbol_limits(self.max_asset_short_exposure))
        _check_ranges(self)
        _check_orderings(self)

    @classmethod
    def for_periods_per_year(cls, periods_per_year: float, **overrides: Any) -> OrchestrationConfig:
        """The defaults for bars of this frequency: windows span the same calendar time as on daily bars.

        Above 400 bars a year the bars are intraday: the hourly horizons (1, 6, 24, 120) and
        ``INTRADAY_DEFAULTS`` (the symmetric no-trade band of 0.05) apply. ``overrides`` are applied last, as
        given (in bars of this frequency).
        """
        ratio = periods_per_year / DAILY_PERIODS_PER_YEAR
        base = cls()
        scaled: dict[str, Any] = {name: max(1, round(getattr(base, name) * ratio)) for name in _WINDOW_FIELDS}
        scaled["drawdown_lookback"] = round(base.drawdown_lookback * ratio)
        if periods_per_year > INTRADAY_ABOVE_PERIODS_PER_YEAR:
            scaled["timeframe_horizons"] = HOURLY_HORIZONS
            scaled.update(INTRADAY_DEFAULTS)
        return replace(base, **{**scaled, **overrides})

    def asset_short_limit(self, symbol: str) -> float:
        """How short ``symbol``'s position may go: its ``max_asset_short_exposure``, at most ``max_asset_exposure``."""
        return min(self.max_asset_exposure, dict(self.max_asset_short_exposure).get(symbol.upper(), math.inf))

    def allocation_bounds_for(self, n_models: int) -> tuple[float, float]:
        """(min, max) allocation, after checking that n models can satisfy them and sum to 1."""
        if n_models < 1:
            raise ConfigError("orchestration: at least one timeframe model is needed")
        if self.min_allocation * n_models > 1.0 + 1e-12:
            raise ConfigError(
                f"orchestration: min_allocation {self.min_allocation} x {n_models} models = "
                f"{self.min_allocation * n_models:g} > 1; lower 'min_allocation' to at most {1.0 / n_models:g}"
            )
        if self.max_allocation * n_models < 1.0 - 1e-12:
            raise ConfigError(
                f"orchestration: max_allocation {self.max_allocation} x {n_models} models = "
                f"{self.max_allocation * n_models:g} < 1; raise 'max_allocation' to at least {1.0 / n_models:g}"
            )
        return self.min_allocation, self.max_allocation


def symbol_limits(value: Any) -> tuple[tuple[str, float], ...]:
    """``max_asset_short_exposure`` as sorted (SYMBOL, limit) pairs, from a mapping or from such pairs."""
    pairs = value.items() if isinstance(value, Mapping) else value
    example = "e.g. max_asset_short_exposure: {SPX: 0.0}"
    try:
        items = [(symbol, limit) for symbol, limit in pairs]
    except (TypeError, ValueError):
        raise ConfigError(f"orchestration: 'max_asset_short_exposure' must map symbols to limits, {example}; "
                          f"got {value!r}") from None
    limits: dict[str, float] = {}
    for symbol, limit in items:
        if not isinstance(symbol, str) or not symbol.strip():
            raise ConfigError(f"orchestration: 'max_asset_short_exposure' needs symbols as names, {example}; "
                              f"got {symbol!r}")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0.0:
            raise ConfigError(f"orchestration: 'max_asset_short_exposure' of {symbol} must be a number of 0 or "
                              f"more (a fraction of the book's capital; 0: never short), got {limit!r}")
        limits[symbol.strip().upper()] = float(limit)
    return tuple(sorted(limits.items()))


def _check_ranges(config: OrchestrationConfig) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in _POSITIVE_INTS and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"orchestration: '{f.name}' must be a whole number of at least 1, got {value!r}")
        if f.name in _FRACTIONS and not 0.0 <= value <= 1.0:
            raise ConfigError(f"orchestration: '{f.name}' must be in [0, 1], got {value!r}")
        if f.name in _NON_NEGATIVE and not value >= 0.0:
            raise ConfigError(f"orchestration: '{f.name}' must be 0 or more, got {value!r}")
        if f.name in _POSITIVE and not value > 0.0:
            raise ConfigError(f"orchestration: '{f.name}' must be above 0, got {value!r}")
    for flag in ("holding_discipline", "no_trade_band_cuts"):
        if not isinstance(getattr(config, flag), bool):
            raise ConfigError(f"orchestration: '{flag}' must be true or false, got {getattr(config, flag)!r}")
    if not isinstance(config.drawdown_lookback, int) or config.drawdown_lookback < 0:
        raise ConfigError(f"orchestration: 'drawdown_lookback' must be a whole number of 0 or more (0: all history), "
                          f"got {config.drawdown_lookback!r}")
    horizons = config.timeframe_horizons
    if len(horizons) != len(TIMEFRAME_NAMES) or any(not isinstance(h, int) or h < 1 for h in horizons):
        raise ConfigError(
            f"orchestration: 'timeframe_horizons' must be {len(TIMEFRAME_NAMES)} whole numbers of at least 1 "
            f"({', '.join(TIMEFRAME_NAMES)}), got {horizons!r}"
        )
    if not config.timeframes or len(set(config.timeframes)) != len(config.timeframes) or any(
            name not in TIMEFRAME_NAMES for name in config.timeframes):
        raise ConfigError(f"orchestration: 'timeframes' must be distinct names among {', '.join(TIMEFRAME_NAMES)}, "
                          f"got {config.timeframes!r}")
    if config.conflict_strategy not in CONFLICT_STRATEGIES:
        raise ConfigError(f"orchestration: 'conflict_strategy' must be one of {', '.join(CONFLICT_STRATEGIES)}, "
                          f"got {config.conflict_strategy!r}")
    if config.drawdown_basis not in DRAWDOWN_BASES:
        raise ConfigError(f"orchestration: 'drawdown_basis' must be one of {', '.join(DRAWDOWN_BASES)}, "
                          f"got {config.drawdown_basis!r}")


def _check_orderings(config: OrchestrationConfig) -> None:
    if config.min_allocation > config.max_allocation:
        raise ConfigError("orchestration: expected 'min_allocation' <= 'max_allocation'")
    if not config.drawdown_start < config.drawdown_limit <= config.emergency_drawdown:
        raise ConfigError("orchestration: expected 'drawdown_start' < 'drawdown_limit' <= 'emergency_drawdown'")
    if config.emergency_scale > config.drawdown_floor:
        raise ConfigError("orchestration: expected 'emergency_scale' <= 'drawdown_floor' (scaling must not "
                          "rise as the drawdown deepens)")
    if config.vol_low_ratio >= config.vol_high_ratio:
        raise ConfigError("orchestration: expected 'vol_low_ratio' < 'vol_high_ratio'")
    if config.vol_short_window >= config.vol_long_window:
        raise ConfigError("orchestration: expected 'vol_short_window' < 'vol_long_window'")
    if config.liquidity_short_window >= config.liquidity_long_window:
        raise ConfigError("orchestration: expected 'liquidity_short_window' < 'liquidity_long_window'")
    if config.drawdown_basis == "account" and config.emergency_scale == 0.0:
        raise ConfigError("orchestration: with drawdown_basis 'account', 'emergency_scale' must be above 0: a flat "
                          "book never recovers its drawdown, so it would never trade again")
