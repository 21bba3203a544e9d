"""The pooled sequence expert: one LSTM trained on several series at once, with the pooled kernel-bank expert's
inputs and training (:class:`~signal_engine.archetypes.pooled_expert.PooledTrendExpert`)."""

from __future__ import annotations

from typing import Any

from signal_engine.archetypes.pooled_expert import PooledTrendExpert


class PooledLSTMTrendExpert(PooledTrendExpert):
    """Trend probabilities (down, neutral, up) from one LSTM over the bar windows of several series at once.

    Inputs per row: the last ``window`` bars of the row's own series (log close, open, high and low relative to the
    row's close in units of the series' own trailing volatility, and volume z;
    :func:`~signal_engine.archetypes.inputs.bar_windows`, point in time), plus the series' one-hot code.
    Network: an LSTM of ``units`` units read at the window's last bar, layer normalised, then the pooled experts'
    head (:meth:`~signal_engine.archetypes.pooled_expert.PooledTrendExpert._head`: learned series embedding, a ReLU
    layer of ``hidden`` units, dropout, softmax). Training: that of
    :class:`~signal_engine.archetypes.pooled_expert.PooledTrendExpert` (equal rows of every series per epoch,
    validation tails after a purge, early stopping, Platt calibration, deterministic for a given ``random_state``).

    Parameters
    ----------
    window : bars per input window.
    units : LSTM units.
    embedding_dim, hidden, dropout : series embedding size, dense head size and dropout.
    samples_per_series : rows of each series per epoch.
    max_epochs, patience : the longest training and the early-stopping patience, in epochs.
    batch_size, learning_rate : Adam settings.
    validation_fraction, purge : each series' validation tail and the bars purged before it.
    calibration : method of the calibrator (None: raw network probabilities).
    min_series_rows : fewest labelled rows for a series to be trained on.
    random_state : seed of weights, dropout and the epochs' samples.

    References
    ----------
    Hochreiter and Schmidhuber (1997), "Long short-term memory", Neural Computation; Salinas et al. (2020),
    "DeepAR: probabilistic forecasting with autoregressive recurrent networks", International Journal of
    Forecasting (one recurrent network over many related series, per-series scaling, equal-share sampling).
    """

    def __init__(
        self,
        window: int = 64,
        units: int = 16,
        embedding_dim: int = 4,
        hidden: int = 16,
        dropout: float = 0.1,
        samples_per_series: int = 512,
        max_epochs: int = 30,
        patience: int = 4,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        validation_fraction: float = 0.25,
        purge: int = 5,
        calibration: str | None = "platt",
        min_series_rows: int = 100,
        random_state: int = 7,
    ) -> None:
        self.window = window
        self.units = units
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.dropout = dropout
        self.samples_per_series = samples_per_series
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.purge = purge
        self.calibration = calibration
        self.min_series_rows = min_series_rows
        self.random_state = random_state

    def _check_settings(self) -> None:
        if self.units < 1:
            raise ValueError(f"units must be at least 1, got {self.units}")

    def _build(self, keras: Any, shapes: list[tuple[int, ...]]) -> Any:
        layers = keras.layers
        bars = keras.Input(shape=shapes[0], name="bars")
        series = keras.Input(shape=shapes[1], name="series")
        state = layers.LSTM(self.units, name="lstm")(bars)
        summary = layers.LayerNormalization()(state)
        return keras.Model([bars, series], self._head(keras, summary, series), name="pooled_lstm")
