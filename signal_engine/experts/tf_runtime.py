"""Lazy, deterministic TensorFlow: the only place that imports it.

The serving path and the classical experts never import TensorFlow; the Keras experts call
:func:`tensorflow` inside ``fit``/``predict``. The first call fixes the process to deterministic ops
and (when TensorFlow has not started yet) single-threaded kernels, so the same input and seed give
byte-identical weights and predictions.

On a GPU with Tensor Cores (compute capability 7.0 or later: V100, T4, A10G, A100, L4, H100) the Keras experts
build their networks under Keras' ``mixed_float16`` policy (float16 compute, float32 variables, loss scaling added
by ``compile``), with their softmax output layer in float32; on CPU they stay float32, so local runs are unchanged.
``SIGNAL_ENGINE_PRECISION`` (``float32`` or ``mixed_float16``) overrides the choice.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from signal_engine.errors import ConfigError

PRECISION_VARIABLE = "SIGNAL_ENGINE_PRECISION"
FLOAT32, MIXED_FLOAT16 = "float32", "mixed_float16"
TENSOR_CORES = (7, 0)

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


def precision_policy(compute_capabilities: Sequence[tuple[int, int]], requested: str | None = None) -> str:
    """The Keras dtype policy for the visible GPUs' compute capabilities (none on CPU): ``mixed_float16`` when
    there is at least one GPU and every one has Tensor Cores, where float16 matrix products are several times
    faster; ``float32`` otherwise (on CPU float16 is slower, on older GPUs it gains nothing). ``requested``
    (the ``SIGNAL_ENGINE_PRECISION`` value) wins when set."""
    if requested:
        if requested not in (FLOAT32, MIXED_FLOAT16):
            raise ConfigError(f"{PRECISION_VARIABLE} is {requested!r}; expected {FLOAT32} or {MIXED_FLOAT16}")
        return requested
    if compute_capabilities and all(tuple(cc) >= TENSOR_CORES for cc in compute_capabilities):
        return MIXED_FLOAT16
    return FLOAT32


def gpu_compute_capabilities(tf: ModuleType) -> list[tuple[int, int]]:
    """The compute capability of each GPU TensorFlow sees ((0, 0) when it does not report one)."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        found = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append((int(found[0]), int(found[1])) if found else (0, 0))
    return capabilities


def keras_policy(environ: Mapping[str, str] | None = None) -> str:
    """The dtype policy the Keras experts build their networks under on this machine."""
    env = os.environ if environ is None else environ
    return precision_policy(gpu_compute_capabilities(tensorflow()), env.get(PRECISION_VARIABLE))


@contextmanager
def precision_scope(keras: Any) -> Iterator[str]:
    """Build (and compile) a network under :func:`keras_policy`; the previous global policy is restored after,
    so nothing else (the MLP gate's own training loop) changes. Layers keep the policy they were built with."""
    policy = keras_policy()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)
