"""Rule-based fingerprint gate (seed 001 §4, v0) for the three-role MoE: trend, levels, volatility."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.moe.numpy_gate import RuleGateParams, rule_fires, rule_gate_forward

ROLES = ("trend", "levels", "volatility")


class FingerprintRuleGate(BaseEstimator):
    """Fixed rules on each bar's fingerprint decide which experts to trust; nothing is trained but a quantile.

    Every expert starts with weight 1 and gains ``boost`` for its rule:

    - trend: the last 30 bars trend cleanly (``trend_r2 >= trend_r2_min``) or moves persist
      (``hurst > persistent_hurst``);
    - levels: moves revert (``hurst < reverting_hurst``) and there is no clean trend
      (``trend_r2 < range_r2_max``), so prices range between support and resistance;
    - volatility: ``vol30`` is above its ``vol_quantile`` quantile over the training rows (a stressed
      regime, where the volatility expert's warning matters).

    The weights are normalised to 1 and sparsified to the top ``k`` (ties to the earlier expert). Nothing is
    fitted on the experts' scores, so abstention changes only the weights a row routes with: given
    ``available``, an abstaining expert gets 0 and the others are renormalised before top-k.
    Inputs are the columns of :data:`signal_engine.features.FINGERPRINT_NAMES` in order.

    References
    ----------
    Seed 001 §4.2 (static rule-based warm start of the gate) and §2 (trend R2, Hurst and vol30 as the
    fingerprint); Hurst (1951); Lo (1991), "Long-term memory in stock market prices", Econometrica.
    """

    def __init__(
        self,
        k: int = 3,
        boost: float = 2.0,
        trend_r2_min: float = 0.6,
        persistent_hurst: float = 0.55,
        reverting_hurst: float = 0.45,
        range_r2_max: float = 0.3,
        vol_quantile: float = 0.8,
    ) -> None:
        self.k = k
        self.boost = boost
        self.trend_r2_min = trend_r2_min
        self.persistent_hurst = persistent_hurst
        self.reverting_hurst = reverting_hurst
        self.range_r2_max = range_r2_max
        self.vol_quantile = vol_quantile

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, *, expert_scores: np.ndarray | None = None) -> Self:
        """Learn the high-volatility threshold from the training rows (``y`` and scores are unused)."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(FINGERPRINT_NAMES):
            raise ValueError(f"expected the {len(FINGERPRINT_NAMES)} fingerprint columns {FINGERPRINT_NAMES}, "
                             f"got shape {X.shape}")
        vol = X[:, FINGERPRINT_NAMES.index("vol30")]
        vol = vol[np.isfinite(vol)]
        self.vol_threshold_ = float(np.quantile(vol, self.vol_quantile)) if len(vol) else float("inf")
        self.n_features_in_ = X.shape[1]
        self.n_experts_ = len(ROLES)
        return self

    def rule_params(self) -> RuleGateParams:
        """The fitted rules as the NumPy :class:`RuleGateParams` (what the model bundle carries)."""
        return RuleGateParams(boost=float(self.boost), trend_r2_min=float(self.trend_r2_min),
                              persistent_hurst=float(self.persistent_hurst),
                              reverting_hurst=float(self.reverting_hurst), range_r2_max=float(self.range_r2_max),
                              vol_threshold=float(self.vol_threshold_), k=int(self.k), experts=ROLES)

    def rules(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) booleans: which expert's rule fires on each row (NaN features fire nothing)."""
        return rule_fires(X, FINGERPRINT_NAMES, self.rule_params())

    def predict_proba(self, X: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
        """Gate weights per row, each summing to 1, at most ``k`` non-zero (the serving path's NumPy code), over
        the experts marked ``available`` (n, 3) on each row (None: all; an abstaining expert gets 0)."""
        return rule_gate_forward(X, FINGERPRINT_NAMES, self.rule_params(), available)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)
