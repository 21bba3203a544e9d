"""Gate + combine latency in process, for 1 and for 1,000 symbols: p50/p99, top-2 against dense routing.

The baseline is the same MLP gate with dense routing (every expert weighted), measured in the same run;
seed 001 claims top-2 routing costs < 8% more latency. Gate weights come from a gate trained on synthetic
routing data (speed does not depend on what it learned).

    .venv/bin/python benchmarks/bench_combine.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from signal_engine.moe import WeightedScoreCombiner
from signal_engine.moe.mlp_gate import MLPGate
from signal_engine.moe.numpy_gate import GateWeights, gate_forward

FINGERPRINT_WIDTH = 5
EXPERTS = 6


def trained_weights(seed: int = 0) -> GateWeights:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((800, FINGERPRINT_WIDTH))
    move = rng.standard_normal(800)
    scores = np.column_stack([np.sign(move) * np.sign(x[:, i % FINGERPRINT_WIDTH]) for i in range(EXPERTS)])
    return MLPGate(epochs=50, k=2).fit(x, move, expert_scores=scores).weights_


def percentiles(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    for _ in range(min(100, repeats)):
        run()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        run()
        samples[i] = time.perf_counter_ns() - start
    return float(np.percentile(samples, 50)) / 1e3, float(np.percentile(samples, 99)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    top2 = trained_weights()
    dense = replace(top2, k=EXPERTS)
    combiner = WeightedScoreCombiner(0.1, -0.1).fit()
    rng = np.random.default_rng(1)
    print(f"{'case':<34}{'p50 us':>10}{'p99 us':>10}{'vs dense':>10}")
    for symbols in (1, 1000):
        x = rng.standard_normal((symbols, FINGERPRINT_WIDTH))
        scores = rng.uniform(-1, 1, (symbols, EXPERTS))

        def step(weights: GateWeights, x: np.ndarray = x, scores: np.ndarray = scores) -> np.ndarray:
            return combiner.direction(combiner.decision_function(scores, gate_forward(weights, x)))

        base = percentiles(lambda: step(dense), args.repeats)
        sparse = percentiles(lambda: step(top2), args.repeats)
        print(f"{f'dense gate + combine, {symbols} symbol(s)':<34}{base[0]:>10.1f}{base[1]:>10.1f}{'1.00x':>10}")
        print(f"{f'top-2 gate + combine, {symbols} symbol(s)':<34}{sparse[0]:>10.1f}{sparse[1]:>10.1f}"
              f"{sparse[0] / base[0]:>9.2f}x")
        print(f"  top-2 routing overhead at p50: {100 * (sparse[0] / base[0] - 1):+.1f}% (seed 001 claims < 8%)")


if __name__ == "__main__":
    main()
