"""The model bundle in code: what training publishes and serving loads (``docs/model-bundle.md``).

A bundle is a folder::

    bundle.json          the serving contract (JSON)
    experts/             signal_engine.registry artefact folder (read by the experts, never by the combiner)
    gate.npz             softmax and MLP gates: GateWeights (a softmax gate is one layer); a rule gate has no file,
                         its parameters are bundle.json's gate.rule
    meta.npz             optional: the meta-model combiner's arrays, when combiner.kind = "meta"
    calibration.json     the confidence map {"x": [...], "y": [...]} for numpy.interp(|score|, x, y)
    metrics.json         (written by training) the walk-forward evaluation
    decision.json        (written by training) the quality gate

Reading needs only ``json`` and NumPy (``np.load(allow_pickle=False)``): no pickle reaches the combiner.
Every problem with a bundle raises :class:`BundleError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from signal_engine.errors import ConfigError
from signal_engine.moe.numpy_gate import RULE_EXPERTS, RULE_FEATURES, GateWeights, MetaArrays, RuleGateParams

SCHEMA_VERSION = 1
BUNDLE_FILE = "bundle.json"
GATE_FILE = "gate.npz"
META_FILE = "meta.npz"
CALIBRATION_FILE = "calibration.json"
EXPERTS_FOLDER = "experts"
EXPERT_KINDS = ("trend", "levels", "volatility")
DEFAULT_EXPERT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "trend": ("p_down", "p_neutral", "p_up"),
    "levels": ("support", "resistance"),
    "volatility": ("vol_forecast",),
}
GATE_KINDS = ("softmax", "mlp", "rule")
WEIGHT_GATE_KINDS = ("softmax", "mlp")
RULE_PARAMETERS = ("boost", "trend_r2_min", "persistent_hurst", "reverting_hurst", "range_r2_max", "vol_threshold")
COMBINER_KINDS = ("weighted", "rule", "meta")
NEWS_EXPERT = "news"
"""The text expert's name in expert requests, ``EXPERT_ENDPOINTS`` and the bundle's ``news`` section."""
NEWS_FOLDER = "news"


class BundleError(ConfigError):
    """A model bundle that is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class ScoreSettings:
    """How expert outputs become scores: the volatility forecast is scored against its own trailing window."""

    volatility_window: int = 252
    volatility_min_periods: int = 20


@dataclass(frozen=True)
class GateSpec:
    """The gate: its kind, the fingerprint feature names it reads (in order) and either its NumPy weights
    (``softmax``, ``mlp``: ``gate.npz``) or its rule parameters (``rule``: ``gate.rule`` in ``bundle.json``)."""

    kind: str
    weights: GateWeights | None
    features: tuple[str, ...]
    rule: RuleGateParams | None = None

    @property
    def k(self) -> int:
        """Top-k routing: each row keeps its k largest weights."""
        if self.rule is not None:
            return self.rule.k
        if self.weights is None:
            raise BundleError(f"gate of kind {self.kind!r} has neither weights nor rule parameters")
        return self.weights.k

    @property
    def experts(self) -> tuple[str, ...]:
        """The experts the gate weighs, in its output order."""
        if self.rule is not None:
            return tuple(self.rule.experts)
        if self.weights is None:
            raise BundleError(f"gate of kind {self.kind!r} has neither weights nor rule parameters")
        return tuple(self.weights.experts)


@dataclass(frozen=True)
class CombinerSettings:
    """How the gated expert scores become a signal.

    ``weighted``: score = sum of gate weight x expert score; ``rule``: ``rules`` {"buy": [...], "sell":
    [...]} of ``field op number`` conditions; ``meta``: ``meta`` arrays give P(up) - P(down).
    """

    kind: str = "weighted"
    buy_threshold: float = 0.3
    sell_threshold: float = -0.3
    rules: dict[str, tuple[str, ...]] | None = None
    meta: MetaArrays | None = None


@dataclass(frozen=True)
class Calibration:
    """Knots of the confidence map: confidence = numpy.interp(|score|, x, y)."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class RiskSettings:
    """The hold rule and volatility-target sizing applied to the combined score."""

    target_vol_annual: float = 0.1
    max_leverage: float = 1.0
    allow_short: bool = False
    exit_level: float = 0.0
    periods_per_year: float = 252.0


@dataclass(frozen=True)
class OnlineSettings:
    """Online learning between retrains (``moe.online``; :mod:`signal_engine.moe.online`): the step sizes, the
    gate objective's entropy and target clip, and the labels' definition (``horizon`` bars ahead, known
    ``horizon + embargo`` bars after their bar, UP / DOWN beyond ``threshold`` x vol30 x sqrt(horizon))."""

    gate_rate: float
    meta_rate: float
    entropy: float
    clip: float
    horizon: int
    embargo: int
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SymbolSettings:
    """What differs per symbol of a bundle: its bars' timeframe, the periods per year that annualise, its cost."""

    timeframe: str
    periods_per_year: float
    cost_bps: float | None = None


@dataclass(frozen=True)
class NewsSettings:
    """The bundle's ``news`` section: the text expert's head (``<folder>/head.npz``, its sha256), the encoder it was
    trained on, and the aggregate's decay (``signal_engine.text.aggregate.NewsDecay``) and limits."""

    head_sha256: str
    encoder: str
    half_life_hours: float = 24.0
    max_age_hours: float = 168.0
    prior_weight: float = 1.0
    max_documents: int = 50
    headlines: int = 3
    expert: str = NEWS_EXPERT
    folder: str = NEWS_FOLDER

    def __post_init__(self) -> None:
        for name in ("half_life_hours", "max_age_hours", "prior_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value)
                                                                                    and value > 0):
                raise BundleError(f"field 'news.{name}' is {value!r}; expected a positive number")
        for name in ("max_documents", "headlines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BundleError(f"field 'news.{name}' is {value!r}; expected a whole number >= 1")
        if not isinstance(self.head_sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.head_sha256):
            raise BundleError(f"field 'news.head_sha256' is {self.head_sha256!r}; expected 64 hex digits")
        for name in ("encoder", "expert", "folder"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
                raise BundleError(f"field 'news.{name}' is {value!r}; expected a plain non-empty name")

    @property
    def max_age(self) -> timedelta:
        return timedelta(hours=self.max_age_hours)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> NewsSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise BundleError(f"field 'news' has unknown key(s) {unknown}; expected {sorted(known)}")
        missing = [k for k in ("head_sha256", "encoder") if k not in doc]
        if missing:
            raise BundleError(f"field 'news' lacks {missing}")
        return cls(**dict(doc))


@dataclass(frozen=True)
class ServingBundle:
    """One trained version of the MoE, as the serving path reads it (``docs/model-bundle.md``).

    Parameters
    ----------
    version : ``<UTC time>-<short hash>``, e.g. ``20261123T150102Z-3f9a1c2e``.
    created_at : ISO-8601 UTC time of training.
    profile, timeframe : the run profile (quick/full) and the bars' timeframe (e.g. ``1d``).
    symbols : the symbols trained on; ``trained_through`` maps each to its last training date.
    experts : expert names in the gate's output order; ``expert_outputs`` what each answers.
    min_bars : bars an expert needs to answer for the last one.
    scores, gate, combiner, calibration, risk : see the classes of the same names.
    per_symbol : optional per-symbol settings (timeframe, periods_per_year, cost_bps); a symbol without an
        entry uses the top-level ``timeframe`` and ``risk.periods_per_year``.
    withheld : symbols of ``symbols`` that failed the quality gate, each with its reason; they are refused when
        asked for (empty in bundles written before the gate judged each symbol).
    """

    version: str
    created_at: str
    profile: str
    timeframe: str
    symbols: tuple[str, ...]
    trained_through: dict[str, str]
    experts: tuple[str, ...]
    expert_outputs: dict[str, tuple[str, ...]]
    min_bars: int
    scores: ScoreSettings
    gate: GateSpec
    combiner: CombinerSettings
    calibration: Calibration
    risk: RiskSettings = field(default_factory=RiskSettings)
    per_symbol: dict[str, SymbolSettings] = field(default_factory=dict)
    withheld: Mapping[str, str] = field(default_factory=dict)
    online: OnlineSettings | None = None
    news: NewsSettings | None = None

    def __post_init__(self) -> None:
        _check(self)

    # -- writing -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The ``bundle.json`` document."""
        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "created_at": self.created_at,
            "profile": self.profile,
            "timeframe": self.timeframe,
            "symbols": list(self.symbols),
            "trained_through": dict(self.trained_through),
            "experts": list(self.experts),
            "expert_outputs": {name: list(outputs) for name, outputs in self.expert_outputs.items()},
            "min_bars": self.min_bars,
            "scores": {"volatility_window": self.scores.volatility_window,
                       "volatility_min_periods": self.scores.volatility_min_periods},
            "gate": _gate_json(self.gate),
            "combiner": {
                "kind": self.combiner.kind,
                "buy_threshold": self.combiner.buy_threshold,
                "sell_threshold": self.combiner.sell_threshold,
                "file": META_FILE if self.combiner.meta is not None else None,
                **({"rules": {k: list(v) for k, v in self.combiner.rules.items()}}
                   if self.combiner.rules is not None else {}),
            },
            "calibration": {"file": CALIBRATION_FILE},
            "risk": {
                "target_vol_annual": self.risk.target_vol_annual,
                "max_leverage": self.risk.max_leverage,
                "allow_short": self.risk.allow_short,
                "exit_level": self.risk.exit_level,
                "periods_per_year": self.risk.periods_per_year,
            },
            **({"per_symbol": {symbol: {"timeframe": v.timeframe, "periods_per_year": v.periods_per_year,
                                        "cost_bps": v.cost_bps} for symbol, v in self.per_symbol.items()}}
               if self.per_symbol else {}),
            "withheld": dict(self.withheld),
            **({"online": self.online.to_json()} if self.online is not None else {}),
            **({"news": self.news.to_json()} if self.news is not None else {}),
        }

    @property
    def served_symbols(self) -> tuple[str, ...]:
        """The symbols this bundle answers for: those trained, less those the quality gate withheld."""
        return tuple(s for s in self.symbols if s not in self.withheld)

    def timeframe_of(self, symbol: str) -> str:
        """The bars' timeframe of ``symbol`` (its per_symbol entry, else the bundle's)."""
        entry = self.per_symbol.get(symbol)
        return entry.timeframe if entry is not None else self.timeframe

    def periods_per_year_of(self, symbol: str) -> float:
        """The periods per year that annualise ``symbol``'s volatility target."""
        entry = self.per_symbol.get(symbol)
        return entry.periods_per_year if entry is not None else self.risk.periods_per_year

    def save(self, folder: str | Path) -> Path:
        """Write ``bundle.json``, ``gate.npz`` (softmax and MLP gates), ``calibration.json`` and (meta combiner)
        ``meta.npz`` into ``folder``.

        The ``experts/`` artefact folder, ``metrics.json`` and ``decision.json`` are the trainer's to write
        (``signal_engine.registry.save_experts``); the caller renames the folder into place when complete.
        """
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        if self.gate.weights is not None:
            self.gate.weights.save(root / GATE_FILE)
        if self.combiner.meta is not None:
            meta = self.combiner.meta
            np.savez(root / META_FILE, features=np.array(meta.features, dtype=str), mean=meta.mean,
                     scale=meta.scale, coef=meta.coef, intercept=meta.intercept, classes=meta.classes)
        calibration = {"x": [float(v) for v in self.calibration.x], "y": [float(v) for v in self.calibration.y]}
        (root / CALIBRATION_FILE).write_text(json.dumps(calibration) + "\n", encoding="utf-8")
        (root / BUNDLE_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return root

    # -- reading -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path) -> ServingBundle:
        """Read a bundle folder; :class:`BundleError` names the file and field of any problem."""
        root = Path(folder)
        if not root.is_dir():
            raise BundleError(f"{root}: no model bundle here (not a folder); train one with 'signal-engine train' "
                              "or point to a folder that holds bundle.json")
        doc = _read_json(root / BUNDLE_FILE)
        reader = _Fields(root / BUNDLE_FILE, doc)
        schema = reader.integer("schema_version")
        if schema != SCHEMA_VERSION:
            raise BundleError(f"{root / BUNDLE_FILE}: schema_version {schema} is not supported; this "
                              f"signal-engine reads schema_version {SCHEMA_VERSION}")
        scores = reader.section("scores")
        gate = reader.section("gate")
        combiner = reader.section("combiner")
        risk = reader.section("risk")
        calibration = reader.section("calibration")
        experts = reader.strings("experts")
        outputs_doc = reader.mapping("expert_outputs")
        expert_outputs = {name: _Fields(reader.path, outputs_doc, "expert_outputs").strings(name)
                          for name in outputs_doc}
        gate_spec = _load_gate_spec(root, gate)
        meta_file = combiner.optional_text("file")
        rules_doc = combiner.optional_mapping("rules")
        return cls(
            version=reader.text("version"),
            created_at=reader.text("created_at"),
            profile=reader.text("profile"),
            timeframe=reader.text("timeframe"),
            symbols=reader.strings("symbols"),
            trained_through={str(k): str(v) for k, v in reader.mapping("trained_through").items()},
            experts=experts,
            expert_outputs=expert_outputs,
            min_bars=reader.integer("min_bars"),
            scores=ScoreSettings(scores.integer("volatility_window", 252),
                                 scores.integer("volatility_min_periods", 20)),
            gate=gate_spec,
            combiner=CombinerSettings(
                kind=combiner.text("kind"),
                buy_threshold=combiner.number("buy_threshold"),
                sell_threshold=combiner.number("sell_threshold"),
                rules=({k: _Fields(reader.path, rules_doc, "combiner.rules").strings(k) for k in rules_doc}
                       if rules_doc is not None else None),
                meta=_load_meta(root / meta_file) if meta_file else None,
            ),
            calibration=_load_calibration(root / calibration.text("file", CALIBRATION_FILE)),
            risk=RiskSettings(
                target_vol_annual=risk.number("target_vol_annual", 0.1),
                max_leverage=risk.number("max_leverage", 1.0),
                allow_short=risk.boolean("allow_short", False),
                exit_level=risk.number("exit_level", 0.0),
                periods_per_year=risk.number("periods_per_year", 252.0),
            ),
            per_symbol=_per_symbol(reader),
            withheld=_withheld(reader),
            online=_online(reader),
            news=_news(reader),
        )

    @property
    def slots(self) -> tuple[str, ...]:
        """The experts the gate weighs, in its output order: ``experts``, then the text expert's name when the gate
        has the news slot (:attr:`news_slot`)."""
        return self.gate.experts

    @property
    def news_slot(self) -> bool:
        """Whether the gate weighs the text expert (``moe.news``): its input is the news block's score at the
        decision time (NaN, an abstention, without news), and the news is then part of the combined score."""
        return self.news is not None and self.slots == (*self.experts, self.news.expert)

    @property
    def gate_weights(self) -> GateWeights:
        """The softmax or MLP gate's NumPy weights (a rule gate has none: read ``gate.rule``)."""
        if self.gate.weights is None:
            raise BundleError(f"bundle {self.version!r}: gate.kind is {self.gate.kind!r}, which has no NumPy weights; "
                              "its parameters are field 'gate.rule'")
        return self.gate.weights


def _gate_json(gate: GateSpec) -> dict[str, Any]:
    """The ``gate`` section of bundle.json: softmax/MLP name their file, a rule gate carries its parameters."""
    if gate.rule is None:
        return {"kind": gate.kind, "file": GATE_FILE, "features": list(gate.features)}
    rule = gate.rule
    return {"kind": gate.kind, "file": None, "features": list(gate.features),
            "rule": {"experts": list(rule.experts), "k": rule.k,
                     **{name: getattr(rule, name) for name in RULE_PARAMETERS}}}


def _load_gate_spec(root: Path, gate: _Fields) -> GateSpec:
    """The gate section: a rule gate from ``gate.rule``, any other kind from its ``gate.npz``."""
    kind, features = gate.text("kind"), gate.strings("features")
    if kind not in GATE_KINDS:
        raise gate._fail("kind", f"one of {list(GATE_KINDS)}")
    if kind != "rule":
        if gate.doc.get("rule") is not None:
            raise gate._fail("rule", f"null or absent: gate.kind {kind!r} reads its weights from gate.npz; only "
                             "gate.kind 'rule' carries rule parameters")
        return GateSpec(kind, _load_gate(root / str(gate.text("file", GATE_FILE))), features)
    if gate.optional_text("file") is not None:
        raise gate._fail("file", "null: a rule gate travels as field 'gate.rule', not as a file")
    rule = gate.section("rule")
    return GateSpec(kind, None, features, RuleGateParams(
        **{name: rule.number(name) for name in RULE_PARAMETERS}, k=rule.integer("k"), experts=rule.strings("experts")))


def _online(reader: _Fields) -> OnlineSettings | None:
    if reader.optional_mapping("online") is None:
        return None
    online = reader.section("online")
    return OnlineSettings(gate_rate=online.number("gate_rate"), meta_rate=online.number("meta_rate"),
                          entropy=online.number("entropy"), clip=online.number("clip"),
                          horizon=online.integer("horizon"), embargo=online.integer("embargo"),
                          threshold=online.number("threshold"))


def _news(reader: _Fields) -> NewsSettings | None:
    section = reader.optional_mapping("news")
    if section is None:
        return None
    try:
        return NewsSettings.from_json(section)
    except (BundleError, TypeError) as exc:
        raise BundleError(f"{reader.path}: {exc}") from None


def _per_symbol(reader: _Fields) -> dict[str, SymbolSettings]:
    section = reader.optional_mapping("per_symbol")
    out: dict[str, SymbolSettings] = {}
    for symbol, entry in (section or {}).items():
        if not isinstance(entry, dict):
            raise BundleError(f"{reader.path}: field 'per_symbol.{symbol}' is {entry!r}; expected an object")
        fields = _Fields(reader.path, entry, f"per_symbol.{symbol}")
        cost = entry.get("cost_bps")
        out[str(symbol)] = SymbolSettings(fields.text("timeframe"), fields.number("periods_per_year"),
                                          None if cost is None else fields.number("cost_bps"))
    return out


def _withheld(reader: _Fields) -> dict[str, str]:
    section = reader.optional_mapping("withheld")
    out: dict[str, str] = {}
    for symbol, reason in (section or {}).items():
        if not isinstance(reason, str) or not reason:
            raise BundleError(f"{reader.path}: field 'withheld.{symbol}' is {reason!r}; expected a non-empty string "
                              "(why the quality gate withheld the symbol)")
        out[str(symbol)] = reason
    return out


def _check(bundle: ServingBundle) -> None:
    """Cross-field checks, shared by construction and loading (the message names the field)."""
    where = f"bundle {bundle.version!r}"
    if not bundle.experts:
        raise BundleError(f"{where}: field 'experts' is empty; expected expert names such as {list(EXPERT_KINDS)}")
    missing = [e for e in bundle.experts if e not in bundle.expert_outputs]
    if missing:
        raise BundleError(f"{where}: field 'expert_outputs' lacks {missing}; every expert needs its output names")
    _check_gate(where, bundle.gate, bundle.experts, bundle.news.expert if bundle.news is not None else None)
    kind = bundle.combiner.kind
    if kind not in COMBINER_KINDS:
        raise BundleError(f"{where}: field 'combiner.kind' is {kind!r}; expected one of {list(COMBINER_KINDS)}")
    if kind == "meta" and bundle.combiner.meta is None:
        raise BundleError(f"{where}: field 'combiner.file' is empty but combiner.kind is 'meta'; expected meta.npz")
    if kind == "rule" and not bundle.combiner.rules:
        raise BundleError(f"{where}: field 'combiner.rules' is empty but combiner.kind is 'rule'; expected "
                          "{\"buy\": [\"p_up > 0.6\", ...], \"sell\": [...]}")
    if bundle.combiner.sell_threshold > bundle.combiner.buy_threshold:
        raise BundleError(f"{where}: field 'combiner.sell_threshold' ({bundle.combiner.sell_threshold}) is above "
                          f"'combiner.buy_threshold' ({bundle.combiner.buy_threshold})")
    if bundle.min_bars < 1:
        raise BundleError(f"{where}: field 'min_bars' is {bundle.min_bars}; expected a positive number of bars")
    if bundle.scores.volatility_window < 2 or bundle.scores.volatility_min_periods < 2:
        raise BundleError(f"{where}: fields 'scores.volatility_window' and 'scores.volatility_min_periods' "
                          "must be >= 2")
    x, y = np.asarray(bundle.calibration.x, dtype=float), np.asarray(bundle.calibration.y, dtype=float)
    if x.ndim != 1 or len(x) == 0 or len(x) != len(y) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BundleError(f"{where}: calibration needs finite 'x' and 'y' lists of the same non-zero length")
    if np.any(np.diff(x) < 0) or np.any((y < 0) | (y > 1)):
        raise BundleError(f"{where}: calibration 'x' must be non-decreasing and 'y' within [0, 1]")
    for symbol, reason in bundle.withheld.items():
        if symbol not in bundle.symbols:
            raise BundleError(f"{where}: field 'withheld' names {symbol!r}, which is not in field 'symbols' "
                              f"{list(bundle.symbols)}; only a trained symbol can be withheld")
        if not isinstance(reason, str) or not reason:
            raise BundleError(f"{where}: field 'withheld.{symbol}' is {reason!r}; expected a non-empty string")
    for symbol, entry in bundle.per_symbol.items():
        if not entry.periods_per_year > 0:
            raise BundleError(f"{where}: field 'per_symbol.{symbol}.periods_per_year' must be positive")
    _check_online(where, bundle)
    if bundle.news is not None and bundle.news.expert in bundle.experts:
        raise BundleError(f"{where}: field 'news.expert' is {bundle.news.expert!r}, which is also in field 'experts'; "
                          "the text expert reads documents, not bars: it is the gate's news slot (gate.npz names it "
                          "after the experts) or shown beside the signal, never one of field 'experts'")
    r = bundle.risk
    if not (r.target_vol_annual > 0 and r.max_leverage > 0 and r.periods_per_year > 0):
        raise BundleError(f"{where}: fields 'risk.target_vol_annual', 'risk.max_leverage' and "
                          "'risk.periods_per_year' must be positive")


def _check_online(where: str, bundle: ServingBundle) -> None:
    online = bundle.online
    if online is None:
        return
    if online.gate_rate < 0 or online.meta_rate < 0 or online.clip <= 0 or online.entropy < 0:
        raise BundleError(f"{where}: fields 'online.gate_rate', 'online.meta_rate' and 'online.entropy' must be >= 0 "
                          "and 'online.clip' > 0")
    if online.horizon < 1 or online.embargo < 0:
        raise BundleError(f"{where}: field 'online.horizon' must be >= 1 and 'online.embargo' >= 0")
    if online.gate_rate > 0 and (bundle.gate.weights is None or len(bundle.gate.weights.layers) != 1):
        raise BundleError(f"{where}: field 'online.gate_rate' learns a softmax gate online, but gate.kind is "
                          f"{bundle.gate.kind!r}; set online.gate_rate to 0")
    if online.meta_rate > 0 and bundle.combiner.meta is None:
        raise BundleError(f"{where}: field 'online.meta_rate' learns the meta-model online, but combiner.kind is "
                          f"{bundle.combiner.kind!r} (no meta.npz); set online.meta_rate to 0")
    if "vol30" not in bundle.gate.features:
        raise BundleError(f"{where}: online learning labels each bar with its vol30 fingerprint, but field "
                          f"'gate.features' is {list(bundle.gate.features)}")


def _check_gate(where: str, gate: GateSpec, experts: tuple[str, ...], news: str | None = None) -> None:
    """The gate's kind, its weights or rule parameters, its experts (as field 'experts', in order, then the text
    expert ``news`` when the gate has the news slot) and its k."""
    if gate.kind not in GATE_KINDS:
        raise BundleError(f"{where}: field 'gate.kind' is {gate.kind!r}; expected one of {list(GATE_KINDS)}")
    if gate.kind in WEIGHT_GATE_KINDS:
        if gate.weights is None or gate.rule is not None:
            raise BundleError(f"{where}: gate.kind {gate.kind!r} needs its NumPy weights (gate.npz) and no field "
                              "'gate.rule'; only gate.kind 'rule' carries rule parameters")
        named = tuple(gate.weights.experts)
        if named == (*experts, NEWS_EXPERT) and news is None:
            raise BundleError(f"{where}: gate.npz names experts {list(named)}, a news slot, but the bundle has no "
                              "field 'news': the slot's input is the text expert's score, so a bundle with it "
                              "carries the text expert (train with the config's 'news: {enabled: true}')")
        if named != tuple(experts) and (news is None or named != (*experts, news)):
            slot = f" (or {[*experts, news]} with the news slot)" if news is not None else ""
            raise BundleError(f"{where}: gate.npz names experts {list(named)} but field 'experts' "
                              f"is {list(experts)}{slot}; they must match in order")
        n_inputs = len(gate.weights.mean)
        if n_inputs != len(gate.features):
            raise BundleError(f"{where}: field 'gate.features' names {len(gate.features)} inputs but gate.npz "
                              f"expects {n_inputs}")
        return
    rule = gate.rule
    if rule is None or gate.weights is not None:
        raise BundleError(f"{where}: gate.kind 'rule' needs field 'gate.rule' (experts, k, "
                          f"{', '.join(RULE_PARAMETERS)}) and no NumPy weights (gate.npz)")
    if len(rule.experts) != len(RULE_EXPERTS) or tuple(rule.experts) != tuple(experts):
        raise BundleError(f"{where}: field 'gate.rule.experts' is {list(rule.experts)} but field 'experts' is "
                          f"{list(experts)}; expected the same {len(RULE_EXPERTS)} names in order, the experts of "
                          f"the {', '.join(RULE_EXPERTS)} rules")
    if not 1 <= rule.k <= len(rule.experts):
        raise BundleError(f"{where}: field 'gate.rule.k' is {rule.k}; expected 1 <= k <= {len(rule.experts)} "
                          "(the number of experts)")
    for name in RULE_PARAMETERS:
        value = getattr(rule, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BundleError(f"{where}: field 'gate.rule.{name}' is {value!r}; expected a finite number")
    if not rule.boost > -1:
        raise BundleError(f"{where}: field 'gate.rule.boost' is {rule.boost}; expected a number > -1 so that "
                          "every expert's weight 1 + boost stays positive")
    missing = [name for name in RULE_FEATURES if name not in gate.features]
    if missing:
        raise BundleError(f"{where}: field 'gate.features' is {list(gate.features)}, without {missing}; the rule "
                          f"gate reads {list(RULE_FEATURES)}")


class _Fields:
    """Typed access to one JSON object's fields, with errors naming the file and the dotted field."""

    def __init__(self, path: Path, doc: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.doc, self.prefix = path, doc, prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _fail(self, key: str, expected: str) -> BundleError:
        got = self.doc.get(key, "<missing>")
        return BundleError(f"{self.path}: field '{self._name(key)}' is {got!r}; expected {expected}")

    def _get(self, key: str, default: Any, expected: str) -> Any:
        if key in self.doc:
            return self.doc[key]
        if default is None:
            raise BundleError(f"{self.path}: field '{self._name(key)}' is missing; expected {expected}")
        return default

    def section(self, key: str) -> _Fields:
        value = self._get(key, None, "an object")
        if not isinstance(value, dict):
            raise self._fail(key, "an object")
        return _Fields(self.path, value, self._name(key))

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, None, "an object")
        if not isinstance(value, dict):
            raise self._fail(key, "an object")
        return value

    def optional_mapping(self, key: str) -> dict[str, Any] | None:
        value = self.doc.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._fail(key, "an object or null")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default, "a string")
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.doc.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null")
        return value or None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, None, "a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._fail(key, "a list of non-empty strings")
        return tuple(value)

    def integer(self, key: str, default: int | None = None) -> int:
        value = self._get(key, default, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self._get(key, default, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._fail(key, "a finite number")
        return float(value)

    def boolean(self, key: str, default: bool | None = None) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: file missing; a model bundle needs it (see docs/model-bundle.md)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); rewrite the bundle with its trainer") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{path}: expected a JSON object at the top level")
    return doc


def _npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [n for n in names if n not in data.files]
            if missing:
                raise BundleError(f"{path}: lacks array(s) {missing}; it has {sorted(data.files)}")
            return {name: np.asarray(data[name]) for name in data.files}
    except FileNotFoundError:
        raise BundleError(f"{path}: file missing; a model bundle needs it (see docs/model-bundle.md)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: not a readable NumPy .npz file without pickles ({exc})") from None


def _load_gate(path: Path) -> GateWeights:
    arrays = _npz(path, ("meta", "mean", "scale"))
    try:
        meta = json.loads(str(arrays["meta"]))
        layers = tuple((arrays[f"kernel_{i}"].astype(float), arrays[f"bias_{i}"].astype(float))
                       for i in range(int(meta["layers"])))
        weights = GateWeights(arrays["mean"].astype(float), arrays["scale"].astype(float), layers, int(meta["k"]),
                              tuple(str(e) for e in meta["experts"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: malformed gate weights ({exc!s}); expected meta {{k, experts, layers}}, "
                          "mean, scale, kernel_i and bias_i arrays") from None
    d_in = len(weights.mean)
    for i, (kernel, bias) in enumerate(weights.layers):
        if kernel.ndim != 2 or kernel.shape[0] != d_in or bias.shape != (kernel.shape[1],):
            raise BundleError(f"{path}: layer {i} has kernel {kernel.shape} and bias {bias.shape}; expected "
                              f"({d_in}, d_out) and (d_out,)")
        d_in = kernel.shape[1]
    if not weights.layers or d_in != len(weights.experts) or not 1 <= weights.k <= len(weights.experts):
        raise BundleError(f"{path}: the last layer gives {d_in} logits for {len(weights.experts)} experts with "
                          f"k={weights.k}; expected one logit per expert and 1 <= k <= experts")
    return weights


def _load_meta(path: Path) -> MetaArrays:
    arrays = _npz(path, ("features", "mean", "scale", "coef", "intercept", "classes"))
    meta = MetaArrays(tuple(str(f) for f in arrays["features"]), arrays["mean"].astype(float),
                      arrays["scale"].astype(float), arrays["coef"].astype(float), arrays["intercept"].astype(float),
                      arrays["classes"].astype(np.int64))
    if meta.coef.ndim != 2 or meta.coef.shape[1] != len(meta.features) or len(meta.mean) != len(meta.features):
        raise BundleError(f"{path}: coef {meta.coef.shape} and mean {meta.mean.shape} do not match "
                          f"{len(meta.features)} features")
    return meta


def _load_calibration(path: Path) -> Calibration:
    doc = _read_json(path)
    reader = _Fields(path, doc)
    for key in ("x", "y"):
        value = reader._get(key, None, "a list of numbers")
        if not isinstance(value, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                  for v in value):
            raise reader._fail(key, "a list of numbers")
    return Calibration(np.asarray(doc["x"], dtype=float), np.asarray(doc["y"], dtype=float))


def read_current(registry: str | Path) -> Path:
    """The folder of the version named by ``<registry>/CURRENT`` (clear error when there is none)."""
    root = Path(registry)
    pointer = root / "CURRENT"
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BundleError(f"{pointer}: file missing; no model version is serving yet. Run 'make demo' or "
                          "'signal-engine train' first, or pass --registry to a registry that has one") from None
    if not version or "/" in version or version.startswith("."):
        raise BundleError(f"{pointer}: holds {version!r}; expected one version folder name")
    return root / version
