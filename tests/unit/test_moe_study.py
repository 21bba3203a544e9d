"""The seed 001 §6 study on synthetic expert outputs: shapes, routing, mixtures and the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signal_engine.config import GateConfig, RunConfig, WalkForwardConfig
from signal_engine.evaluation.moe_study import StudyInputs, gated_probabilities, study_table
from signal_engine.experts.tf_runtime import tensorflow_available
from signal_engine.labels import make_labels

# find_spec, not an import: collecting this module on every pytest-xdist worker must not import TensorFlow
pytestmark = [pytest.mark.skipif(not tensorflow_available(), reason="TensorFlow is not installed (extra 'tf')"),
              pytest.mark.tensorflow]


@pytest.fixture(scope="module")
def inputs() -> tuple[StudyInputs, RunConfig]:
    rng = np.random.default_rng(0)
    n = 700
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = pd.DataFrame({"open": close, "high": close * 1.005, "low": close * 0.995, "close": close,
                         "volume": rng.uniform(1e6, 2e6, n)}, index=pd.bdate_range("2010-01-01", periods=n))
    labels = make_labels(bars, np.full(n, 0.01), horizon=5, threshold=0.5)
    informed = np.full((n, 3), 1 / 3)
    known = labels.trend >= 0
    informed[known] = 0.2
    informed[known, labels.trend[known]] = 0.6
    noise = rng.dirichlet(np.ones(3), n)
    config = RunConfig(walk_forward=WalkForwardConfig(initial_window=200, validation_bars=150, refit_every=100,
                                                      min_test_bars=50), gate=GateConfig(min_rows=50))
    probabilities = {"equity_daily": noise, "futures_trend": informed, "low_vol_etf": rng.dirichlet(np.ones(3), n)}
    for values in probabilities.values():
        values[:200] = np.nan
    fingerprints = rng.normal(size=(n, 5))
    return StudyInputs(probabilities, fingerprints, labels, bars, np.full(n, 0.01)), config


def test_gates_give_probabilities_on_every_decided_bar(inputs: tuple[StudyInputs, RunConfig]) -> None:
    study, config = inputs
    gated = gated_probabilities(study, config)
    for name in ("single", "rule", "mlp"):
        decided = gated[name][200:]
        np.testing.assert_allclose(decided.sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(gated["rule"][:200]).all()


def test_mlp_gate_learns_to_trust_the_informed_expert(inputs: tuple[StudyInputs, RunConfig]) -> None:
    study, config = inputs
    table = study_table(study, config)
    assert table["mlp"]["accuracy"] > table["single"]["accuracy"] + 0.1
    assert set(table) == {"single", "rule", "mlp", "latency"}
    assert table["latency"]["mlp_top_k_us_per_row"] > 0
