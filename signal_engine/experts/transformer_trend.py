"""A small Transformer encoder trend expert over windows of recent bars."""

from __future__ import annotations

from typing import Any

import numpy as np

from signal_engine.experts.keras_trend import KerasTrendExpert, time_average
from signal_engine.experts.trend import TREND_FEATURES


def sinusoidal_positions(length: int, depth: int) -> np.ndarray:
    """(length, depth) sine/cosine position encoding of Vaswani et al. (2017)."""
    position = np.arange(length)[:, None]
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(depth)[None, :] // 2)) / depth)
    angles = position * rates
    return np.where(np.arange(depth)[None, :] % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)


class TransformerTrendExpert(KerasTrendExpert):
    """One Transformer encoder block over the last ``window`` bars, pooled, softmax over down/neutral/up.

    The features of each bar are projected to ``d_model``, given sine/cosine positions, passed through
    multi-head self-attention and a feed-forward layer (each with a residual and layer normalisation),
    then average-pooled over time.

    Parameters
    ----------
    window : bars per input sequence.
    d_model, heads, ff_units, dropout : encoder size.
    epochs, batch_size, learning_rate, max_train_rows, random_state, features : training settings (see
        :class:`~signal_engine.experts.lstm_trend.LSTMTrendExpert`).
    calibration, validation_fraction, purge, refit : see
        :class:`~signal_engine.experts.trend_base.TrendClassifier`.

    References
    ----------
    Vaswani et al. (2017), "Attention is all you need", NeurIPS; Lim et al. (2021), "Temporal fusion
    transformers for interpretable multi-horizon time series forecasting", IJF; seed 002 (stage 2).
    """

    def __init__(
        self,
        window: int = 32,
        d_model: int = 16,
        heads: int = 2,
        ff_units: int = 32,
        dropout: float = 0.1,
        epochs: int = 4,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        max_train_rows: int | None = 3000,
        random_state: int = 7,
        features: tuple[str, ...] = TREND_FEATURES,
        calibration: str | None = "platt",
        validation_fraction: float = 0.25,
        purge: int = 5,
        refit: bool = False,
    ) -> None:
        self.window = window
        self.d_model = d_model
        self.heads = heads
        self.ff_units = ff_units
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_train_rows = max_train_rows
        self.random_state = random_state
        self.features = features
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.purge = purge
        self.refit = refit

    def _build(self, keras: Any, shapes: list[tuple[int, ...]]) -> Any:
        layers = keras.layers
        inputs = keras.Input(shape=shapes[0], name="window")
        positions = keras.ops.convert_to_tensor(sinusoidal_positions(shapes[0][0], self.d_model))
        x = layers.Dense(self.d_model, name="project")(inputs) + positions
        attended = layers.MultiHeadAttention(num_heads=self.heads, key_dim=max(1, self.d_model // self.heads),
                                             dropout=self.dropout, name="attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-6)(x + attended)
        feed = layers.Dense(self.ff_units, activation="relu")(x)
        feed = layers.Dense(self.d_model)(layers.Dropout(self.dropout)(feed))
        x = layers.LayerNormalization(epsilon=1e-6)(x + feed)
        pooled = time_average(keras, x)
        outputs = layers.Dense(3, activation="softmax", name="trend", dtype="float32")(pooled)
        return keras.Model(inputs, outputs, name="transformer_trend")
