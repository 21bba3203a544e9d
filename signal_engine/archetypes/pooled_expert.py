"""The pooled archetype expert: one Keras network trained on several series at once.

Rows of several series travel in one long frame with a ``series`` column (:data:`SERIES_COLUMN`); each series'
rows are in time order. Windows, normalisation and the validation tail are built series by series, so nothing of
one series leaks into another's inputs, and a series' row t still depends only on that series' rows up to t.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd

from signal_engine.archetypes.catalogue import ARCHETYPES
from signal_engine.archetypes.inputs import VOL_WINDOW, bar_windows
from signal_engine.archetypes.kernel_bank_expert import template_initializer
from signal_engine.archetypes.kernels import kernel_bank, stack_1d
from signal_engine.experts.calibration import MulticlassCalibrator, temporal_split
from signal_engine.experts.keras_trend import KerasTrendExpert, predict_in_batches, time_average
from signal_engine.experts.tf_runtime import precision_scope, seed_everything, tensorflow
from signal_engine.labels import TREND_CLASSES

SERIES_COLUMN = "series"
LOSS_FLOOR = 1e-7


def series_positions(names: np.ndarray) -> dict[str, np.ndarray]:
    """Row positions of each series, series in order of first appearance, positions increasing."""
    values = np.asarray(names).astype(str)
    order = dict.fromkeys(values.tolist())
    return {name: np.flatnonzero(values == name) for name in order}


def equal_share_sample(groups: Sequence[np.ndarray], per_group: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's rows: exactly ``per_group`` rows of every group, shuffled together.

    A group of at least ``per_group`` rows gives a sample without replacement; a smaller group gives every row
    ``per_group // size`` times and a sample without replacement of ``per_group % size`` rows besides, so each
    group weighs the same in the epoch whatever its length.
    """
    if per_group < 1:
        raise ValueError(f"per_group must be at least 1, got {per_group}")
    picked = []
    for group in groups:
        rows = np.asarray(group)
        if len(rows) == 0:
            raise ValueError("a group holds no rows")
        repeats, rest = divmod(per_group, len(rows))
        picked.append(np.concatenate((np.tile(rows, repeats), rng.choice(rows, rest, replace=False))))
    epoch = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return epoch[rng.permutation(len(epoch))]


def epoch_dataset(inputs: Sequence[np.ndarray], labels: np.ndarray, rows: np.ndarray, batch_size: int) -> Any:
    """One epoch's rows as a ``tf.data`` pipeline: batches in the epoch's order, the next batches prepared while the
    accelerator works on the current one (``prefetch``)."""
    tf = tensorflow()
    features = tuple(np.ascontiguousarray(array[rows]) for array in inputs)
    data = tf.data.Dataset.from_tensor_slices((features, labels[rows].astype(np.int32)))
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def labelled_window_bars(labels: np.ndarray, window: int) -> np.ndarray:
    """Positions in one series of the rows a pooled network learns from: a known label (0, 1 or 2) and a full
    ``window`` of the series' bars ending there."""
    return np.flatnonzero((np.asarray(labels) >= 0) & (np.arange(len(labels)) >= window - 1))


def mean_series_log_loss(proba: np.ndarray, labels: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """The equal-weight mean over groups of each group's mean cross-entropy (``groups`` index ``proba``)."""
    picked = np.clip(proba[np.arange(len(labels)), labels], LOSS_FLOOR, 1.0)
    return float(np.mean([-np.log(picked[group]).mean() for group in groups]))


class PooledTrendExpert(KerasTrendExpert):
    """Base of the pooled trend experts: one Keras network over the bar windows of several series at once.

    Inputs per row: the last ``window`` bars of the row's own series
    (:func:`~signal_engine.archetypes.inputs.bar_windows`, point in time), plus the series' one-hot code (uniform
    for a series not seen in training).
    Training (shared by every pooled network): each epoch's rows reach the network through a ``tf.data`` pipeline
    (:func:`epoch_dataset`), under the Keras precision policy of
    :func:`~signal_engine.experts.tf_runtime.precision_scope`. Rows whose label ``y`` is 0, 1 or 2 (-1 marks history
    only) and whose window lies inside their series. Each series' last ``validation_fraction`` of those rows, after a
    purge of ``purge`` bars, is its validation tail. Every epoch draws exactly ``samples_per_series`` rows of each
    series (:func:`equal_share_sample`). Training stops when the equal-weight mean over series of the validation log
    loss has not improved for ``patience`` epochs and keeps the best epoch's weights; a multinomial Platt calibrator
    fitted on the validation tails maps the network's probabilities. Series with fewer than ``min_series_rows``
    labelled rows are left out of training. Deterministic for a given ``random_state``.

    Subclasses give ``__init__`` (the hyper-parameters, among them those named here) and ``_build(keras, shapes)``
    over the inputs ``bars`` (n, window, 5) and ``series`` (n, series trained).
    """

    features: tuple[str, ...] = ()
    window: int
    embedding_dim: int
    hidden: int
    dropout: float
    samples_per_series: int
    max_epochs: int
    patience: int
    validation_fraction: float
    purge: int
    calibration: str | None
    min_series_rows: int

    def context_bars(self) -> int | None:
        return self.window - 1 + VOL_WINDOW

    def _check_settings(self) -> None:
        """Refuse settings the network cannot be built with (nothing to refuse by default)."""

    # -- fit ----------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        started = time.perf_counter()
        labels = np.asarray(y, dtype=np.int64)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        self._check_settings()
        self.classes_ = np.arange(len(TREND_CLASSES))
        fit_groups, validation_groups = self._split(X, labels)
        self.series_ = tuple(fit_groups)
        inputs = self._inputs(X)
        self.input_shapes_ = [tuple(int(d) for d in array.shape[1:]) for array in inputs]
        model = self._train(inputs, labels, list(fit_groups.values()), list(validation_groups.values()))
        validation_rows = np.concatenate(list(validation_groups.values()))
        raw = predict_in_batches(model, [array[validation_rows] for array in inputs], len(self.classes_))
        method = self.calibration if len(validation_rows) else None
        self.calibrator_ = MulticlassCalibrator(method=method, n_classes=len(self.classes_)).fit(
            raw, labels[validation_rows])
        self.fit_rows_per_series_ = {name: len(rows) for name, rows in fit_groups.items()}
        self.validation_rows_per_series_ = {name: len(rows) for name, rows in validation_groups.items()}
        self.n_fit_rows_ = sum(self.fit_rows_per_series_.values())
        self.n_validation_rows_ = len(validation_rows)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _split(self, X: pd.DataFrame, labels: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per series: the fit rows and the validation tail (positions in ``X``), series with enough rows only."""
        fit_groups, validation_groups = {}, {}
        for name, positions in self._positions(X).items():
            bars = labelled_window_bars(labels[positions], self.window)
            if len(bars) < self.min_series_rows:
                continue
            fit_bars, validation_bars = temporal_split(bars, self.validation_fraction, self.purge)
            if len(fit_bars) < self.min_series_rows:
                fit_bars, validation_bars = bars, bars[:0]
            fit_groups[name], validation_groups[name] = positions[fit_bars], positions[validation_bars]
        if not fit_groups:
            raise ValueError(f"no series has {self.min_series_rows} rows with a known trend label (0, 1 or 2)")
        return fit_groups, validation_groups

    def _train(self, inputs: list[np.ndarray], labels: np.ndarray, fit_groups: list[np.ndarray],
               validation_groups: list[np.ndarray]) -> Any:
        keras = seed_everything(self.random_state)
        rng = np.random.default_rng(self.random_state)
        with precision_scope(keras):
            model = self._build(keras, self.input_shapes_)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=self.learning_rate),
                          loss="sparse_categorical_crossentropy")
        tails = [group for group in validation_groups if len(group)]
        tail_rows = np.concatenate(tails) if tails else np.zeros(0, dtype=np.int64)
        tail_groups = np.split(np.arange(len(tail_rows)), np.cumsum([len(g) for g in tails])[:-1]) if tails else []
        best_loss, best_weights, waited = np.inf, None, 0
        self.validation_curve_: list[float] = []
        self.samples_seen_, self.train_seconds_, self.best_epoch_ = 0, 0.0, 0
        for epoch in range(1, self.max_epochs + 1):
            self._before_epoch(epoch)
            rows = equal_share_sample(fit_groups, self.samples_per_series, rng)
            started = time.perf_counter()
            model.fit(epoch_dataset(inputs, labels, rows, self.batch_size), epochs=1, shuffle=False, verbose=0)
            self.train_seconds_ += time.perf_counter() - started
            self.samples_seen_ += len(rows)
            self.epochs_run_ = epoch
            if not tails:
                self.best_epoch_ = epoch
                continue
            proba = predict_in_batches(model, [array[tail_rows] for array in inputs], len(TREND_CLASSES))
            loss = mean_series_log_loss(proba, labels[tail_rows], tail_groups)
            self.validation_curve_.append(loss)
            if loss < best_loss:
                best_loss, best_weights, waited, self.best_epoch_ = loss, model.get_weights(), 0, epoch
            else:
                waited += 1
                if waited >= self.patience:
                    break
        if best_weights is not None:
            model.set_weights(best_weights)
        self.samples_per_epoch_ = {name: self.samples_per_series for name in self.series_}
        self.weights_ = [np.array(w) for w in model.get_weights()]
        self._network = model
        return model

    def _before_epoch(self, epoch: int) -> None:
        """Called before each epoch trains, ``validation_curve_`` holding the epochs before it (a tuner reports them
        to its trial here and may stop the fit by raising); nothing by default."""

    # -- inputs and network -------------------------------------------------------------------------
    def _positions(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        if SERIES_COLUMN not in X.columns:
            raise ValueError(f"a pooled expert reads a '{SERIES_COLUMN}' column naming each row's series")
        groups = series_positions(X[SERIES_COLUMN].to_numpy())
        for name, positions in groups.items():
            if not X.index[positions].is_monotonic_increasing:
                raise ValueError(f"the rows of series {name!r} are not in time order")
        return groups

    def _inputs(self, X: pd.DataFrame) -> list[np.ndarray]:
        """Per row: the bar window of its own series and the one-hot code of the series (uniform when unseen)."""
        windows = np.zeros((len(X), self.window, 5), dtype=np.float32)
        codes = np.zeros((len(X), len(self.series_)), dtype=np.float32)
        known = {name: k for k, name in enumerate(self.series_)}
        for name, positions in self._positions(X).items():
            windows[positions] = bar_windows(X.iloc[positions], self.window)
            if name in known:
                codes[positions, known[name]] = 1.0
            else:
                codes[positions] = 1.0 / len(self.series_)
        return [windows, codes]

    def for_series(self, name: str) -> SeriesExpert:
        """The fitted network as the expert of series ``name``: rows without a ``series`` column are that series'."""
        return SeriesExpert(self, name)

    def _head(self, keras: Any, summary: Any, series: Any) -> Any:
        """The shared head over a window's ``summary``: joined with the learned series embedding (a bias-free dense
        layer over the one-hot code, so an unseen series gets the mean embedding), a ReLU layer of ``hidden``
        units, dropout, softmax over down/neutral/up in float32."""
        layers = keras.layers
        embedding = layers.Dense(self.embedding_dim, use_bias=False, name="series_embedding")(series)
        hidden = layers.Dense(self.hidden, activation="relu")(layers.Concatenate()([summary, embedding]))
        return layers.Dense(3, activation="softmax", name="trend", dtype="float32")(
            layers.Dropout(self.dropout)(hidden))


class PooledKernelTrendExpert(PooledTrendExpert):
    """Trend probabilities (down, neutral, up) from one kernel-bank network trained on several series at once.

    Inputs per row: the last ``window`` bars of the row's own series as log close, open, high and low relative to
    the row's close in units of that series' own trailing 30-bar volatility x sqrt(window), and volume z
    (:func:`~signal_engine.archetypes.inputs.bar_windows`, point in time), plus the series' one-hot code.
    Network: the archetype's 1-D kernel bank (:mod:`signal_engine.archetypes.kernels`) as a causal, trainable
    Conv1D initialised at the templates; its responses at the last bar and averaged over the window, layer
    normalised, joined with a learned series embedding (a bias-free dense layer over the one-hot code, so a
    series not seen in training gets the mean embedding); a small dense head; softmax over the three classes.

    Training: that of :class:`PooledTrendExpert` (equal rows of every series per epoch, validation tails after a
    purge, early stopping on their equal-weight mean log loss, Platt calibration on them), under the Keras precision
    policy of :func:`~signal_engine.experts.tf_runtime.precision_scope` (mixed float16 on GPUs with Tensor Cores,
    float32 on CPU).

    Parameters
    ----------
    archetype : a bar archetype of :data:`~signal_engine.archetypes.catalogue.ARCHETYPES` (its 1-D bank is used).
    window : bars per input window.
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
    Seed 001 (archetype experts, kernel bank of learnable templates); Salinas et al. (2020), "DeepAR:
    probabilistic forecasting with autoregressive recurrent networks", International Journal of Forecasting
    (one global network over many related series, with per-series scaling and equal-share sampling).
    """

    def __init__(
        self,
        archetype: str = "equity_daily",
        window: int = 64,
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
        self.archetype = archetype
        self.window = window
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
        if self.archetype not in ARCHETYPES:
            raise ValueError(f"unknown archetype {self.archetype!r}; expected one of {sorted(ARCHETYPES)}")
        if ARCHETYPES[self.archetype].inputs != "bars":
            raise ValueError(f"archetype {self.archetype!r} reads {ARCHETYPES[self.archetype].inputs}, not bars")

    def template_names(self) -> list[str]:
        """Names of the bank's filters, in filter order."""
        return list(kernel_bank(self.archetype)[0])

    def _build(self, keras: Any, shapes: list[tuple[int, ...]]) -> Any:
        layers = keras.layers
        kernel = stack_1d(kernel_bank(self.archetype)[0])
        bars = keras.Input(shape=shapes[0], name="bars")
        series = keras.Input(shape=shapes[1], name="series")
        response = layers.Conv1D(kernel.shape[2], kernel.shape[0], padding="causal", use_bias=False,
                                 kernel_initializer=template_initializer(kernel), trainable=True,
                                 name="kernel_bank_1d")(bars)
        last = layers.Flatten()(layers.Cropping1D((shapes[0][0] - 1, 0))(response))
        summary = layers.LayerNormalization()(layers.Concatenate()([last, time_average(keras, response)]))
        return keras.Model([bars, series], self._head(keras, summary, series),
                           name=f"pooled_kernel_bank_{self.archetype}")


class PooledPredictor(Protocol):
    """A fitted expert over several series (rows named by the ``series`` column)."""

    def context_bars(self) -> int | None: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


class SeriesExpert:
    """One series' view of a fitted pooled expert: ``predict_proba`` of that series' own rows (its one-hot code and
    its own normalisation), as an endpoint answers a symbol from the one pooled network of a bundle."""

    def __init__(self, pooled: PooledPredictor, series: str) -> None:
        self.pooled = pooled
        self.series = series

    def context_bars(self) -> int | None:
        return self.pooled.context_bars()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pooled.predict_proba(X.assign(**{SERIES_COLUMN: self.series})))
