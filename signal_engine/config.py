"""Run configuration: the `quick` and `full` profiles and the overrides a user's config file may give."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from signal_engine.errors import ConfigError


@dataclass(frozen=True)
class WalkForwardConfig:
    """The walk-forward schedule, in bars, anchored at the first bar of the data.

    Experts are first fitted at bar ``initial_window``; their out-of-sample outputs over the next
    ``validation_bars`` bars train the gate; the reported test span starts after that. Every
    ``refit_every`` bars all models are refitted on everything known at that bar's close.
    """

    initial_window: int = 504
    validation_bars: int = 252
    refit_every: int = 126
    min_test_bars: int = 252
    embargo: int = 0

    @property
    def test_start(self) -> int:
        return self.initial_window + self.validation_bars

    @property
    def min_rows(self) -> int:
        return self.test_start + self.min_test_bars


@dataclass(frozen=True)
class LabelConfig:
    """Trend labels: up/down when the H-bar log return exceeds ``threshold`` x sigma x sqrt(H)."""

    horizon: int = 5
    threshold: float = 0.5


@dataclass(frozen=True)
class TrendConfig:
    """LightGBM trend classifier hyper-parameters.

    ``momentum`` (default on) adds the long look-back features ``MOMENTUM_NAMES`` (volatility-scaled
    60/120/250-bar returns and the 200-bar average gap) to the trend expert's inputs. Chosen on the
    development series (``benchmarks/bench_development.py``; docs/research/momentum-features.md):
    on MSFT 1989-1998 the ``long`` timeframe model's Sharpe 1.29 -> 1.68, the orchestrated book's
    1.44 -> 1.59 (1.60 with harmony amplification 0, adopted with it).

    ``momentum_min_horizon`` (20) limits them to models whose label horizon (``labels.horizon``, in bars) is at
    least this: on daily bars the ``medium`` and ``long`` timeframe models read them, the MoE of the 5-bar
    horizon and ``scalping`` keep the short look-backs. Chosen on the development series by the
    ``momentum_horizon`` study: orchestrated Sharpe 1.624 against 1.599 for every model (1) and 1.623 for 5.
    """

    momentum: bool = True
    momentum_min_horizon: int = 20
    n_estimators: int = 100
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 100
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0


@dataclass(frozen=True)
class LevelsConfig:
    """Swing-point support/resistance: candidate look-backs and the swing confirmation width."""

    windows: tuple[int, ...] = (20, 50, 100)
    swing_width: int = 3


@dataclass(frozen=True)
class VolatilityConfig:
    """GARCH(1,1) and EWMA volatility, blended by QLIKE on the training window.

    ``implied_terms``: option-surface columns that ``vol_har_implied`` adds to its design beside the log implied
    variance, some of ``implied_term_slope`` and ``implied_skew`` (% points; the price file's columns of those names,
    which the bars export writes from collected option chains). Empty (the default): off. Built but not measured
    offline (no history of term structure or skew is available to the project; see
    :mod:`signal_engine.experts.implied_volatility`). Read only when ``moe.experts.volatility`` is
    ``vol_har_implied``.
    """

    ewma_lambda: float = 0.94
    blend_grid: int = 21
    implied_terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateConfig:
    """Softmax gate over the experts, trained on their out-of-sample outputs."""

    l2: float = 1.0
    entropy: float = 0.01
    iterations: int = 200
    learning_rate: float = 0.5
    min_rows: int = 100
    score_window: int = 250


@dataclass(frozen=True)
class TradingConfig:
    """How a score becomes a position, and what trading costs.

    A score above ``buy_threshold`` (below ``sell_threshold``) is a buy (sell); a position, once
    entered, is held until the score crosses ``exit_level``.
    """

    buy_threshold: float = 0.1
    sell_threshold: float = -0.1
    exit_level: float = 0.0
    allow_short: bool = True
    target_vol_annual: float = 0.15
    max_leverage: float = 1.0
    cost_bps: float = 5.0
    symbol_cost_bps: tuple[tuple[str, float], ...] = ()

    def cost_for(self, symbol: str) -> float:
        """Trading cost in bps for ``symbol``: its entry in ``symbol_cost_bps``, else ``cost_bps``."""
        return dict(self.symbol_cost_bps).get(symbol.upper(), self.cost_bps)


@dataclass(frozen=True)
class SuiteConfig:
    """The expert suite: every catalogued expert walked forward next to its baseline (``metrics.json`` ``experts``)."""

    enabled: bool = True


TREND_EXPERTS = ("trend_lightgbm", "trend_calibrated", "trend_linear", "trend_pooled", "trend_pooled_lstm")
POOLED_TREND = "trend_pooled"
POOLED_LSTM_TREND = "trend_pooled_lstm"
POOLED_TRENDS = (POOLED_TREND, POOLED_LSTM_TREND)  # networks fitted across every series of a run
LEVELS_EXPERTS = ("levels_swing", "levels_regression")
VOLATILITY_EXPERTS = ("volatility_blend", "vol_har", "vol_har_implied")
SIZING_VOLATILITY_EXPERTS = ("volatility_blend", "vol_har")
GATES = ("softmax", "rule", "mlp")
COMBINERS = ("weighted", "rule", "meta")
SINGLE_EXPERT = "equity_daily"
BAR_ARCHETYPES = ("equity_daily", "equity_intraday", "crypto_hft", "futures_trend", "low_vol_etf")  # read bars
PRICE_EXPERTS = ("trend", "levels", "volatility")
NEWS_EXPERT = "news"
NEWS_COLUMN = "news_score"
IV_COLUMN = "implied_vol"  # the price file's implied volatility (annualised %), read by vol_har_implied
IV_STRUCTURE_COLUMNS = ("implied_term_slope", "implied_skew")  # the price file's option term slope and skew (% points)


@dataclass(frozen=True)
class MoEExperts:
    """Which expert fills each role of the MoE (names as in ``metrics.json`` and the expert catalogue).

    trend: ``trend_lightgbm`` (raw LightGBM probabilities), ``trend_calibrated`` (the same model with a
    multinomial Platt calibration fitted on the last quarter of its training rows, then refitted on all) or
    ``trend_linear`` (multinomial logistic regression on the same features, z-scored) or ``trend_pooled`` (one
    Keras kernel-bank network over every series of the run, :class:`~signal_engine.archetypes.pooled_expert.
    PooledKernelTrendExpert` with the ``pooled_trend`` settings; the training workflow only, where it trains on
    the GPU step: the per-symbol backtest cannot fit a model across series and refuses it) or ``trend_pooled_lstm``
    (the same, with one LSTM of 16 units over the bar windows in place of the kernel bank,
    :class:`~signal_engine.archetypes.pooled_sequence.PooledLSTMTrendExpert`; ``pooled_trend``'s ``archetype`` is
    not read);
    intraday_trend: the same choice for intraday series (``for_bars``), ``trend_linear`` by default. Chosen
    on the development series (``benchmarks/bench_development.py --study linear_trend_hourly``): on
    Bitcoin hourly bars the orchestrated book's Sharpe -2.14 -> -0.43 against ``trend_calibrated``, while
    on Microsoft daily bars the linear expert lost (1.62 -> 1.24), so daily bars keep ``trend``;
    levels: ``levels_swing`` (swing points) or ``levels_regression`` (LightGBM quantile distances);
    volatility: ``volatility_blend`` (GARCH(1,1)/EWMA blend), ``vol_har`` (HAR on range measures) or
    ``vol_har_implied`` (HAR plus the log implied variance; reads the bars' ``implied_vol`` column, abstains on
    bars without it, and the training workflow does not export it yet): the forecast the MoE's volatility score
    reads;
    sizing_volatility: ``volatility_blend`` or ``vol_har``, the forecast users see (``vol_forecast`` in
    ``signals.csv`` and the Signal API) and the volatility-targeted position divides by: ``vol_har``, chosen on
    the daily development series by QLIKE (docs/research/sizing-volatility.md: -0.024 [-0.049, -0.002] against
    the blend, pooled over MSFT and the daily panel, better on 7 of 8 series); ``volatility_blend`` keeps the
    forecast the score reads.
    """

    trend: str = "trend_calibrated"
    intraday_trend: str = "trend_linear"
    levels: str = "levels_swing"
    volatility: str = "volatility_blend"
    sizing_volatility: str = "vol_har"


@dataclass(frozen=True)
class PooledTrendConfig:
    """Settings of the pooled trend expert (``moe.experts.trend: trend_pooled``): the bar archetype whose kernel
    bank is the network's first layer, the input window, rows of each series per epoch, the longest training and
    its early-stopping patience (epochs), and the batch size."""

    archetype: str = "equity_daily"
    window: int = 64
    samples_per_series: int = 512
    max_epochs: int = 30
    patience: int = 4
    batch_size: int = 128


@dataclass(frozen=True)
class OnlineConfig:
    """Online learning between refits (seed 002; :mod:`signal_engine.moe.online`).

    ``enabled``: from each refit to the next, the softmax gate and the meta-model combiner take one gradient
    step per label as it becomes known (``horizon + embargo`` bars after its bar), in the backtest and in the
    live book step alike. ``gate_rate`` and ``meta_rate`` are the step sizes (0 keeps that part as fitted).
    Off by default: on the development panel it did not beat the frozen models
    (docs/research/online-learning.md).
    """

    enabled: bool = False
    gate_rate: float = 0.05
    meta_rate: float = 0.01


@dataclass(frozen=True)
class MoEConfig:
    """The Mixture of Experts (seed 001 §5): on/off, its experts, gate, combiner and top-k routing.

    ``enabled: false`` replaces the MoE by the single ``equity_daily`` archetype expert (seed 001,
    backward compatibility): its P(up) - P(down) goes through the same hold rule and sizing.
    ``k`` keeps each bar's k largest gate weights (renormalised); ``k`` >= 3 is dense routing.
    ``multistage`` adds the seed 002 multi-stage engine (per-stage report and its own strategy).
    ``single_refit_every`` is how often (bars) the TensorFlow single expert refits when ``enabled`` is false.
    ``news: true`` adds a fourth expert, ``news``, whose score is the market frame's ``news_score`` column (the text
    expert's point-in-time aggregate at each bar's close, NaN where the bar had no news: the slot abstains there);
    the experts are then :func:`moe_experts` (trend, levels, volatility, news). Off by default; with it on, ``k``
    >= 4 is dense routing, and the ``rule`` gate and combiner (which read no scores) are refused.
    The defaults (softmax gate, dense routing, meta-model combiner, calibrated trend expert) had the best mean
    net Sharpe of the MoE variants measured by ``benchmarks/bench_moe.py --variants`` (docs/research/moe-variants.md).
    """

    enabled: bool = True
    experts: MoEExperts = field(default_factory=MoEExperts)
    k: int = 3
    gate: str = "softmax"
    combiner: str = "meta"
    multistage: bool = True
    meta_c: float = 1.0
    single_refit_every: int = 1008
    online: OnlineConfig = field(default_factory=OnlineConfig)
    news: bool = False


def moe_experts(config: RunConfig) -> tuple[str, ...]:
    """The MoE's experts in gate order: trend, levels, volatility, and ``news`` when ``moe.news`` is on."""
    return (*PRICE_EXPERTS, NEWS_EXPERT) if config.moe.news else PRICE_EXPERTS


@dataclass(frozen=True)
class RunConfig:
    """Everything a backtest depends on; the same config and input give byte-identical output."""

    profile: str = "quick"
    seed: int = 7
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    trend: TrendConfig = field(default_factory=TrendConfig)
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    volatility: VolatilityConfig = field(default_factory=VolatilityConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    trading: TradingConfig = field(default_factory=TradingConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    pooled_trend: PooledTrendConfig = field(default_factory=PooledTrendConfig)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a mapping; ``moe.news`` only when on and ``pooled_trend`` only when the pooled trend
        expert is chosen, so the documents of configs without them (bundles, metrics, run hashes) stay as they were
        before the settings existed."""
        document = dataclasses.asdict(self)
        if not self.moe.news:
            del document["moe"]["news"]
        if not {self.moe.experts.trend, self.moe.experts.intraday_trend} & set(POOLED_TRENDS):
            del document["pooled_trend"]
        return document


PROFILES: dict[str, RunConfig] = {
    "quick": RunConfig(profile="quick"),
    "full": RunConfig(
        profile="full",
        walk_forward=WalkForwardConfig(initial_window=756, validation_bars=252, refit_every=21),
        trend=TrendConfig(n_estimators=300, learning_rate=0.02, num_leaves=7, min_child_samples=100),
        gate=GateConfig(iterations=400),
    ),
}


def for_bars(config: RunConfig, intraday: bool) -> RunConfig:
    """The config a series runs with: on intraday bars the MoE's trend expert is ``moe.experts.intraday_trend``."""
    experts = config.moe.experts
    if not intraday or experts.intraday_trend == experts.trend:
        return config
    return replace(config, moe=replace(config.moe, experts=replace(experts, trend=experts.intraday_trend)))


def load_config(profile: str = "quick", path: Path | None = None) -> RunConfig:
    """The named profile, with the overrides of a YAML or JSON file applied on top."""
    if profile not in PROFILES:
        raise ConfigError(f"--profile: unknown profile '{profile}'; expected one of {', '.join(PROFILES)}")
    config = PROFILES[profile]
    if path is None:
        return config
    overrides = _read_mapping(path)
    overrides.pop("profile", None)
    return _apply(config, overrides, prefix="", source=str(path))


def apply_overrides(config: RunConfig, overrides: dict[str, Any], *, source: str = "overrides") -> RunConfig:
    """``config`` with a mapping of overrides applied, validated as a config file's would be."""
    updated: RunConfig = _apply(config, overrides, prefix="", source=source)
    return updated


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text; expected YAML or JSON") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse config ({exc.__class__.__name__}); expected YAML or JSON") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping of sections, e.g. 'trading: {{cost_bps: 5}}'")
    return data


def _apply(obj: Any, overrides: dict[str, Any], *, prefix: str, source: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown setting '{name}'; expected one of {', '.join(known)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                settings = ", ".join(f.name for f in fields(current))
                raise ConfigError(f"{source}: '{name}' must be a mapping of its settings ({settings}), got {value!r}")
            changes[key] = _apply(current, value, prefix=f"{name}.", source=source)
        else:
            changes[key] = _coerce(value, current, name=name, source=source)
    updated = replace(obj, **changes)
    _validate(updated, prefix=prefix, source=source)
    return updated


def _coerce(value: Any, current: Any, *, name: str, source: str) -> Any:
    expected = type(current)
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif name.endswith("symbol_cost_bps"):
        if isinstance(value, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value.values()
        ):
            return tuple(sorted((str(k).upper(), float(v)) for k, v in value.items()))
        raise ConfigError(f"{source}: '{name}' must map symbols to costs in bps >= 0, e.g. {{EURUSD: 1.0}}")
    elif name.endswith("implied_terms"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{source}: '{name}' must be a list of column names (some of "
                          f"{', '.join(IV_STRUCTURE_COLUMNS)}), got {value!r}")
    elif isinstance(current, tuple):
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{source}: '{name}' must be a list of whole numbers, got {value!r}")
    elif isinstance(current, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: '{name}' must be a {expected.__name__}, got {value!r}")


_POSITIVE_INTS = {
    "initial_window", "validation_bars", "refit_every", "min_test_bars", "horizon", "n_estimators",
    "num_leaves", "min_child_samples", "swing_width", "blend_grid", "iterations", "min_rows", "score_window",
    "k", "single_refit_every", "momentum_min_horizon", "window", "samples_per_series", "max_epochs", "patience",
    "batch_size",
}
_CHOICES: dict[type, dict[str, tuple[str, ...]]] = {
    MoEExperts: {"trend": TREND_EXPERTS, "intraday_trend": TREND_EXPERTS, "levels": LEVELS_EXPERTS,
                 "volatility": VOLATILITY_EXPERTS, "sizing_volatility": SIZING_VOLATILITY_EXPERTS},
    MoEConfig: {"gate": GATES, "combiner": COMBINERS},
    PooledTrendConfig: {"archetype": BAR_ARCHETYPES},
}
_FRACTIONS = {"subsample", "colsample_bytree", "ewma_lambda"}


def _validate(obj: Any, *, prefix: str, source: str) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if f.name in _POSITIVE_INTS and value < 1:
            raise ConfigError(f"{source}: '{name}' must be at least 1, got {value}")
        if f.name in _FRACTIONS and not 0 < value <= 1:
            raise ConfigError(f"{source}: '{name}' must be in (0, 1], got {value}")
        if f.name == "embargo" and value < 0:
            raise ConfigError(f"{source}: '{name}' must be 0 or more, got {value}")
        allowed = _CHOICES.get(type(obj), {}).get(f.name)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{source}: '{name}' is {value!r}; expected one of {', '.join(allowed)}")
        if f.name == "implied_terms" and (set(value) - set(IV_STRUCTURE_COLUMNS) or len(set(value)) < len(value)):
            raise ConfigError(f"{source}: '{name}' is {list(value)!r}; expected distinct names among "
                              f"{', '.join(IV_STRUCTURE_COLUMNS)}")
        if f.name in ("gate_rate", "meta_rate") and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{source}: '{name}' must be a number >= 0 (0 keeps that part as fitted), got {value}")
    if isinstance(obj, MoEConfig) and obj.online.enabled:
        if obj.online.gate_rate > 0 and obj.gate != "softmax":
            raise ConfigError(f"{source}: '{prefix}online.gate_rate' learns the softmax gate online, but "
                              f"'{prefix}gate' is {obj.gate!r}; set {prefix}online.gate_rate: 0 or "
                              f"{prefix}gate: softmax")
        if obj.online.meta_rate > 0 and obj.combiner != "meta":
            raise ConfigError(f"{source}: '{prefix}online.meta_rate' learns the meta-model combiner online, but "
                              f"'{prefix}combiner' is {obj.combiner!r}; set {prefix}online.meta_rate: 0 or "
                              f"{prefix}combiner: meta")
        if f.name == "meta_c" and not value > 0:
            raise ConfigError(f"{source}: '{name}' must be above 0, got {value}")
    if isinstance(obj, MoEConfig) and obj.news:
        for setting in ("gate", "combiner"):
            if getattr(obj, setting) == "rule":
                raise ConfigError(f"{source}: '{prefix}news' adds the news expert, but the rule {setting} reads no "
                                  f"expert scores; set {prefix}{setting} to another choice or {prefix}news: false")
    if isinstance(obj, TradingConfig) and not obj.sell_threshold <= obj.exit_level <= obj.buy_threshold:
        raise ConfigError(f"{source}: expected '{prefix}sell_threshold' <= '{prefix}exit_level' <= "
                          f"'{prefix}buy_threshold'")
    if isinstance(obj, LevelsConfig) and (not obj.windows or min(obj.windows) <= 2 * obj.swing_width):
        raise ConfigError(f"{source}: '{prefix}windows' must be non-empty and each above 2 x swing_width")
