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
from signal_engine.experts import LSTMTrendExpert, TransformerTrendExpert
from signal_engine.experts.keras_trend import KerasTrendExpert, causal_windows
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

pytestmark = pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')")
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


@pytest.mark.parametrize("cls", [LSTMTrendExpert, TransformerTrendExpert])
def test_sequence_expert_is_deterministic_causal_and_round_trips(
    cls: type[KerasTrendExpert], goog: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, y = goog
    history = frame.iloc[: FIT_AT + 1]
    expert = cls(**SMALL).fit(history, y[: FIT_AT + 1])
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
