"""Market archetypes of seed 001: fingerprints, the rule gate, the kernel bank and its Keras experts.

Importing this package does not import TensorFlow; the experts import it when they fit or predict.
"""

from signal_engine.archetypes.catalogue import ARCHETYPES, Archetype
from signal_engine.archetypes.fingerprint import SeriesFingerprint, archetype_scores, route, series_fingerprint
from signal_engine.archetypes.kernel_bank_expert import KernelBankExpert
from signal_engine.archetypes.kernels import kernel_bank, stack_1d, stack_2d

__all__ = [
    "ARCHETYPES",
    "Archetype",
    "KernelBankExpert",
    "SeriesFingerprint",
    "archetype_scores",
    "kernel_bank",
    "route",
    "series_fingerprint",
    "stack_1d",
    "stack_2d",
]
