"""Mixture of Experts: expert scores, the softmax gate, and the combiner.

The names below load lazily (PEP 562) so that the serving path can import ``signal_engine.moe.numpy_gate``
without pulling in scikit-learn or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signal_engine.moe.combiner import SIGNALS, WeightedScoreCombiner
    from signal_engine.moe.gate import SoftmaxGate
    from signal_engine.moe.scores import levels_score, trend_score, volatility_score

_WHERE = {
    "SIGNALS": "signal_engine.moe.combiner",
    "WeightedScoreCombiner": "signal_engine.moe.combiner",
    "SoftmaxGate": "signal_engine.moe.gate",
    "levels_score": "signal_engine.moe.scores",
    "trend_score": "signal_engine.moe.scores",
    "volatility_score": "signal_engine.moe.scores",
}

__all__ = ["SIGNALS", "SoftmaxGate", "WeightedScoreCombiner", "levels_score", "trend_score", "volatility_score"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'signal_engine.moe' has no attribute {name!r}")
