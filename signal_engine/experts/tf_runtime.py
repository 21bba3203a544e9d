"""Lazy, deterministic TensorFlow: the only place that imports it.

The serving path and the classical experts never import TensorFlow; the Keras experts call
:func:`tensorflow` inside ``fit``/``predict``. The first call fixes the process to deterministic ops
and (when TensorFlow has not started yet) single-threaded kernels, so the same input and seed give
byte-identical weights and predictions.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

_configured = False


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported here (the ``tf`` extra is installed)."""
    return importlib.util.find_spec("tensorflow") is not None


def tensorflow() -> ModuleType:
    """Import TensorFlow once, quietly, with deterministic and single-threaded kernels."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    if not _configured:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:  # the runtime already started elsewhere; determinism below still holds
            pass
        tf.config.experimental.enable_op_determinism()
        tf.get_logger().setLevel("ERROR")
        _configured = True
    return tf


def seed_everything(seed: int) -> Any:
    """Seed Python, NumPy and TensorFlow through Keras; returns the ``keras`` module."""
    tf = tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(int(seed))
    return keras
