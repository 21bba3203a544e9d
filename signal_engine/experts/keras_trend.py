"""Keras trend experts over windows of recent bars: training, inference, pickling without TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signal_engine.experts.tf_runtime import precision_scope, seed_everything
from signal_engine.experts.trend_base import TrendClassifier, fit_standardiser, standardise

PREDICT_BATCH = 256


def causal_windows(matrix: np.ndarray, window: int) -> np.ndarray:
    """(n, window, channels) float32 windows ending at each row; rows before the first are zero."""
    padded = np.concatenate((np.zeros((window - 1, matrix.shape[1]), dtype=np.float32),
                             matrix.astype(np.float32)))
    return np.ascontiguousarray(sliding_window_view(padded, window, axis=0).transpose(0, 2, 1))


def time_average(keras: Any, sequence: Any) -> Any:
    """Mean over the time axis of a (batch, time, features) tensor, row by row.

    ``GlobalAveragePooling1D`` reduces the middle axis with kernels whose summation order depends on a
    row's position in the batch; averaging the innermost axis after a transpose does not.
    """
    transposed = keras.layers.Permute((2, 1))(sequence)
    return keras.layers.GlobalAveragePooling1D(data_format="channels_first")(transposed)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with zero rows appended up to ``rows``.

    Every inference batch has the same shape, so a row's output never depends on how many rows share
    its batch (CPU kernels may sum in a different order for a ragged last batch).
    """
    if len(array) == rows:
        return array
    padding = np.zeros((rows - len(array), *array.shape[1:]), dtype=array.dtype)
    return np.concatenate((array, padding))


def _feed(arrays: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """A single input as itself, several as a list (the structure Keras expects)."""
    return arrays[0] if len(arrays) == 1 else arrays


def predict_in_batches(model: Any, inputs: list[np.ndarray], n_classes: int) -> np.ndarray:
    """The network's probabilities for every row of ``inputs``, in fixed-size batches, each row summing to 1."""
    n = len(inputs[0])
    chunks = []
    for start in range(0, n, PREDICT_BATCH):
        rows_here = min(PREDICT_BATCH, n - start)
        batch = [_pad_rows(array[start : start + rows_here], PREDICT_BATCH) for array in inputs]
        chunks.append(np.asarray(model(_feed(batch), training=False), dtype=np.float64)[:rows_here])
    proba = np.concatenate(chunks) if chunks else np.zeros((0, n_classes))
    return proba / proba.sum(axis=1, keepdims=True)


class KerasTrendExpert(TrendClassifier):
    """Base of the TensorFlow/Keras trend experts: a network over the last ``window`` bars of each row.

    Subclasses give ``_build(keras, shapes)`` (the network, softmax over down/neutral/up in an output layer
    with ``dtype="float32"``, which keeps it float32 under mixed precision) and may override ``_inputs(X)``
    (one array per network input, each with one entry per row of ``X``).
    TensorFlow is imported only inside ``fit`` and ``predict``; the trained weights are kept as NumPy
    arrays (``weights_``), so a fitted expert pickles and ``clone``s without TensorFlow and rebuilds its
    network on first use. Training is deterministic: fixed seed, deterministic single-threaded ops.

    Hyper-parameters common to every subclass: ``window``, ``epochs``, ``batch_size``,
    ``learning_rate``, ``max_train_rows`` (the most recent rows kept for training, None for all),
    ``random_state``, ``calibration``, ``validation_fraction``, ``purge``, ``refit``.
    """

    uses_tensorflow = True
    window: int
    epochs: int
    batch_size: int
    learning_rate: float
    max_train_rows: int | None
    random_state: int
    features: tuple[str, ...]

    def context_bars(self) -> int | None:
        return self.window - 1

    # -- inputs ---------------------------------------------------------------------------------
    def _fit_scaler(self, X: pd.DataFrame, rows: np.ndarray) -> None:
        """Per-feature mean and scale over the training rows (known at the fit bar)."""
        self.center_, self.scale_ = fit_standardiser(self._feature_matrix(X)[rows])

    def _inputs(self, X: pd.DataFrame) -> list[np.ndarray]:
        return [causal_windows(standardise(self._feature_matrix(X), self.center_, self.scale_), self.window)]

    def _trainable(self, X: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        return rows >= self.window - 1

    # -- network --------------------------------------------------------------------------------
    def _build(self, keras: Any, shapes: list[tuple[int, ...]]) -> Any:
        raise NotImplementedError

    def _fit_model(self, X: pd.DataFrame, labels: np.ndarray, rows: np.ndarray) -> None:
        if self.max_train_rows is not None:
            rows = rows[-self.max_train_rows :]
        keras = seed_everything(self.random_state)
        self._fit_scaler(X, rows)
        inputs = [array[rows] for array in self._inputs(X)]
        self.input_shapes_ = [tuple(int(d) for d in array.shape[1:]) for array in inputs]
        with precision_scope(keras):
            model = self._build(keras, self.input_shapes_)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
                          loss="sparse_categorical_crossentropy")
        history = model.fit(_feed(inputs), labels[rows].astype(np.int32), epochs=self.epochs,
                            batch_size=self.batch_size, shuffle=True, verbose=0)
        self.loss_curve_ = [float(v) for v in history.history["loss"]]
        self.n_train_rows_ = len(rows)
        self.weights_ = [np.array(w) for w in model.get_weights()]
        self._network = model

    def _raw_proba(self, X: pd.DataFrame, rows: np.ndarray | None) -> np.ndarray:
        inputs = self._inputs(X)
        if rows is not None:
            inputs = [array[rows] for array in inputs]
        return predict_in_batches(self.network(), inputs, len(self.classes_))

    def network(self) -> Any:
        """The fitted Keras model, rebuilt from ``weights_`` after unpickling."""
        model = getattr(self, "_network", None)
        if model is None:
            keras = seed_everything(self.random_state)
            with precision_scope(keras):
                model = self._build(keras, self.input_shapes_)
            model.set_weights(self.weights_)
            self._network = model
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_network", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._network = None
