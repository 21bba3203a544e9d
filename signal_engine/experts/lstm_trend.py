"""LSTM trend expert over windows of recent bars."""

from __future__ import annotations

from typing import Any

from signal_engine.experts.keras_trend import KerasTrendExpert
from signal_engine.experts.trend import TREND_FEATURES


class LSTMTrendExpert(KerasTrendExpert):
    """An LSTM over the standardised feature set of the last ``window`` bars, softmax over down/neutral/up.

    Parameters
    ----------
    window : bars per input sequence.
    units : LSTM units.
    dropout : dropout on the last hidden state.
    epochs, batch_size, learning_rate : Adam training settings.
    max_train_rows : most recent training rows kept (None: all).
    random_state : seed of weights, dropout and shuffling.
    features : columns of the market frame fed at each time step.
    calibration, validation_fraction, purge, refit : see
        :class:`~signal_engine.experts.trend_base.TrendClassifier`.

    References
    ----------
    Hochreiter and Schmidhuber (1997), "Long short-term memory", Neural Computation; seed 002 (stage 2
    sequence models); Fischer and Krauss (2018), "Deep learning with long short-term memory networks for
    financial market predictions", EJOR.
    """

    def __init__(
        self,
        window: int = 32,
        units: int = 16,
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
        self.units = units
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
        inputs = keras.Input(shape=shapes[0], name="window")
        hidden = keras.layers.LSTM(self.units, name="lstm")(inputs)
        hidden = keras.layers.Dropout(self.dropout)(hidden)
        outputs = keras.layers.Dense(3, activation="softmax", name="trend", dtype="float32")(hidden)
        return keras.Model(inputs, outputs, name="lstm_trend")
