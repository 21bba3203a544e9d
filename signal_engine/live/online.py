"""Online learning in the live book: one timeframe model's learner for one symbol, kept in the book state.

The backtest's learner (:func:`signal_engine.evaluation.backtest._online_block`) starts from the weights fitted
at each refit and, at every bar, first learns the bar whose label has just become known (``horizon + embargo``
bars back), then decides. The live book does the same with the same :class:`~signal_engine.moe.online.OnlineLearner`:
it starts from the bundle's weights (its training is the refit) and carries, from bar to bar in the book state
(``BookState.model_state``), the weights learnt so far and the bars decided whose label is not known yet: what
the models read there (fingerprint, expert scores, the gate weights used; with the news slot, ``moe.news``, its
input is one of the scores, as in the backtest's learner), the close and vol30 that define the label. At each
bar the label of a pending bar is computed from the stored closes exactly as ``signal_engine.labels.make_labels``
computes it. A new bundle version starts a new learner.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from signal_engine.json_values import json_number, number_from_json
from signal_engine.labels import DOWN, NEUTRAL, UP
from signal_engine.moe.numpy_gate import GateWeights, MetaArrays
from signal_engine.moe.online import OnlineLearner, OnlineRates, RealisedRow
from signal_engine.serving.bundle import BundleError, OnlineSettings, ServingBundle
from signal_engine.serving.combine import Learned

SIGMA_FEATURE = "vol30"


@dataclass(frozen=True)
class PendingBar:
    """A decided bar whose label is not known yet."""

    timestamp: str
    fingerprint: tuple[float, ...]
    scores: tuple[float, ...]
    gate: tuple[float, ...]
    close: float
    sigma: float

    def to_json(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "fingerprint": [json_number(v) for v in self.fingerprint],
                "scores": [json_number(v) for v in self.scores], "gate": [json_number(v) for v in self.gate],
                "close": json_number(self.close), "sigma": json_number(self.sigma)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PendingBar:
        def numbers(key: str) -> tuple[float, ...]:
            return tuple(float(number_from_json(v)) for v in doc[key])

        return cls(str(doc["timestamp"]), numbers("fingerprint"), numbers("scores"), numbers("gate"),
                   float(number_from_json(doc["close"])), float(number_from_json(doc["sigma"])))


class LiveLearner:
    """The online learner of one model of ``bundle`` on one symbol, restored from its stored ``state``.

    ``state`` is what :meth:`to_json` wrote at the previous bar (None, or another bundle version's: start
    from the bundle's weights with nothing pending).
    """

    def __init__(self, bundle: ServingBundle, state: Mapping[str, Any] | None) -> None:
        if bundle.online is None:
            raise BundleError(f"bundle {bundle.version!r}: no field 'online'; this bundle does not learn online")
        self.bundle = bundle
        self.settings: OnlineSettings = bundle.online
        gate = bundle.gate.weights if self.settings.gate_rate > 0 else None
        meta = bundle.combiner.meta if self.settings.meta_rate > 0 else None
        if meta is not None:
            expected = (*(f"score_{e}" for e in bundle.slots), *(f"gate_{e}" for e in bundle.slots))
            if tuple(meta.features) != expected:
                raise BundleError(f"bundle {bundle.version!r}: online learning of the meta-model reads its inputs "
                                  f"{list(expected)}, but meta.npz's features are {list(meta.features)}")
        self.pending: list[PendingBar] = []
        fresh = state is None or state.get("version") != bundle.version
        if not fresh:
            assert state is not None
            gate = _restored_gate(gate, state.get("gate"))
            meta = _restored_meta(meta, state.get("meta"))
            self.pending = [PendingBar.from_json(p) for p in state.get("pending", [])]
            updates = int(state.get("updates", 0))
        else:
            updates = 0
        s = self.settings
        self.learner = OnlineLearner(gate, meta, OnlineRates(gate=s.gate_rate, meta=s.meta_rate, entropy=s.entropy,
                                                             clip=s.clip))
        self.learner.updates = updates
        self._sigma = bundle.gate.features.index(SIGMA_FEATURE)

    def learn_known(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Learn every pending bar whose label is known at the last of ``rows`` (the symbol's stored bars,
        oldest first); returns how many were learnt. A pending bar older than ``rows`` is dropped."""
        s = self.settings
        position = {str(r["timestamp"]): i for i, r in enumerate(rows)}
        closes = [float(r["close"]) for r in rows]
        last, lag, learnt = len(rows) - 1, s.horizon + s.embargo, 0
        keep: list[PendingBar] = []
        for bar in self.pending:
            i = position.get(bar.timestamp)
            if i is None or i + lag > last:
                if i is not None:
                    keep.append(bar)
                continue
            forward = math.log(closes[i + s.horizon]) - math.log(bar.close)
            scale = bar.sigma * math.sqrt(s.horizon)
            z = forward / scale if math.isfinite(scale) and scale != 0 else math.nan
            trend = -1 if not math.isfinite(z) else UP if z > s.threshold else DOWN if z < -s.threshold else NEUTRAL
            self.learner.learn(RealisedRow(np.array(bar.fingerprint), np.array(bar.scores), np.array(bar.gate), z,
                                           trend))
            learnt += 1
        self.pending = keep
        return learnt

    def learned(self) -> Learned:
        """The weights to decide with now (in place of the bundle's)."""
        meta = self.learner.meta_arrays()
        return Learned(gate=self.learner.gate_weights(), meta=None if meta is None else (meta.coef, meta.intercept))

    def remember(self, timestamp: str, fingerprint: np.ndarray, scores: np.ndarray, gate: np.ndarray,
                 close: float) -> None:
        """Keep a decided bar until its label is known."""
        fingerprint = np.asarray(fingerprint, dtype=float).reshape(-1)
        self.pending.append(PendingBar(timestamp, tuple(fingerprint.tolist()),
                                       tuple(np.asarray(scores, dtype=float).reshape(-1).tolist()),
                                       tuple(np.asarray(gate, dtype=float).reshape(-1).tolist()), float(close),
                                       float(fingerprint[self._sigma])))

    def to_json(self) -> dict[str, Any]:
        gate, meta = self.learner.gate_weights(), self.learner.meta_arrays()
        return {
            "version": self.bundle.version,
            "updates": self.learner.updates,
            "gate": (None if gate is None
                     else {"kernel": _matrix(gate.layers[0][0]), "bias": _vector(gate.layers[0][1])}),
            "meta": None if meta is None else {"coef": _matrix(meta.coef), "intercept": _vector(meta.intercept)},
            "pending": [p.to_json() for p in self.pending],
        }


def _vector(values: np.ndarray) -> list[Any]:
    return [json_number(float(v)) for v in np.asarray(values, dtype=float).reshape(-1)]


def _matrix(values: np.ndarray) -> list[list[Any]]:
    return [_vector(row) for row in np.asarray(values, dtype=float)]


def _array(doc: Any, shape: tuple[int, ...], field: str) -> np.ndarray:
    try:
        values = np.array([[float(number_from_json(v)) for v in row] for row in doc] if len(shape) == 2
                          else [float(number_from_json(v)) for v in doc], dtype=float)
    except (TypeError, ValueError):
        raise BundleError(f"book state: model_state field {field!r} is not a list of numbers") from None
    if values.shape != shape:
        raise BundleError(f"book state: model_state field {field!r} has shape {values.shape}, the bundle's is {shape}")
    return values


def _restored_gate(gate: GateWeights | None, doc: Any) -> GateWeights | None:
    if gate is None or doc is None:
        return gate
    kernel, bias = gate.layers[0]
    return GateWeights(gate.mean, gate.scale, ((_array(doc["kernel"], kernel.shape, "gate.kernel"),
                                                _array(doc["bias"], bias.shape, "gate.bias")),), gate.k, gate.experts)


def _restored_meta(meta: MetaArrays | None, doc: Any) -> MetaArrays | None:
    if meta is None or doc is None:
        return meta
    return dataclasses.replace(meta, coef=_array(doc["coef"], np.shape(meta.coef), "meta.coef"),
                               intercept=_array(doc["intercept"], np.shape(meta.intercept), "meta.intercept"))
