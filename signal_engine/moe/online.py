"""Online learning between refits (seed 002, "Online Learning"): the gate and the meta-model learn bar by bar.

At a refit the softmax gate and the meta-model combiner are fitted on every row whose label is known. Until the
next refit they are frozen, although a new label becomes known at every bar. The :class:`OnlineLearner` starts
from the weights fitted at the refit and takes one gradient step per label as it becomes known:

- the gate ascends its own training objective (``SoftmaxGate``'s J, the same gradient,
  :func:`~signal_engine.moe.numpy_gate.softmax_gate_gradient`) on the bar's fingerprint, expert scores and
  clipped forward z, without the L2 pull (which is a penalty on the whole fit, not on one row); an expert
  whose score at that bar is NaN abstained there, and its weight does not move on that row;
- the meta-model descends the multinomial log loss of the bar's realised trend class on the features it read
  at that bar (the experts' scores and the gate weights it was given). A class the model never saw in training
  is not learnt (its logit does not exist); such a row is counted in ``skipped``.

A bar's label is known ``horizon + embargo`` bars after it (the walk-forward's rule, ``known_by``), so at bar t
the learner has seen exactly the rows a refit at t would train on that the last refit did not. NumPy only: the
backtest (``evaluation/backtest.py``) and the live book step (``live/models.py``) run this same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from signal_engine.moe.numpy_gate import GateWeights, MetaArrays, softmax, softmax_gate_gradient
from signal_engine.moe.standardise import standardise


@dataclass(frozen=True)
class OnlineRates:
    """Step sizes of the online updates (0 turns that part off) and the gate objective's settings.

    ``entropy`` and ``clip`` are the gate's own (``gate.entropy``, ``SoftmaxGate.clip``), so an online step
    moves along the objective the refit maximised.
    """

    gate: float
    meta: float
    entropy: float = 0.01
    clip: float = 3.0

    def __post_init__(self) -> None:
        for name in ("gate", "meta"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"online rate {name!r} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class RealisedRow:
    """One past bar whose label just became known: what the models read there, and what happened.

    ``gate`` is the gate weights the combiner used at the bar (the meta-model's inputs); ``forward_z`` the
    realised forward return in units of its volatility (NaN: not learnt by the gate); ``trend`` the realised
    class (DOWN 0, NEUTRAL 1, UP 2; -1: not learnt by the meta-model).
    """

    fingerprint: np.ndarray
    scores: np.ndarray
    gate: np.ndarray
    forward_z: float
    trend: int


@dataclass
class OnlineLearner:
    """The gate's and the meta-model's weights since the last refit, one gradient step per realised row.

    ``gate`` is a one-layer (softmax) gate or None (a rule or MLP gate: not learnt online); ``meta`` the
    meta-model's weights or None (weighted or rule combiner, or too few rows at the refit).
    """

    gate: GateWeights | None
    meta: MetaArrays | None
    rates: OnlineRates
    updates: int = 0
    skipped: int = 0
    _gate_params: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.gate is not None and len(self.gate.layers) != 1:
            raise ValueError(f"the online gate update needs a one-layer softmax gate; this gate has "
                             f"{len(self.gate.layers)} layers (moe.gate: mlp); use moe.gate: softmax")
        if self.gate is not None:
            kernel, bias = self.gate.layers[0]
            self._gate_params = (np.array(kernel, dtype=float), np.array(bias, dtype=float))
        if self.meta is not None:
            m = self.meta
            self.meta = replace(m, mean=np.asarray(m.mean, dtype=float), scale=np.asarray(m.scale, dtype=float),
                                coef=np.array(m.coef, dtype=float), intercept=np.array(m.intercept, dtype=float),
                                classes=np.asarray(m.classes, dtype=np.int64))

    def learn(self, row: RealisedRow) -> None:
        """One step of each part on ``row`` (a part whose rate is 0 or whose label is missing does not move)."""
        learnt = False
        if self.gate is not None and self.rates.gate > 0.0 and math.isfinite(row.forward_z):
            self._gate_step(row)
            learnt = True
        if self.meta is not None and self.rates.meta > 0.0 and row.trend >= 0:
            learnt = self._meta_step(row) or learnt
        if learnt:
            self.updates += 1
        else:
            self.skipped += 1

    def gate_weights(self) -> GateWeights | None:
        """The gate as it stands now (the fitted gate before any step)."""
        if self.gate is None or self._gate_params is None:
            return self.gate
        kernel, bias = self._gate_params
        return GateWeights(self.gate.mean, self.gate.scale, ((kernel.copy(), bias.copy()),), self.gate.k,
                           self.gate.experts)

    def meta_arrays(self) -> MetaArrays | None:
        """The meta-model as it stands now (the fitted model before any step)."""
        if self.meta is None:
            return None
        m = self.meta
        return replace(m, coef=m.coef.copy(), intercept=m.intercept.copy())

    def _gate_step(self, row: RealisedRow) -> None:
        assert self.gate is not None and self._gate_params is not None
        kernel, bias = self._gate_params
        inputs = standardise(np.asarray(row.fingerprint, dtype=float).reshape(1, -1), self.gate.mean, self.gate.scale)
        scores = np.asarray(row.scores, dtype=float).reshape(1, -1)  # NaN: that expert abstained, no gradient
        target = np.clip(np.array([row.forward_z], dtype=float), -self.rates.clip, self.rates.clip)
        grad_kernel, grad_bias = softmax_gate_gradient(inputs, scores, target, kernel, bias,
                                                       entropy=self.rates.entropy, l2=0.0)
        kernel += self.rates.gate * grad_kernel
        bias += self.rates.gate * grad_bias

    def _meta_step(self, row: RealisedRow) -> bool:
        assert self.meta is not None
        m = self.meta
        classes = np.asarray(m.classes, dtype=np.int64)
        if row.trend not in classes.tolist():
            return False
        features = np.concatenate((np.asarray(row.scores, dtype=float), np.asarray(row.gate, dtype=float)))
        z = standardise(features.reshape(1, -1), m.mean, m.scale)[0]
        logits = z @ m.coef.T + m.intercept
        if len(m.coef) == 1:  # binary: one logit for classes[1] against classes[0]
            p_second = float(softmax(np.array([[-logits[0] / 2, logits[0] / 2]]))[0, 1])
            error = np.array([p_second - float(row.trend == classes[1])])
        else:
            proba = softmax(logits.reshape(1, -1))[0]
            error = proba - (classes == row.trend).astype(float)
        m.coef[...] -= self.rates.meta * np.outer(error, z)
        m.intercept[...] -= self.rates.meta * error
        return True
