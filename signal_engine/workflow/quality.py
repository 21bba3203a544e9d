"""The quality gate: checks on the walk-forward metrics that decide whether a trained bundle may serve.

Each symbol is judged on its own walk-forward metrics (``metrics["per_symbol"][SYMBOL]`` of the run's
``metrics.json``: out of sample, net of costs), never on the mean over symbols, so one series the MoE cannot trade
does not sink the others and a poor one is not carried by the rest. The bundle serves the symbols that passed
every check and withholds the others with a reason; it may become ``CURRENT`` when at least one symbol passed.
Every check compares the MoE with a baseline measured in the same run:

``moe_sharpe_vs_buy_and_hold``
    MoE net Sharpe minus buy & hold's net Sharpe; passes when >= ``-max_sharpe_shortfall`` (a risk-managed
    strategy may trail buy & hold in a bull market, but not by more than this).
``confidence_ece``
    expected calibration error of the confidence; passes when <= ``max_confidence_ece``.
``trend_log_loss_vs_prior``
    the trend expert's log loss minus the class prior's (``baseline_majority``); passes when
    <= ``max_log_loss_excess`` (a trend model worse than the prior adds noise).
``volatility_qlike_vs_garch``
    QLIKE of the volatility forecast users see (``vol_forecast``, which sizes the positions:
    ``moe.experts.sizing_volatility``, named in the symbol's ``diagnostics``) minus GARCH(1,1)'s; passes when
    <= ``max_qlike_excess``. Metrics written before that setting existed name no sizing forecast: their first
    non-baseline volatility model is judged, as it was then.

A check whose metric is missing or not finite fails and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from signal_engine.errors import ConfigError


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality gate (``quality:`` section of ``signal-engine train --config``)."""

    max_sharpe_shortfall: float = 0.5
    max_confidence_ece: float = 0.10
    max_log_loss_excess: float = 0.02
    max_qlike_excess: float = 0.05

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> QualityConfig:
        known = {f.name for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown setting 'quality.{key}'; "
                                  f"expected one of {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{source}: 'quality.{key}' must be a number >= 0, got {value!r}")
        return cls(**{key: float(value) for key, value in values.items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One check: its measured value, its threshold, and whether it passed (``bound``: ">=" or "<=")."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    rule: str
    bound: str = ">="

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "passed": self.passed,
                "rule": self.rule}

    def describe(self) -> str:
        """One phrase: ``confidence_ece 0.1834 (needs <= 0.1)`` or ``confidence_ece missing (needs <= 0.1)``."""
        value = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{self.name} {value} (needs {self.bound} {self.threshold:g})"


@dataclass(frozen=True)
class SymbolDecision:
    """The verdict on one symbol: its checks, on its own walk-forward metrics."""

    symbol: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def reason(self) -> str:
        """Why the symbol is withheld (empty when it passed): each failed check with its value and threshold."""
        failed = self.failed()
        return "failed " + "; ".join(c.describe() for c in failed) if failed else ""

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class Decision:
    """The quality gate's verdict (``decision.json``): one :class:`SymbolDecision` per symbol, in training order.

    ``passed`` (the bundle may become ``CURRENT``) when at least one symbol passed; ``served_symbols`` are those,
    ``withheld`` maps each other symbol to its reason.
    """

    symbols: tuple[SymbolDecision, ...]

    @property
    def passed(self) -> bool:
        return any(d.passed for d in self.symbols)

    @property
    def served_symbols(self) -> tuple[str, ...]:
        return tuple(d.symbol for d in self.symbols if d.passed)

    @property
    def withheld(self) -> dict[str, str]:
        return {d.symbol: d.reason() for d in self.symbols if not d.passed}

    def symbol(self, name: str) -> SymbolDecision:
        for d in self.symbols:
            if d.symbol == name:
                return d
        raise KeyError(f"the quality gate did not judge {name!r}; it judged {[d.symbol for d in self.symbols]}")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "served_symbols": list(self.served_symbols), "withheld": self.withheld,
                "symbols": {d.symbol: d.to_dict() for d in self.symbols}}

    def flat_checks(self) -> list[dict[str, Any]]:
        """Every symbol's checks as one list, each with its ``symbol`` (the evaluation report of the workflow)."""
        return [{"symbol": d.symbol, **c.to_dict()} for d in self.symbols for c in d.checks]


def _metric(metrics: Mapping[str, Any], *path: str) -> float | None:
    node: Any = metrics
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def decide(metrics: Mapping[str, Any], quality: QualityConfig, symbols: Sequence[str] | None = None) -> Decision:
    """Judge each symbol of a ``metrics.json`` document on its own section ``per_symbol[SYMBOL]``.

    ``symbols``: the symbols the bundle was trained on (default: those of ``per_symbol``); a symbol without a
    section fails every check (its metrics are missing). A single-symbol run is judged exactly as before.
    """
    table = metrics.get("per_symbol")
    table = table if isinstance(table, Mapping) else {}
    names = list(symbols) if symbols is not None else [str(s) for s in table]
    if not names:
        raise ConfigError("metrics.json has no 'per_symbol' section and no symbols were named; the quality gate "
                          "judges each symbol on metrics['per_symbol'][SYMBOL] (write it with build_metrics)")
    return Decision(tuple(SymbolDecision(name, _checks(_section(table, name), quality)) for name in names))


def _section(table: Mapping[str, Any], symbol: str) -> Mapping[str, Any]:
    section = table.get(symbol)
    return section if isinstance(section, Mapping) else {}


def _checks(metrics: Mapping[str, Any], quality: QualityConfig) -> tuple[Check, ...]:
    """The four checks on one symbol's walk-forward metrics."""
    sharpe = _difference(_metric(metrics, "strategies", "moe", "sharpe"),
                         _metric(metrics, "strategies", "baseline_buy_and_hold", "sharpe"))
    ece = _metric(metrics, "confidence", "moe", "ece")
    trend_name = _trend_model(metrics)
    log_loss = _difference(_metric(metrics, "trend", trend_name, "log_loss"),
                           _metric(metrics, "trend", "baseline_majority", "log_loss"))
    vol_name = _volatility_model(metrics)
    qlike = _difference(_metric(metrics, "volatility", vol_name, "qlike"),
                        _metric(metrics, "volatility", "baseline_garch11", "qlike"))
    return (
        _at_least("moe_sharpe_vs_buy_and_hold", sharpe, -quality.max_sharpe_shortfall,
                  "net Sharpe of the MoE minus buy & hold >= -max_sharpe_shortfall"),
        _at_most("confidence_ece", ece, quality.max_confidence_ece, "ECE of the confidence <= max_confidence_ece"),
        _at_most("trend_log_loss_vs_prior", log_loss, quality.max_log_loss_excess,
                 f"log loss of {trend_name} minus the class prior's <= max_log_loss_excess"),
        _at_most("volatility_qlike_vs_garch", qlike, quality.max_qlike_excess,
                 f"QLIKE of {vol_name} minus GARCH(1,1)'s <= max_qlike_excess"),
    )


def _trend_model(metrics: Mapping[str, Any]) -> str:
    table = metrics.get("trend", {})
    names = [n for n in table if not n.startswith("baseline_")] if isinstance(table, Mapping) else []
    return names[0] if names else "trend_lightgbm"


def _volatility_model(metrics: Mapping[str, Any]) -> str:
    """The sizing forecast the symbol's diagnostics name, else the first non-baseline model of its table."""
    sizing = _nested(metrics, "diagnostics", "moe", "experts", "sizing_volatility")
    if isinstance(sizing, str) and sizing:
        return sizing
    table = metrics.get("volatility", {})
    names = [n for n in table if not n.startswith("baseline_")] if isinstance(table, Mapping) else []
    return names[0] if names else "volatility_blend"


def _nested(document: Mapping[str, Any], *keys: str) -> Any:
    value: Any = document
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _at_least(name: str, value: float | None, threshold: float, rule: str) -> Check:
    return Check(name, value, threshold, value is not None and value >= threshold, rule, ">=")


def _at_most(name: str, value: float | None, threshold: float, rule: str) -> Check:
    return Check(name, value, threshold, value is not None and value <= threshold, rule, "<=")
