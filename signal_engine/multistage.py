"""Multi-stage signal engine (seed 002): fast filters, sequence refinement, stacking with uncertainty.

The engine works on the walk-forward (out-of-sample) outputs of models fitted elsewhere, one row per
bar: stage 1 keeps the bars where a fast classifier is confident enough and the rule filters agree;
stage 2 keeps the candidates a sequence model confirms; stage 3 is a stacking model fitted on earlier
rows whose bootstrap spread gives an uncertainty, turned into a conservative, calibrated confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from signal_engine.labels import DOWN, UP


@dataclass(frozen=True)
class StageInputs:
    """Per-bar inputs of the engine.

    Attributes
    ----------
    fast_proba : (n, 3) class probabilities (down, neutral, up) of the stage-1 model (e.g. LightGBM).
    sequence_proba : (n, 3) probabilities of the stage-2 sequence model (LSTM / Transformer).
    rsi : (n,) RSI(14) for the rule filter.
    context : (n, c) contextual features for stage 3 (regime, liquidity), may have 0 columns.
    """

    fast_proba: np.ndarray
    sequence_proba: np.ndarray
    rsi: np.ndarray
    context: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def rows(self, index: np.ndarray | slice) -> StageInputs:
        context = self.context[index] if self.context.size else self.context
        return StageInputs(self.fast_proba[index], self.sequence_proba[index], self.rsi[index], context)

    def __len__(self) -> int:
        return len(self.rsi)


@dataclass(frozen=True)
class StageDecisions:
    """What each stage did for every bar: raw and proposed direction, survival masks, final confidence.

    ``raw_direction`` is the fast model's unfiltered call (+1 when P(up) >= P(down), else -1): what
    every bar would trade without the engine; ``direction`` is 0 where stage 1 discarded the bar.
    """

    raw_direction: np.ndarray
    direction: np.ndarray
    after_stage1: np.ndarray
    after_stage2: np.ndarray
    after_stage3: np.ndarray
    confidence: np.ndarray


def stage1_candidates(inputs: StageInputs, *, min_probability: float, rsi_band: tuple[float, float]) -> np.ndarray:
    """Direction of each bar's candidate (+1/-1), 0 where stage 1 discards it.

    A bar is a long candidate when P(up) is the larger directional probability, reaches
    ``min_probability`` and the RSI is not overbought (below the band's top); shorts mirror this.
    """
    p_up, p_down = inputs.fast_proba[:, UP], inputs.fast_proba[:, DOWN]
    low, high = rsi_band
    rsi = np.nan_to_num(inputs.rsi, nan=50.0)
    long = (p_up >= p_down) & (p_up >= min_probability) & (rsi < high)
    short = (p_down > p_up) & (p_down >= min_probability) & (rsi > low)
    return np.where(long, 1, np.where(short, -1, 0))


def directional_probability(proba: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Probability of the proposed direction (P(up) for longs, P(down) for shorts, 0 for none)."""
    return np.where(direction > 0, proba[:, UP], np.where(direction < 0, proba[:, DOWN], 0.0))


class MultiStageEngine(BaseEstimator):
    """Three-stage signal engine; ``fit`` trains stage 3 on earlier out-of-sample rows.

    Parameters
    ----------
    min_probability : stage-1 threshold on the fast model's directional probability.
    rsi_band : stage-1 rule filter: no longs at RSI >= the top, no shorts at RSI <= the bottom.
    confirm_probability : stage-2 threshold on the sequence model's probability of the direction.
    min_confidence : stage-3 threshold on the calibrated, uncertainty-penalised confidence.
    min_lift : when set, the stage-3 threshold is instead the survivors' training hit rate plus ``min_lift``
        (keep only calls more likely right than the average call that reached stage 3).
    bootstraps : stacking models fitted on bootstrap resamples; their spread is the uncertainty.
    uncertainty_penalty : confidence = calibrated mean - penalty x bootstrap standard deviation.
    random_state : seed of the bootstrap resamples.

    References
    ----------
    Seed 002 (stage 1 filters, stage 2 sequence models, stage 3 stacking + Bayesian confidence);
    Zadrozny & Elkan (2002) for isotonic calibration.
    """

    def __init__(
        self,
        min_probability: float = 0.4,
        rsi_band: tuple[float, float] = (30.0, 70.0),
        confirm_probability: float = 0.35,
        min_confidence: float = 0.5,
        bootstraps: int = 20,
        uncertainty_penalty: float = 1.0,
        random_state: int = 0,
        min_lift: float | None = None,
    ) -> None:
        self.min_lift = min_lift
        self.min_probability = min_probability
        self.rsi_band = rsi_band
        self.confirm_probability = confirm_probability
        self.min_confidence = min_confidence
        self.bootstraps = bootstraps
        self.uncertainty_penalty = uncertainty_penalty
        self.random_state = random_state

    def fit(self, inputs: StageInputs, y: np.ndarray) -> Self:
        """Fit stage 3 on the rows that pass stages 1 and 2; ``y`` is the realised trend class."""
        direction, survivors = self._first_two_stages(inputs)
        labels = np.asarray(y, dtype=np.int64)
        correct = ((direction > 0) & (labels == UP)) | ((direction < 0) & (labels == DOWN))
        rows = np.flatnonzero(survivors)
        self.n_train_ = len(rows)
        self.base_rate_ = float(correct[rows].mean()) if len(rows) else 0.5
        features = self._stack_features(inputs, direction)[rows]
        target = correct[rows].astype(int)
        self.models_ = self._bootstrap_models(features, target)
        mean, _ = self._ensemble(features)
        self.threshold_ = self.min_confidence if self.min_lift is None else self.base_rate_ + self.min_lift
        self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        if len(rows) and len(set(target)) == 2:
            self.calibrator_.fit(mean, target)
        else:
            self.calibrator_.fit([0.0, 1.0], [self.base_rate_, self.base_rate_])
        return self

    def decide(self, inputs: StageInputs) -> StageDecisions:
        """Run all three stages on new rows."""
        direction, survivors = self._first_two_stages(inputs)
        features = self._stack_features(inputs, direction)
        mean, spread = self._ensemble(features)
        calibrated = self.calibrator_.predict(mean)
        confidence = np.clip(calibrated - self.uncertainty_penalty * spread, 0.0, 1.0)
        confidence = np.where(survivors, confidence, 0.0)
        raw_direction = np.where(inputs.fast_proba[:, UP] >= inputs.fast_proba[:, DOWN], 1, -1)
        after_stage3 = survivors & (confidence >= self.threshold_)
        return StageDecisions(raw_direction, direction, direction != 0, survivors, after_stage3, confidence)

    def _first_two_stages(self, inputs: StageInputs) -> tuple[np.ndarray, np.ndarray]:
        direction = stage1_candidates(inputs, min_probability=self.min_probability, rsi_band=self.rsi_band)
        confirmed = directional_probability(inputs.sequence_proba, direction) >= self.confirm_probability
        return direction, (direction != 0) & confirmed

    @staticmethod
    def _stack_features(inputs: StageInputs, direction: np.ndarray) -> np.ndarray:
        columns = [
            directional_probability(inputs.fast_proba, direction),
            directional_probability(inputs.sequence_proba, direction),
            direction.astype(float),
        ]
        stacked = np.column_stack(columns)
        return np.column_stack((stacked, inputs.context)) if inputs.context.size else stacked

    def _bootstrap_models(self, features: np.ndarray, target: np.ndarray) -> list[LogisticRegression]:
        if len(features) < 20 or len(set(target)) < 2:
            return []
        rng = np.random.default_rng(self.random_state)
        models = []
        for _ in range(self.bootstraps):
            sample = rng.integers(0, len(features), len(features))
            if len(set(target[sample])) < 2:
                continue
            models.append(LogisticRegression(max_iter=1000, solver="newton-cg").fit(
                np.nan_to_num(features[sample]), target[sample]))
        return models

    def _ensemble(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.models_:
            return np.full(len(features), self.base_rate_), np.zeros(len(features))
        draws = np.stack([m.predict_proba(np.nan_to_num(features))[:, 1] for m in self.models_])
        return draws.mean(axis=0), draws.std(axis=0)


def return_windows(close: np.ndarray, volatility: np.ndarray, window: int) -> np.ndarray:
    """(n, window) of the last ``window`` one-bar log returns up to each bar, in units of that bar's volatility.

    Row t uses closes up to t only; returns before the first bar are 0.
    """
    returns = np.diff(np.log(np.asarray(close, dtype=float)), prepend=np.nan)
    padded = np.concatenate((np.zeros(window - 1), np.nan_to_num(returns)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    scale = np.asarray(volatility, dtype=float)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return np.clip(windows / scale[:, None], -10.0, 10.0)


class SequenceRefiner(BaseEstimator):
    """Stage 2: refines the stage-1 probabilities with the recent sequence of returns.

    A multinomial logistic regression of the trend class on the last ``window`` bars' vol-scaled log
    returns (oldest first) and the stage-1 P(down), P(neutral), P(up). It is a linear sequence model:
    it sees the order of the recent moves, which the stage-1 tree model only sees through summary
    features. ``fit`` must get out-of-sample stage-1 probabilities (rows known by the refit bar).

    Parameters
    ----------
    C : inverse L2 strength of the logistic regression.
    min_rows : with fewer rows (or one class) it passes the stage-1 probabilities through.
    """

    def __init__(self, C: float = 0.1, min_rows: int = 100) -> None:
        self.C = C
        self.min_rows = min_rows

    def fit(self, windows: np.ndarray, fast_proba: np.ndarray, y: np.ndarray) -> Self:
        X = np.column_stack((windows, fast_proba))
        labels = np.asarray(y, dtype=np.int64)
        usable = np.isfinite(X).all(axis=1) & (labels >= 0)
        self.n_train_ = int(usable.sum())
        self.model_: LogisticRegression | None = None
        if self.n_train_ >= self.min_rows and len(set(labels[usable])) > 1:
            self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X[usable], labels[usable])
        return self

    def predict_proba(self, windows: np.ndarray, fast_proba: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities (down, neutral, up)."""
        if self.model_ is None:
            return np.asarray(fast_proba, dtype=float)
        out = np.zeros((len(windows), 3))
        out[:, self.model_.classes_] = self.model_.predict_proba(np.nan_to_num(np.column_stack((windows, fast_proba))))
        return out


def stage_report(decisions: StageDecisions, y: np.ndarray) -> list[dict[str, Any]]:
    """Per stage: signals kept, false positives removed, and the cost (true positives removed).

    Every bar starts as the fast model's raw call; it is a true positive when the realised trend
    class matches that direction (up for a long, down for a short) and a false positive otherwise.
    ``precision`` is the share of true positives among what the stage keeps.
    """
    labels = np.asarray(y)
    raw = decisions.raw_direction
    correct = ((raw > 0) & (labels == UP)) | ((raw < 0) & (labels == DOWN))
    report = []
    previous = np.ones(len(labels), dtype=bool)
    for name, kept in (("stage1_filters", decisions.after_stage1), ("stage2_sequence", decisions.after_stage2),
                       ("stage3_stacking", decisions.after_stage3)):
        removed = previous & ~kept
        report.append({
            "stage": name,
            "kept": int(kept.sum()),
            "false_positives_removed": int((removed & ~correct).sum()),
            "true_positives_removed": int((removed & correct).sum()),
            "precision": float(correct[kept].mean()) if kept.any() else float("nan"),
        })
        previous = kept
    return report
