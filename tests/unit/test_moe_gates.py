"""Top-k routing of the softmax gate and the rule-based fingerprint gate (seed 001 §4)."""

from __future__ import annotations

import numpy as np
import pytest

from signal_engine.features import FINGERPRINT_NAMES
from signal_engine.moe import SoftmaxGate
from signal_engine.moe.rule_gate import FingerprintRuleGate
from tests.unit.test_moe import synthetic_routing


def fingerprint_rows(**columns: list[float]) -> np.ndarray:
    """Rows of the fingerprint columns, neutral values where not given."""
    neutral = {"vol30": 0.01, "trend_r2": 0.4, "hurst": 0.5, "spread": 0.001, "volume_z": 0.0}
    n = len(next(iter(columns.values())))
    return np.column_stack([np.asarray(columns.get(name, [neutral[name]] * n), dtype=float)
                            for name in FINGERPRINT_NAMES])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_softmax_gate_weights_sum_to_one_and_respect_top_k(k: int) -> None:
    x, z, scores = synthetic_routing()
    weights = SoftmaxGate(l2=0.01, k=k).fit(x, z, expert_scores=scores).predict_proba(x)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert ((weights > 0).sum(axis=1) <= k).all()
    assert ((weights > 0).sum(axis=1) == k).mean() > 0.99


def test_softmax_top_k_keeps_the_dense_gates_largest_weights() -> None:
    x, z, scores = synthetic_routing()
    dense = SoftmaxGate(l2=0.01).fit(x, z, expert_scores=scores)
    sparse = SoftmaxGate(l2=0.01, k=2).fit(x, z, expert_scores=scores)
    np.testing.assert_array_equal(dense.coef_, sparse.coef_)
    d, s = dense.predict_proba(x), sparse.predict_proba(x)
    np.testing.assert_array_equal(s == 0, d == d.min(axis=1, keepdims=True))
    kept = s > 0
    np.testing.assert_allclose(s[kept], (d / np.where(kept, d, 0).sum(axis=1, keepdims=True))[kept])


def test_rule_gate_routes_by_the_fingerprint_by_hand() -> None:
    train = fingerprint_rows(vol30=list(np.linspace(0.005, 0.02, 100)))
    gate = FingerprintRuleGate(k=3).fit(train)
    assert gate.vol_threshold_ == pytest.approx(np.quantile(np.linspace(0.005, 0.02, 100), 0.8))
    rows = fingerprint_rows(trend_r2=[0.7, 0.1, 0.4, 0.7], hurst=[0.5, 0.4, 0.5, 0.5], vol30=[0.01, 0.01, 0.05, 0.05])
    weights = gate.predict_proba(rows)
    # trend only: (1 + 2, 1, 1) / 5; levels only: (1, 3, 1) / 5; volatility only; trend + volatility: (3, 1, 3) / 7
    np.testing.assert_allclose(weights, [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [3 / 7, 1 / 7, 3 / 7]])
    neutral = gate.predict_proba(fingerprint_rows(hurst=[0.5]))
    np.testing.assert_allclose(neutral, [[1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rule_gate_weights_sum_to_one_and_respect_top_k(k: int) -> None:
    rng = np.random.default_rng(0)
    rows = fingerprint_rows(vol30=list(rng.uniform(0.002, 0.04, 500)), trend_r2=list(rng.uniform(0, 1, 500)),
                            hurst=list(rng.uniform(0.3, 0.7, 500)))
    weights = FingerprintRuleGate(k=k).fit(rows).predict_proba(rows)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert ((weights > 0).sum(axis=1) <= k).all()
    if k == 1:
        np.testing.assert_array_equal(weights.max(axis=1), 1.0)


def test_rule_gate_names_the_columns_it_needs() -> None:
    with pytest.raises(ValueError, match="fingerprint columns"):
        FingerprintRuleGate().fit(np.zeros((10, 3)))


def reference_rule_gate(row: np.ndarray, gate: FingerprintRuleGate) -> list[float]:
    """Seed 001 §4.2's rules for one row in plain Python: weight 1 + boost per firing rule, normalised, top-k."""
    r2, hurst, vol = (float(row[FINGERPRINT_NAMES.index(name)]) for name in ("trend_r2", "hurst", "vol30"))
    fires = [r2 >= gate.trend_r2_min or hurst > gate.persistent_hurst,  # a NaN comparison is False: fires nothing
             hurst < gate.reverting_hurst and r2 < gate.range_r2_max,
             vol > gate.vol_threshold_]
    raw = [1.0 + gate.boost * f for f in fires]
    weights = [w / sum(raw) for w in raw]
    kept = sorted(range(3), key=lambda i: (-weights[i], i))[:gate.k]
    total = sum(weights[i] for i in kept)
    return [weights[i] / total if i in kept else 0.0 for i in range(3)]


def varied_fingerprints(n: int = 400, seed: int = 11) -> np.ndarray:
    """Random fingerprints around every rule's thresholds, rows exactly on them, and NaNs in each column."""
    rng = np.random.default_rng(seed)
    rows = fingerprint_rows(vol30=list(rng.uniform(0.002, 0.04, n)), trend_r2=list(rng.uniform(0, 1, n)),
                            hurst=list(rng.uniform(0.3, 0.7, n)), spread=list(rng.uniform(0, 0.01, n)),
                            volume_z=list(rng.normal(size=n)))
    on_the_edge = fingerprint_rows(trend_r2=[0.6, 0.3, 0.29999, 0.6, 0.2], hurst=[0.5, 0.45, 0.44, 0.55, 0.45])
    rows = np.vstack((rows, on_the_edge))
    for column in range(rows.shape[1]):
        rows[rng.choice(n, 25, replace=False), column] = np.nan
    rows[-1] = np.nan
    return rows


@pytest.mark.parametrize(("k", "boost"), [(1, 2.0), (2, 2.0), (2, 0.5), (3, 2.0), (5, 1.0)])
def test_numpy_rule_gate_is_the_fitted_gate_and_the_seed_rules(k: int, boost: float) -> None:
    from signal_engine.moe.numpy_gate import rule_gate_forward

    rows = varied_fingerprints()
    gate = FingerprintRuleGate(k=k, boost=boost).fit(rows[:300])
    rows[-2, FINGERPRINT_NAMES.index("vol30")] = gate.vol_threshold_  # exactly on the threshold: does not fire
    fitted = gate.predict_proba(rows)
    expected = np.array([reference_rule_gate(row, gate) for row in rows])
    np.testing.assert_allclose(fitted, expected, rtol=0, atol=1e-12)
    order = [4, 2, 0, 3, 1]  # the serving path reads the columns by name, in the bundle's order
    served = rule_gate_forward(rows[:, order], [FINGERPRINT_NAMES[i] for i in order], gate.rule_params())
    np.testing.assert_allclose(served, fitted, rtol=0, atol=1e-12)
    assert np.isnan(rows).any(axis=1).sum() > 50 and len(np.unique(fitted.round(12), axis=0)) >= 3
    np.testing.assert_allclose(fitted[-1], reference_rule_gate(np.full(5, np.nan), gate))


def test_numpy_rule_gate_names_a_missing_column() -> None:
    from signal_engine.moe.numpy_gate import rule_gate_forward

    gate = FingerprintRuleGate().fit(varied_fingerprints())
    with pytest.raises(ValueError, match=r"\['hurst'\] are not among the columns"):
        rule_gate_forward(np.zeros((2, 2)), ["vol30", "trend_r2"], gate.rule_params())
    with pytest.raises(ValueError, match="got shape"):
        rule_gate_forward(np.zeros((2, 2)), FINGERPRINT_NAMES, gate.rule_params())
