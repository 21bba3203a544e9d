"""Point-in-time, vectorised features: technical indicators and the regime fingerprint.

>>> from signal_engine.features import compute_features, FEATURE_NAMES, FINGERPRINT_NAMES

The names load lazily (PEP 562): the serving path imports ``signal_engine.features.fingerprint`` (NumPy
only) without pulling in pandas through ``technical``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signal_engine.features.fingerprint import FINGERPRINT_NAMES
    from signal_engine.features.technical import (
        FEATURE_NAMES,
        MOMENTUM_NAMES,
        WARMUP_BARS,
        compute_features,
        feature_frame,
    )

_WHERE = {
    "FINGERPRINT_NAMES": "signal_engine.features.fingerprint",
    "FEATURE_NAMES": "signal_engine.features.technical",
    "MOMENTUM_NAMES": "signal_engine.features.technical",
    "WARMUP_BARS": "signal_engine.features.technical",
    "compute_features": "signal_engine.features.technical",
    "feature_frame": "signal_engine.features.technical",
}

__all__ = ["FEATURE_NAMES", "FINGERPRINT_NAMES", "MOMENTUM_NAMES", "WARMUP_BARS", "compute_features", "feature_frame"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'signal_engine.features' has no attribute {name!r}")
