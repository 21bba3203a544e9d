"""Trainable MLP gate (seed 001 v1): softmax over experts, top-k sparse routing, load balancing.

Training uses TensorFlow/Keras (imported lazily, only in ``fit``); prediction runs the exported
NumPy weights, the same code the serving path uses.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from sklearn.base import BaseEstimator

from signal_engine.moe.numpy_gate import GateWeights, available_experts, gate_forward
from signal_engine.moe.standardise import fit_standardiser, standardise


class MLPGate(BaseEstimator):
    """Two-layer MLP gate (64 -> 32 -> E) with top-k routing, trained on validation folds.

    Given standardised inputs x (a market fingerprint), expert scores s (n x E) and the realised move
    z in units of its volatility, ``fit`` minimises

        loss = -mean_i(z_i * sum_e w_ie s_ie) - load_balance * H(mean_i softmax_i) + l2 * ||W||^2

    where w is the softmax sparsified to its top ``k`` entries and renormalised, and H the entropy of
    the routing averaged over the batch: a gate that sends every row to one expert has H = 0, so the
    term keeps every expert in use (seed 001 §4, "load-balancing loss to prevent expert collapse").

    Abstention: a NaN expert score means that expert abstains on the row. In the fit the softmax runs over
    the experts that answered (the others' weight is 0, as :func:`~signal_engine.moe.numpy_gate.available_top_k`
    gives when predicting), so an abstaining expert's logit gets no gradient from that row; rows where every
    expert abstains are left out. ``predict_proba`` routes over the ``available`` experts it is given.

    Parameters
    ----------
    hidden : hidden layer widths.
    k : experts kept per row (top-k).
    load_balance : weight of the batch-routing entropy.
    l2 : weight decay on the kernels.
    epochs, learning_rate : full-batch Adam settings.
    min_rows : with fewer training rows the gate is left uniform over the first k experts' average.
    random_state : seed of the initial weights; training is deterministic.

    References
    ----------
    Shazeer et al. (2017), "Outrageously large neural networks: the sparsely-gated mixture-of-experts
    layer", ICLR; seed 001 §4.
    """

    uses_tensorflow: ClassVar[bool] = True  # fit trains with Keras: a GPU job (signal_engine.workflow.plan)

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 32),
        k: int = 2,
        load_balance: float = 0.01,
        l2: float = 1e-4,
        epochs: int = 200,
        learning_rate: float = 0.01,
        min_rows: int = 100,
        clip: float = 3.0,
        random_state: int = 0,
        experts: tuple[str, ...] | None = None,
    ) -> None:
        self.hidden = hidden
        self.k = k
        self.load_balance = load_balance
        self.l2 = l2
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.min_rows = min_rows
        self.clip = clip
        self.random_state = random_state
        self.experts = experts

    def fit(self, X: np.ndarray, y: np.ndarray, *, expert_scores: np.ndarray) -> Self:
        X = np.asarray(X, dtype=float)
        scores = np.asarray(expert_scores, dtype=float)
        answered = available_experts(scores).any(axis=1)
        if not answered.all():
            X, y, scores = X[answered], np.asarray(y)[answered], scores[answered]
        n_experts = scores.shape[1]
        self.n_experts_ = n_experts
        self.n_features_in_ = X.shape[1]
        self.n_train_ = len(X)
        mean, scale = fit_standardiser(X)
        names = self.experts or tuple(f"expert_{i}" for i in range(n_experts))
        self.model_ = self._build_model(X.shape[1], n_experts)
        if len(X) >= self.min_rows:
            inputs = standardise(X, mean, scale).astype(np.float32)
            target = np.clip(np.asarray(y, dtype=float), -self.clip, self.clip).astype(np.float32)
            self.loss_history_ = self._train(inputs, target, scores)
        else:
            self._zero_output_layer()
            self.loss_history_ = []
        self.weights_ = GateWeights(
            mean=mean,
            scale=scale,
            layers=tuple((layer.kernel.numpy(), layer.bias.numpy()) for layer in self.model_.layers),
            k=min(self.k, n_experts),
            experts=tuple(names),
        )
        return self

    def predict_proba(self, X: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
        """Gate weights per row (top-k sparse, summing to 1), from the exported NumPy weights, over the experts
        marked ``available`` (n, E) on each row (None: every expert)."""
        return gate_forward(self.weights_, X, available)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def keras_proba(self, X: np.ndarray) -> np.ndarray:
        """The same forward pass through the Keras model (to check the export)."""
        import tensorflow as tf

        inputs = standardise(X, self.weights_.mean, self.weights_.scale)
        logits = self.model_(tf.constant(inputs, dtype=tf.float32))
        return _top_k_tf(tf.nn.softmax(logits), self.weights_.k).numpy()

    def _build_model(self, n_inputs: int, n_experts: int) -> Any:
        import tensorflow as tf

        tf.keras.utils.set_random_seed(self.random_state)
        layers = [tf.keras.Input(shape=(n_inputs,))]
        layers += [tf.keras.layers.Dense(width, activation="relu") for width in self.hidden]
        layers.append(tf.keras.layers.Dense(n_experts))
        return tf.keras.Sequential(layers)

    def _zero_output_layer(self) -> None:
        output = self.model_.layers[-1]
        output.kernel.assign(np.zeros(output.kernel.shape, dtype=np.float32))
        output.bias.assign(np.zeros(output.bias.shape, dtype=np.float32))

    def _train(self, inputs: np.ndarray, target: np.ndarray, scores: np.ndarray) -> list[float]:
        import tensorflow as tf

        model, k = self.model_, min(self.k, scores.shape[1])
        optimizer = tf.keras.optimizers.Adam(learning_rate=self.learning_rate)
        available = available_experts(scores)
        masked = not available.all()
        x, z = tf.constant(inputs), tf.constant(target)
        s = tf.constant(np.where(available, scores, 0.0).astype(np.float32))
        mask = tf.constant(available)
        kernels = [layer.kernel for layer in model.layers]

        @tf.function
        def step() -> Any:
            with tf.GradientTape() as tape:
                logits = model(x)
                if masked:  # the softmax over the experts that answered: an abstaining one gets 0, and no gradient
                    logits = tf.where(mask, logits, tf.constant(-1e9, dtype=logits.dtype))
                probabilities = tf.nn.softmax(logits)
                weights = _top_k_tf(probabilities, k)
                fit = tf.reduce_mean(z * tf.reduce_sum(weights * s, axis=1))
                routing = tf.reduce_mean(probabilities, axis=0)
                balance = -tf.reduce_sum(routing * tf.math.log(routing + 1e-12))
                decay = tf.add_n([tf.reduce_sum(kernel**2) for kernel in kernels])
                loss = -fit - self.load_balance * balance + self.l2 * decay
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        return [float(step()) for _ in range(self.epochs)]


def _top_k_tf(probabilities: Any, k: int) -> Any:
    import tensorflow as tf

    n_experts = probabilities.shape[-1]
    if k >= n_experts:
        return probabilities
    _, indices = tf.math.top_k(probabilities, k=k, sorted=True)
    mask = tf.reduce_sum(tf.one_hot(indices, n_experts, dtype=probabilities.dtype), axis=1)
    kept = probabilities * mask
    return kept / tf.reduce_sum(kept, axis=1, keepdims=True)
