"""The combiner's NumPy path: expert answers -> scores -> gate -> combined score -> confidence -> risk layer.

Vectorised over rows (one row per symbol), so one request and a batch of 1,000 run the same code. Imports
NumPy and the NumPy-only parts of the domain (gate forward pass, fingerprint, risk layer) and nothing else:
this runs in the combiner Lambda, which ships without pandas, scikit-learn and SciPy.

Degradation: an expert without a usable answer gets no score; the gate's dense weights (the softmax, or the rule
gate's normalised rule weights) are renormalised over the experts that answered (then sparsified to the top
``min(k, answered)``), so the signal is what the gate would give if only those experts existed. The walk-forward
backtest routes an abstaining expert (a NaN score) through the same function (``moe.numpy_gate.available_top_k``).

News slot: a bundle whose gate weighs the text expert (``ServingBundle.news_slot``, ``moe.news``) takes its score
per row as ``news`` (the news block's aggregate score at the decision time, NaN where there is no news): that slot
is scored as given and abstains like any other expert (weight 0, the others renormalised).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from signal_engine.features.fingerprint import FINGERPRINT_NAMES, FINGERPRINT_WARMUP, fingerprint_features
from signal_engine.moe.conditions import condition_holds, parse_condition, rule_direction
from signal_engine.moe.numpy_gate import GateWeights, available_top_k, gate_logits, rule_gate_dense, softmax
from signal_engine.moe.scores import confidence_map, levels_score, meta_probabilities, weighted_score
from signal_engine.risk.holding import next_held
from signal_engine.risk.sizing import volatility_target_position
from signal_engine.serving.bundle import ServingBundle

SIGNALS = ("sell", "hold", "buy")
TREND, LEVELS, VOLATILITY = "trend", "levels", "volatility"


@dataclass(frozen=True)
class Learned:
    """Weights learnt online since training, in place of the bundle's: the softmax gate (None: the bundle's) and
    the meta-model's (coef, intercept) (None: the bundle's)."""

    gate: GateWeights | None = None
    meta: tuple[np.ndarray, np.ndarray] | None = None


class NoExpertAnswered(Exception):
    """Every expert failed for a row: there is no signal to give."""


@dataclass(frozen=True)
class Decisions:
    """The combined result per row; arrays have one entry (or row) per symbol."""

    experts: tuple[str, ...]
    scores: np.ndarray          # (n, E), NaN where the expert did not answer
    available: np.ndarray       # (n, E) bool
    gate: np.ndarray            # (n, E), rows sum to 1 over available experts
    combined: np.ndarray        # (n,)
    signal_direction: np.ndarray  # (n,) -1 / 0 / +1 from the thresholds
    held_direction: np.ndarray  # (n,) after the hold rule
    confidence: np.ndarray      # (n,)
    position: np.ndarray        # (n,)
    vol_forecast: np.ndarray    # (n,)
    adjustments: tuple[tuple[dict[str, Any], ...], ...]

    def signal(self, row: int) -> str:
        return SIGNALS[int(self.signal_direction[row]) + 1]


def fingerprint_row(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray | None,
                    names: Sequence[str] = FINGERPRINT_NAMES) -> np.ndarray:
    """The fingerprint features of the last bar (NaN while a feature is in its warm-up), in ``names`` order."""
    n = len(close)
    panel = {k: np.asarray(v, dtype=float).reshape(n, 1) for k, v in (("high", high), ("low", low), ("close", close))}
    vol_panel = None if volume is None else np.asarray(volume, dtype=float).reshape(n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        features = fingerprint_features(panel["high"], panel["low"], panel["close"], vol_panel)
    out = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        if n - 1 >= FINGERPRINT_WARMUP[name]:
            out[i] = features[name][-1, 0]
    return out


def volatility_score(vol_history: np.ndarray, window: int, min_periods: int) -> float:
    """``-tanh(z)`` of the last log volatility forecast against the last ``window`` forecasts (itself included).

    The NumPy form of ``signal_engine.moe.scores.volatility_score`` at the last bar: population std, NaN
    forecasts skipped, 0 before ``min_periods`` usable forecasts or when the std is 0.
    """
    history = np.asarray(vol_history, dtype=float)[-window:]
    if len(history) == 0 or not np.isfinite(history[-1]) or history[-1] <= 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(history)
    logs = logs[np.isfinite(logs)]
    if len(logs) < min_periods:
        return 0.0
    std = float(logs.std())
    if std <= 0:
        return 0.0
    return float(-np.tanh((logs[-1] - logs.mean()) / std))


def _scored_last_bar(history: list[Any]) -> bool:
    """Whether a volatility answer's ``vol_history`` ends with a forecast of the decided bar: a list whose last
    value is a finite number. A null there is an expert that abstained on that bar (``vol_har_implied`` without
    the bar's implied volatility): its score is missing, not 0, and the gate gives it no weight."""
    if not history:
        return False
    last = history[-1]
    return isinstance(last, int | float) and not isinstance(last, bool) and math.isfinite(last)


def _number(answer: Mapping[str, Any] | None, key: str) -> float:
    if answer is None:
        return np.nan
    value = answer.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return np.nan
    return float(value)


class Combiner:
    """Applies one bundle's gate, combiner, calibration and risk layer (see the module docstring)."""

    def __init__(self, bundle: ServingBundle) -> None:
        self.bundle = bundle
        unknown = [f for f in bundle.gate.features if f not in FINGERPRINT_NAMES]
        if unknown:
            from signal_engine.serving.bundle import BundleError

            raise BundleError(f"bundle {bundle.version!r}: field 'gate.features' names {unknown}; the serving path "
                              f"computes {list(FINGERPRINT_NAMES)}")
        self.experts = bundle.slots
        self.answering = bundle.experts  # the experts that answer from bars; the news slot's score is given
        self._kinds = {name: _kind(name, bundle.expert_outputs[name]) for name in bundle.experts}
        self._rules = _parse_rules(bundle.combiner.rules) if bundle.combiner.kind == "rule" else None

    def fingerprint(self, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                    volume: np.ndarray | None) -> np.ndarray:
        return fingerprint_row(high, low, close, volume, self.bundle.gate.features)

    def decide(self, answers: Sequence[Mapping[str, Mapping[str, Any] | None]], close: np.ndarray,
               fingerprints: np.ndarray, previous_position: np.ndarray | None = None,
               periods_per_year: np.ndarray | None = None, learned: Learned | None = None,
               news: np.ndarray | None = None) -> Decisions:
        """Decisions for ``n`` rows: ``answers[i][expert]`` (None when it failed), last close and fingerprint.

        ``previous_position`` (NaN where unknown) lets the hold rule keep a position the score no longer
        enters but has not exited; without it every row starts flat, as the backtest's first bar does.
        ``periods_per_year`` per row annualises the volatility target (default: the bundle's).
        ``learned`` replaces the bundle's softmax gate and meta-model weights by those learnt online since
        training (``signal_engine.live.online``).
        ``news`` is the news slot's score per row (NaN: no news, the slot abstains; None: NaN on every row), read
        only when the bundle's gate has the slot.
        """
        bundle, n, experts = self.bundle, len(answers), self.experts
        close = np.asarray(close, dtype=float).reshape(n)
        outputs = self._outputs(answers, close)
        scores = np.full((n, len(experts)), np.nan)
        for j, name in enumerate(experts):
            if name not in self._kinds:  # the news slot: its score is the news block's
                scores[:, j] = np.full(n, np.nan) if news is None else np.asarray(news, dtype=float).reshape(n)
                continue
            kind = self._kinds[name]
            if kind == TREND:
                scores[:, j] = outputs[f"{name}.p_up"] - outputs[f"{name}.p_down"]
            elif kind == LEVELS:
                support, resistance = outputs[f"{name}.support"], outputs[f"{name}.resistance"]
                ok = np.isfinite(support) & np.isfinite(resistance)
                scores[:, j] = np.where(ok, levels_score(close, support, resistance), np.nan)
            else:
                window, periods = bundle.scores.volatility_window, bundle.scores.volatility_min_periods
                for i, answer in enumerate(answers):
                    reply = answer.get(name)
                    history = reply.get("vol_history") if reply is not None else None
                    if np.isfinite(outputs[f"{name}.vol_forecast"][i]) and isinstance(history, list) \
                            and _scored_last_bar(history):
                        scores[i, j] = volatility_score(np.array([np.nan if v is None else v for v in history],
                                                                 dtype=float), window, periods)
        available = np.isfinite(scores)
        if not available.any(axis=1).all():
            raise NoExpertAnswered(f"no expert answered for row(s) {np.flatnonzero(~available.any(axis=1)).tolist()}")
        gate = self._gate(np.asarray(fingerprints, dtype=float).reshape(n, -1), available,
                          None if learned is None else learned.gate)
        combined = self._combined(scores, gate, outputs, available, None if learned is None else learned.meta)
        c = bundle.combiner
        direction = np.where(combined > c.buy_threshold, 1, np.where(combined < c.sell_threshold, -1, 0))
        confidence = confidence_map(combined, bundle.calibration.x, bundle.calibration.y)
        vol = self._vol_forecast(outputs, n)
        held = self._held(combined, previous_position)
        ppy = np.full(n, bundle.risk.periods_per_year) if periods_per_year is None else np.asarray(periods_per_year)
        target = bundle.risk.target_vol_annual / np.sqrt(ppy.astype(float))
        position = volatility_target_position(held, vol, target_vol_per_bar=target,
                                              max_leverage=bundle.risk.max_leverage,
                                              allow_short=bundle.risk.allow_short)
        adjustments = tuple(self._adjustments(i, direction, held, vol, float(target[i]), previous_position)
                            for i in range(n))
        return Decisions(experts, scores, available, gate, combined, direction, held, confidence, position, vol,
                         adjustments)

    # -- parts -----------------------------------------------------------------------------------------

    def _outputs(self, answers: Sequence[Mapping[str, Mapping[str, Any] | None]],
                 close: np.ndarray) -> dict[str, np.ndarray]:
        """Every expert output as a column ``<expert>.<output>``, plus the rule fields of the first of each kind."""
        columns: dict[str, np.ndarray] = {}
        for name in self.answering:
            for output in self.bundle.expert_outputs[name]:
                columns[f"{name}.{output}"] = np.array([_number(a.get(name), output) for a in answers])
        plain: dict[str, np.ndarray] = {}
        for name in self.answering:
            for output in self.bundle.expert_outputs[name]:
                plain.setdefault(output, columns[f"{name}.{output}"])
        if "p_up" in plain and "p_down" in plain and "p_neutral" not in plain:
            plain["p_neutral"] = 1.0 - plain["p_up"] - plain["p_down"]
        with np.errstate(invalid="ignore", divide="ignore"):
            if "support" in plain:
                plain["support_distance"] = (close - plain["support"]) / close
            if "resistance" in plain:
                plain["resistance_distance"] = (plain["resistance"] - close) / close
        return {**plain, **columns}

    def _gate(self, fingerprints: np.ndarray, available: np.ndarray, learned: GateWeights | None) -> np.ndarray:
        spec = self.bundle.gate
        if spec.rule is not None:
            proba = rule_gate_dense(fingerprints, spec.features, spec.rule)
        else:
            proba = softmax(gate_logits(learned or self.bundle.gate_weights, fingerprints))
        return available_top_k(proba, available, spec.k)

    def _combined(self, scores: np.ndarray, gate: np.ndarray, outputs: Mapping[str, np.ndarray],
                  available: np.ndarray, learned: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        c = self.bundle.combiner
        if c.kind == "rule" and self._rules is not None:
            n = len(scores)
            buy, sell = (_all_hold(self._rules[s], outputs, n) for s in ("buy", "sell"))
            return rule_direction(buy, sell).astype(float)
        if c.kind == "meta" and c.meta is not None:
            meta = c.meta
            features = {**outputs}
            for j, name in enumerate(self.experts):
                features[f"score_{name}"] = scores[:, j]
                features[f"gate_{name}"] = gate[:, j]
            missing = [f for f in meta.features if f not in features]
            if missing:
                from signal_engine.serving.bundle import BundleError

                raise BundleError(f"bundle {self.bundle.version!r}: meta.npz reads {missing}, which the serving path "
                                  f"does not compute; it has {sorted(features)}")
            X = np.column_stack([features[f] for f in meta.features])
            coef, intercept = (meta.coef, meta.intercept) if learned is None else learned
            full = meta_probabilities(X, meta.mean, meta.scale, coef, intercept, meta.classes)
            return np.asarray(full[:, 2] - full[:, 0])
        return weighted_score(np.where(available, scores, 0.0), gate)

    def _vol_forecast(self, outputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        for name in self.answering:
            key = f"{name}.vol_forecast"
            if key in outputs:
                return np.asarray(outputs[key])
        return np.full(n, np.nan)

    def _held(self, combined: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """The backtest's hold rule (``next_held``) from each row's previous position (flat when unknown)."""
        c, exit_level = self.bundle.combiner, self.bundle.risk.exit_level
        state = np.zeros(len(combined)) if previous is None else np.nan_to_num(np.sign(previous))
        return np.array([float(next_held(score, int(held), enter_long=c.buy_threshold, enter_short=c.sell_threshold,
                                         exit_level=exit_level))
                         for score, held in zip(np.asarray(combined, dtype=float).tolist(), state.tolist(),
                                                strict=True)])

    def _adjustments(self, i: int, direction: np.ndarray, held: np.ndarray, vol: np.ndarray, target: float,
                     previous: np.ndarray | None) -> tuple[dict[str, Any], ...]:
        risk = self.bundle.risk
        out: list[dict[str, Any]] = []
        names = {1: "long", -1: "short", 0: "flat"}
        if held[i] != direction[i]:
            before = float(previous[i]) if previous is not None else 0.0
            out.append({"rule": "hold", "detail": f"kept {names[int(held[i])]}: the score is inside the thresholds "
                        f"and has not crossed the exit level {risk.exit_level:g} (previous position {before:g})"})
        if held[i] < 0 and not risk.allow_short:
            out.append({"rule": "no_short", "detail": "short selling is off (risk.allow_short=false): sell means flat"})
        elif held[i] != 0:
            if not (np.isfinite(vol[i]) and vol[i] > 0):
                out.append({"rule": "no_volatility_forecast",
                            "detail": "no usable volatility forecast: no exposure is taken"})
            else:
                raw = target / vol[i]
                out.append({"rule": "volatility_target", "value": float(raw),
                            "detail": f"size = target {target:.5f} per bar / forecast {vol[i]:.5f} = "
                                      f"{raw:.3f}"})
                if raw > risk.max_leverage:
                    out.append({"rule": "max_leverage", "value": risk.max_leverage,
                                "detail": f"size {raw:.3f} capped at the maximum leverage {risk.max_leverage:g}"})
                if raw > 1.0 and risk.max_leverage > 1.0:
                    out.append({"rule": "exposure_cap", "value": 1.0, "detail": "exposure clipped to [-1, 1]"})
        return tuple(out)


def _kind(name: str, outputs: Sequence[str]) -> str:
    if "p_up" in outputs and "p_down" in outputs:
        return TREND
    if "support" in outputs and "resistance" in outputs:
        return LEVELS
    if "vol_forecast" in outputs:
        return VOLATILITY
    from signal_engine.serving.bundle import BundleError

    raise BundleError(f"expert {name!r} answers {list(outputs)}; the serving path scores trend (p_up, p_down), "
                      "levels (support, resistance) and volatility (vol_forecast) experts")


def _parse_rules(rules: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[tuple[str, str, float], ...]]:
    from signal_engine.serving.bundle import BundleError

    parsed: dict[str, tuple[tuple[str, str, float], ...]] = {"buy": (), "sell": ()}
    for signal, conditions in (rules or {}).items():
        if signal not in parsed:
            raise BundleError(f"field 'combiner.rules' has signal {signal!r}; expected 'buy' and/or 'sell'")
        items = []
        for text in conditions:
            condition = parse_condition(text)
            if condition is None:
                raise BundleError(f"field 'combiner.rules.{signal}': cannot read condition {text!r}; expected "
                                  "'field op number' such as 'p_up > 0.6'")
            items.append(condition)
        parsed[signal] = tuple(items)
    return parsed


def _all_hold(conditions: Sequence[tuple[str, str, float]], outputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    if not conditions:
        return np.zeros(n, dtype=bool)
    result = np.ones(n, dtype=bool)
    for field_name, op, value in conditions:
        column = outputs.get(field_name)
        if column is None:
            return np.zeros(n, dtype=bool)
        result &= condition_holds(column, op, value)
    return result
