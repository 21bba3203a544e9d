"""The archetype expert: a Keras network whose first convolutions are the archetype's kernel bank."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from signal_engine.archetypes.catalogue import ARCHETYPES
from signal_engine.archetypes.inputs import VOL_WINDOW, bar_windows, chart_images, iv_inputs
from signal_engine.archetypes.kernels import kernel_bank, stack_1d, stack_2d
from signal_engine.experts.keras_trend import KerasTrendExpert, time_average


def template_initializer(values: np.ndarray) -> Any:
    """A Keras initializer that returns ``values`` (the shape Keras asks for must match)."""

    def initialise(shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        if tuple(shape) != values.shape:
            raise ValueError(f"template of shape {values.shape} cannot initialise a kernel of shape {tuple(shape)}")
        return values.astype(dtype or "float32")

    return initialise


class KernelBankExpert(KerasTrendExpert):
    """Trend probabilities from a convolutional network initialised with an archetype's kernel bank.

    The 1-D bank (``kernel_bank_1d``, a causal Conv1D over the bar channels close, open, high, low,
    volume) holds the shared SMA/EMA boxes, gap detector and Gaussians plus the archetype's own kernels;
    the 2-D bank (``kernel_bank_2d``, a Conv2D over a chart image of price bins x time, or over the
    implied-volatility grid time x strike for ``options_skew``) holds the Sobel edges plus the archetype's
    own 2-D kernels. Both start exactly at the templates of :mod:`signal_engine.archetypes.kernels` and
    stay trainable. The banks' responses at the last bar, averaged over time and (2-D) max- and
    average-pooled feed a small dense head with a softmax over down/neutral/up.

    Parameters
    ----------
    archetype : a name in :data:`signal_engine.archetypes.catalogue.ARCHETYPES`.
    window : bars per input window.
    bins : price bins of the chart image.
    hidden, dropout : dense head size and dropout.
    epochs, batch_size, learning_rate, max_train_rows, random_state : training settings.
    calibration, validation_fraction, purge, refit : see
        :class:`~signal_engine.experts.trend_base.TrendClassifier`.

    References
    ----------
    Seed 001 (archetype experts, kernel bank of learnable templates); LeCun et al. (1998), "Gradient-based
    learning applied to document recognition"; Sezer and Ozbayoglu (2018), "Algorithmic financial trading
    with deep convolutional neural networks: time series to image conversion approach", Applied Soft
    Computing.
    """

    features: tuple[str, ...] = ()

    def __init__(
        self,
        archetype: str = "equity_daily",
        window: int = 64,
        bins: int = 16,
        hidden: int = 16,
        dropout: float = 0.1,
        epochs: int = 4,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        max_train_rows: int | None = 3000,
        random_state: int = 7,
        calibration: str | None = "platt",
        validation_fraction: float = 0.25,
        purge: int = 5,
        refit: bool = False,
    ) -> None:
        self.archetype = archetype
        self.window = window
        self.bins = bins
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_train_rows = max_train_rows
        self.random_state = random_state
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.purge = purge
        self.refit = refit

    @property
    def inputs_kind(self) -> str:
        """``"bars"`` or ``"iv_surface"``: what the archetype's network reads."""
        if self.archetype not in ARCHETYPES:
            raise ValueError(f"unknown archetype {self.archetype!r}; expected one of {sorted(ARCHETYPES)}")
        return ARCHETYPES[self.archetype].inputs

    def context_bars(self) -> int | None:
        return self.window - 1 + VOL_WINDOW

    def template_names(self) -> tuple[list[str], list[str]]:
        """Names of the 1-D and 2-D bank filters, in filter order."""
        bank_1d, bank_2d = kernel_bank(self.archetype)
        return list(bank_1d), list(bank_2d)

    def _fit_scaler(self, X: pd.DataFrame, rows: np.ndarray) -> None:
        """Inputs are normalised per window; nothing to learn."""

    def _inputs(self, X: pd.DataFrame) -> list[np.ndarray]:
        if self.inputs_kind == "iv_surface":
            return list(iv_inputs(X, self.window))
        windows = bar_windows(X, self.window)
        return [windows, chart_images(windows, self.bins)]

    def _build(self, keras: Any, shapes: list[tuple[int, ...]]) -> Any:
        layers = keras.layers
        bank_1d, bank_2d = kernel_bank(self.archetype)
        kernel_1d, kernel_2d = stack_1d(bank_1d), stack_2d(bank_2d)
        bars = keras.Input(shape=shapes[0], name="bars")
        image = keras.Input(shape=shapes[1], name="image")
        response_1d = layers.Conv1D(kernel_1d.shape[2], kernel_1d.shape[0], padding="causal", use_bias=False,
                                    kernel_initializer=template_initializer(kernel_1d), trainable=True,
                                    name="kernel_bank_1d")(bars)
        response_2d = layers.Conv2D(kernel_2d.shape[3], kernel_2d.shape[:2], padding="same", use_bias=False,
                                    kernel_initializer=template_initializer(kernel_2d), trainable=True,
                                    name="kernel_bank_2d")(image)
        last = layers.Flatten()(layers.Cropping1D((shapes[0][0] - 1, 0))(response_1d))
        summary = layers.Concatenate()([
            last,
            time_average(keras, response_1d),
            layers.GlobalMaxPooling2D()(response_2d),
            layers.GlobalAveragePooling2D()(response_2d),
        ])
        hidden = layers.Dense(self.hidden, activation="relu")(layers.LayerNormalization()(summary))
        outputs = layers.Dense(3, activation="softmax", name="trend",
                               dtype="float32")(layers.Dropout(self.dropout)(hidden))
        return keras.Model([bars, image], outputs, name=f"kernel_bank_{self.archetype}")
