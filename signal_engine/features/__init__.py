"""Point-in-time, vectorised features: technical indicators and the regime fingerprint.

>>> from signal_engine.features import compute_features, FEATURE_NAMES, FINGERPRINT_NAMES
"""

from signal_engine.features.fingerprint import FINGERPRINT_NAMES
from signal_engine.features.technical import FEATURE_NAMES, WARMUP_BARS, compute_features, feature_frame

__all__ = ["FEATURE_NAMES", "FINGERPRINT_NAMES", "WARMUP_BARS", "compute_features", "feature_frame"]
