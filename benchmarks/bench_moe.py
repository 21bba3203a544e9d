"""Seed 001 §6 table on every shipped real series: single expert vs MoE (rule gate) vs MoE (MLP gate, top-2).

Walk-forward, out of sample, net of costs. The baseline is the single `equity_daily` archetype expert,
measured in the same run; ratios are accuracy and Sharpe against it. Also prints the top-2 routing
latency overhead of the MLP gate against dense routing (seed 001 claims < 8%).

    .venv/bin/python benchmarks/bench_moe.py [--profile quick] [--symbols SPX GOOG] [--json out/moe.json]

With ``--variants`` it instead runs the backtest's MoE under each ``moe`` configuration of
``signal_engine.evaluation.moe_study.VARIANTS`` (gate, top-k, combiner, experts, the single expert) and
prints net Sharpe / max drawdown per series: the measurement behind the ``moe`` defaults.

    .venv/bin/python benchmarks/bench_moe.py --variants [--only rule_gate meta_combiner] [--json out/v.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from signal_engine.config import RunConfig, apply_overrides, load_config
from signal_engine.data import load_prices
from signal_engine.data.datasets import DATASETS, dataset_costs, export_dataset
from signal_engine.evaluation.expert_suite import SUITE_PROFILES, run_expert_suite
from signal_engine.evaluation.moe_study import VARIANTS, study_inputs, study_table, variant_row
from signal_engine.features import feature_frame
from signal_engine.labels import make_labels

ARCHETYPES = ("crypto_hft", "equity_intraday", "equity_daily", "futures_trend", "low_vol_etf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--symbols", nargs="*", default=list(DATASETS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variants", action="store_true", help="compare the backtest's moe configurations")
    parser.add_argument("--only", nargs="*", default=None, help="variant names (with --variants)")
    args = parser.parse_args()
    config = load_config(args.profile)
    costs = dataset_costs()
    if args.variants:
        variants(config, args.symbols, args.only, args.json, costs)
        return
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


def variants(config: RunConfig, symbols: list[str], only: list[str] | None, out: Path | None,
             costs: dict[str, float]) -> None:
    """Net Sharpe and max drawdown of the backtest's MoE under each variant, per series (suite off)."""
    names = only or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--only: unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
    base = apply_overrides(config, {"suite": {"enabled": False}, "trading": {"symbol_cost_bps": costs}})
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'variant':<28}" + "".join(f"{s + ' SR':>11}{s + ' DD':>11}" for s in symbols) + f"{'mean SR':>9}{'s':>7}")
    with tempfile.TemporaryDirectory() as folder:
        loaded = {symbol: load_prices(export_dataset(symbol, Path(folder))) for symbol in symbols}
        for name in names:
            run_config = apply_overrides(base, VARIANTS[name], source=f"variant {name}")
            rows = {symbol: variant_row(series, run_config) for symbol, series in loaded.items()}
            results[name] = rows
            mean = sum(r["sharpe"] for r in rows.values()) / len(rows)
            seconds = sum(r["seconds"] for r in rows.values())
            print(f"{name:<28}" + "".join(f"{r['sharpe']:>11.2f}{r['max_drawdown']:>11.1%}" for r in rows.values())
                  + f"{mean:>9.2f}{seconds:>7.0f}", flush=True)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
