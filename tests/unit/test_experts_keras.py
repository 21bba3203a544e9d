"""Keras sequence experts: fit and predict on small real data, deterministic, causal, TF imported lazily."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signal_engine.data import load_prices
from signal_engine.errors import ConfigError
from signal_engine.experts import LSTMTrendExpert, TransformerTrendExpert
from signal_engine.experts.keras_trend import KerasTrendExpert, causal_windows
from signal_engine.experts.tf_runtime import PRECISION_VARIABLE, keras_policy, precision_policy, tensorflow_available
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

pytestmark = [pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')"),
              pytest.mark.tensorflow]
FIT_AT = 600
SMALL = {"window": 16, "epochs": 1, "batch_size": 64, "max_train_rows": 400}


@pytest.fixture(scope="module")
def goog(goog_csv: Path) -> tuple[pd.DataFrame, np.ndarray]:
    bars = load_prices(goog_csv).bars.iloc[:800]
    frame = bars.join(feature_frame(bars))
    labels = make_labels(bars, frame["vol30"].to_numpy(), horizon=5, threshold=0.5)
    known = np.arange(len(frame)) + 5 <= FIT_AT
    return frame, np.where(known & (labels.trend >= 0), labels.trend, -1)


def test_causal_windows_end_at_each_row() -> None:
    matrix = np.arange(10, dtype=float).reshape(5, 2)
    windows = causal_windows(matrix, 3)
    assert windows.shape == (5, 3, 2)
    np.testing.assert_array_equal(windows[4], matrix[2:5])
    np.testing.assert_array_equal(windows[0], [[0, 0], [0, 0], [0, 1]])


@pytest.fixture(scope="module")
def fitted(goog: tuple[pd.DataFrame, np.ndarray]) -> dict[type[KerasTrendExpert], KerasTrendExpert]:
    """Each expert class fitted once on the history to ``FIT_AT``, without a precision setting (float32 on this
    CPU), shared by the tests that read such a fit (the determinism test fits a second one)."""
    frame, y = goog
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(PRECISION_VARIABLE, raising=False)
        return {cls: cls(**SMALL).fit(frame.iloc[: FIT_AT + 1], y[: FIT_AT + 1])
                for cls in (LSTMTrendExpert, TransformerTrendExpert)}


@pytest.mark.parametrize("cls", [LSTMTrendExpert, TransformerTrendExpert])
def test_sequence_expert_is_deterministic_causal_and_round_trips(
    cls: type[KerasTrendExpert], goog: tuple[pd.DataFrame, np.ndarray],
    fitted: dict[type[KerasTrendExpert], KerasTrendExpert]
) -> None:
    frame, y = goog
    history = frame.iloc[: FIT_AT + 1]
    expert = fitted[cls]
    proba = expert.predict_proba(frame)
    assert proba.shape == (len(frame), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert expert.n_validation_rows_ > 0 and expert.n_train_rows_ <= SMALL["max_train_rows"]
    # the same data and seed give byte-identical weights and outputs
    again = cls(**SMALL).fit(history, y[: FIT_AT + 1])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(expert.weights_, again.weights_, strict=True))
    assert again.predict_proba(frame).tobytes() == proba.tobytes()
    # row t uses rows <= t only: truncating later rows or dropping rows older than the window changes nothing
    np.testing.assert_array_equal(expert.predict_proba(frame.iloc[:700]), proba[:700])
    context = expert.context_bars()
    assert context == SMALL["window"] - 1
    np.testing.assert_array_equal(expert.predict_proba(frame.iloc[650 - context : 700])[context:], proba[650:700])
    # the network pickles as NumPy weights and is rebuilt on first use
    restored = pickle.loads(pickle.dumps(expert))
    assert restored._network is None
    assert restored.predict_proba(frame).tobytes() == proba.tobytes()


def test_importing_the_experts_and_registry_does_not_import_tensorflow() -> None:
    code = ("import sys, signal_engine.experts, signal_engine.archetypes, signal_engine.registry, "
            "signal_engine.evaluation.expert_suite; print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"


# -- precision: mixed_float16 on Tensor Core GPUs, float32 elsewhere ------------------------------------------

@pytest.mark.parametrize(("capabilities", "requested", "policy"), [
    ([], None, "float32"),                    # CPU
    ([(9, 0)], None, "mixed_float16"),        # H100
    ([(8, 6), (8, 6)], None, "mixed_float16"),  # A10G pair
    ([(6, 1)], None, "float32"),              # Pascal: no Tensor Cores
    ([(8, 0), (6, 0)], None, "float32"),      # any GPU without them keeps the run float32
    ([(9, 0)], "float32", "float32"),         # SIGNAL_ENGINE_PRECISION wins
    ([], "mixed_float16", "mixed_float16"),
])
def test_precision_policy_uses_mixed_float16_only_on_tensor_core_gpus(
    capabilities: list[tuple[int, int]], requested: str | None, policy: str
) -> None:
    assert precision_policy(capabilities, requested) == policy


def test_precision_policy_names_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="SIGNAL_ENGINE_PRECISION is 'half'; expected float32 or mixed_float16"):
        precision_policy([], "half")


@pytest.mark.parametrize("cls", [LSTMTrendExpert])
def test_on_this_cpu_the_keras_experts_train_in_float32(cls: type[KerasTrendExpert],
                                                          fitted: dict[type[KerasTrendExpert], KerasTrendExpert],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRECISION_VARIABLE, raising=False)
    assert keras_policy() == "float32", "no GPU here: TensorFlow lists none"
    network = fitted[cls].network()  # fitted without a precision setting
    assert {layer.dtype_policy.name for layer in network.layers} == {"float32"}


@pytest.mark.parametrize("cls", [LSTMTrendExpert, TransformerTrendExpert])
def test_under_mixed_precision_the_network_computes_in_float16_and_answers_in_float32(
    cls: type[KerasTrendExpert], goog: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Tensor Core GPU gets, forced here on CPU (slower, same graph): every hidden layer computes in
    float16, the softmax output and the weights stay float32, the loss is scaled, the probabilities sum to 1."""
    from signal_engine.experts.tf_runtime import tensorflow

    monkeypatch.setenv(PRECISION_VARIABLE, "mixed_float16")
    keras = tensorflow().keras
    frame, y = goog
    expert = cls(**SMALL).fit(frame.iloc[: FIT_AT + 1], y[: FIT_AT + 1])
    network = expert._network
    assert network.get_layer("trend").compute_dtype == "float32"
    hidden = [layer for layer in network.layers if layer.weights and layer.name != "trend"]
    assert hidden and all(layer.compute_dtype == "float16" for layer in hidden if "normalization" not in layer.name)
    assert all(w.dtype == np.float32 for w in expert.weights_)
    assert isinstance(network.optimizer, keras.mixed_precision.LossScaleOptimizer)
    proba = expert.predict_proba(frame.iloc[: FIT_AT + 50])
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert keras.mixed_precision.global_policy().name == "float32", "the global policy is restored after the build"
