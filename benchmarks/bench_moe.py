"""Seed 001 §6 table on every shipped real series: single expert vs MoE (rule gate) vs MoE (MLP gate, top-2).

Walk-forward, out of sample, net of costs. The baseline is the single `equity_daily` archetype expert,
measured in the same run; ratios are accuracy and Sharpe against it. Also prints the top-2 routing
latency overhead of the MLP gate against dense routing (seed 001 claims < 8%).

    .venv/bin/python benchmarks/bench_moe.py [--profile quick] [--symbols SPX GOOG] [--json out/moe.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from signal_engine.config import load_config
from signal_engine.data import load_prices
from signal_engine.data.datasets import DATASETS, dataset_costs, export_dataset
from signal_engine.evaluation.expert_suite import SUITE_PROFILES, run_expert_suite
from signal_engine.evaluation.moe_study import study_inputs, study_table
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

ARCHETYPES = ("crypto_hft", "equity_intraday", "equity_daily", "futures_trend", "low_vol_etf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--symbols", nargs="*", default=list(DATASETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = load_config(args.profile)
    costs = dataset_costs()
    settings = SUITE_PROFILES[args.profile]
    settings = type(settings)(**{**settings.__dict__, "archetypes": "all",
                                 "experts": tuple(f"archetype_{a}" for a in ARCHETYPES)})
    results = {}
    print(f"{'series':<8}{'single acc':>11}{'rule acc':>10}{'MLP acc':>9}{'single SR':>11}{'rule SR':>9}"
          f"{'MLP SR':>8}{'top-2 overhead':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for symbol in args.symbols:
            series = load_prices(export_dataset(symbol, Path(folder)))
            run_config = config
            if symbol in costs:
                run_config = type(config)(**{**config.__dict__, "trading": type(config.trading)(
                    **{**config.trading.__dict__, "cost_bps": costs[symbol]})})
            frame = series.bars.join(feature_frame(series.bars))
            labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                                 threshold=config.labels.threshold)
            suite = run_expert_suite(series, run_config, settings=settings)
            table = study_table(study_inputs(series, run_config, suite.outputs, labels, frame), run_config)
            results[symbol] = table
            single, rule, mlp = table["single"], table["rule"], table["mlp"]
            print(f"{symbol:<8}{single['accuracy']:>11.3f}{rule['accuracy']:>10.3f}{mlp['accuracy']:>9.3f}"
                  f"{single['sharpe']:>11.2f}{rule['sharpe']:>9.2f}{mlp['sharpe']:>8.2f}"
                  f"{100 * table['latency']['top_k_overhead']:>15.1f}%", flush=True)
            print(f"{'':<8}{'vs single:':>11}{rule['accuracy'] / single['accuracy']:>9.3f}x"
                  f"{mlp['accuracy'] / single['accuracy']:>8.3f}x", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
