"""Does implied volatility help the MoE? The volatility slot with and without the VIX, walked forward with costs.

Data: the S&P 500 bars and VIX closes that ship with ``arch`` (2014-2018, their overlap), loaded and aligned by
:func:`signal_engine.evaluation.implied_vol_study.sp500_and_vix`: the VIX close of day t is the ``implied_vol`` of
bar t. Each run is :func:`signal_engine.evaluation.backtest.run_symbol` with the ``quick`` profile (the default
MoE: softmax gate, meta-model combiner, calibrated trend expert, multi-stage engine), 5 bp a trade, and only
``moe.experts.volatility`` changed:

- ``volatility_blend``: the default slot (GARCH(1,1)/EWMA blend);
- ``vol_har``: HAR without implied volatility (tells a HAR effect from an implied-volatility effect);
- ``vol_har_implied``: HAR plus the log VIX of day t;
- ``vol_har_implied`` on the previous day's VIX (the VIX closes 15 minutes after the index: the timing check);
- ``vol_har_implied`` with the VIX blanked on the middle 20% of the test bars (the abstention check: the gate's
  weight on the slot must be 0 there, and the run must complete).

Reported on the test span: the gate's mean weight on the volatility slot, net Sharpe, max drawdown, turnover,
the balanced accuracy of the MoE's buy/hold/sell call against the realised 5-bar trend class, and the log loss
and Brier score of its calibrated confidence (the probability that the next 5 bars move the score's way), with
paired stationary-bootstrap intervals (``significance.sharpe_difference``, ``significance.mean_difference``).

Run: ``python -m signal_engine.evaluation.implied_vol_moe_study [--json OUT.json] [--reps 2000]``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

from signal_engine.config import RunConfig, apply_overrides, load_config
from signal_engine.data.loader import PriceSeries
from signal_engine.evaluation.backtest import SymbolResult, run_symbol, series_frame
from signal_engine.evaluation.implied_vol_study import sp500_and_vix
from signal_engine.evaluation.metrics import annualised_sharpe, periods_per_year
from signal_engine.evaluation.significance import mean_difference, sharpe_difference
from signal_engine.experts.implied_volatility import IV_COLUMN
from signal_engine.labels import DOWN, NEUTRAL, UP, Labels, make_labels

BLANK_SHARE = 0.2
SIGNAL_CLASS = {"sell": DOWN, "hold": NEUTRAL, "buy": UP}
PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class Run:
    """One walk-forward of the study: its volatility expert and which VIX column it reads."""

    label: str
    volatility: str
    vix: str  # "none", "day t", "day t-1", "day t, blanked"


RUNS = {
    "blend": Run("default slot: GARCH/EWMA blend", "volatility_blend", "none"),
    "har": Run("HAR", "vol_har", "none"),
    "har_iv": Run("HAR + log VIX (day t)", "vol_har_implied", "day t"),
    "har_iv_prev": Run("HAR + log VIX (day t-1)", "vol_har_implied", "day t-1"),
    "har_iv_blanked": Run("HAR + log VIX (day t), VIX blanked on 20% of the test bars", "vol_har_implied",
                          "day t, blanked"),
}
COMPARISONS = (("har_iv", "blend"), ("har_iv", "har"), ("har_iv_prev", "blend"), ("har", "blend"))


def blanked_bars(n: int, test_start: int, share: float = BLANK_SHARE) -> slice:
    """The middle ``share`` of the test bars ``test_start .. n - 1``: where the abstention check has no VIX."""
    test_bars = n - test_start
    width = round(share * test_bars)
    first = test_start + (test_bars - width) // 2
    return slice(first, first + width)


def study_frames(series: PriceSeries, iv: pd.Series, test_start: int) -> dict[str, pd.DataFrame]:
    """The walk-forward's market frame for each VIX variant (``implied_vol`` as the MoE's slot reads it)."""
    base = series_frame(series)
    blanked = iv.to_numpy(dtype=float, copy=True)
    blanked[blanked_bars(len(base), test_start)] = np.nan
    return {"none": base, "day t": base.assign(**{IV_COLUMN: iv.to_numpy(dtype=float)}),
            "day t-1": base.assign(**{IV_COLUMN: iv.shift(1).to_numpy(dtype=float)}),
            "day t, blanked": base.assign(**{IV_COLUMN: blanked})}


def run_config(base: RunConfig, volatility: str) -> RunConfig:
    return apply_overrides(base, {"moe": {"experts": {"volatility": volatility}}, "suite": {"enabled": False}})


def signal_quality(result: SymbolResult, labels: Labels, test: slice) -> dict[str, Any]:
    """Balanced accuracy of the call against the trend class; log loss and Brier of the calibrated confidence.

    Also returns the per-bar confidence log loss (NaN where the score is 0 or the move is unknown), for paired
    intervals between runs.
    """
    signals = result.signals
    trend = labels.trend[test]
    known = trend >= 0
    called = signals["signal"].map(SIGNAL_CLASS).to_numpy(dtype=np.int64)
    score = signals["score"].to_numpy(dtype=float)
    move = labels.forward_return[test]
    scored = np.isfinite(move) & (score != 0)
    right = (np.sign(score) == np.sign(move)).astype(float)
    p = np.clip(signals["confidence"].to_numpy(dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    with np.errstate(invalid="ignore"):
        per_bar = -(right * np.log(p) + (1 - right) * np.log(1 - p))
    per_bar[~scored] = np.nan
    return {
        "balanced_accuracy": float(balanced_accuracy_score(trend[known], called[known])),
        "confidence_log_loss": float(np.nanmean(per_bar)),
        "confidence_brier": float(np.mean((p[scored] - right[scored]) ** 2)),
        "hit_rate": float(right[scored].mean()),
        "scored_bars": int(scored.sum()),
        "per_bar_log_loss": per_bar,
    }


def summarise(result: SymbolResult, labels: Labels, test: slice, blank: slice) -> dict[str, Any]:
    """The numbers of one run on the test span (and, for the abstention check, on the blanked bars)."""
    moe = result.metrics["strategies"]["moe"]
    gate = result.signals["gate_volatility"].to_numpy(dtype=float)
    inside = np.zeros(len(gate), dtype=bool)
    inside[blank.start - test.start : blank.stop - test.start] = True
    quality = signal_quality(result, labels, test)
    vol_name = result.diagnostics["moe"]["experts"]["volatility"]
    net = result.returns["moe"].to_numpy(dtype=float)
    ppy = periods_per_year(result.signals["timestamp"].to_numpy(dtype="datetime64[ns]"))
    first, stop = blank.start - test.start, blank.stop - test.start
    return {
        "mean_gate": result.diagnostics["mean_gate"],
        "gate_volatility_blanked_bars": float(gate[inside].mean()),
        "gate_volatility_other_bars": float(gate[~inside].mean()),
        "max_gate_volatility_blanked_bars": float(gate[inside].max()),
        "sharpe": moe["sharpe"], "max_drawdown": moe["max_drawdown"], "turnover": moe["turnover"],
        "cagr": moe["cagr"], "cost_drag": moe["cost_drag"],
        "sharpe_by_part": {"before_blanked_bars": annualised_sharpe(net[:first], ppy),
                           "blanked_bars": annualised_sharpe(net[first:stop], ppy),
                           "after_blanked_bars": annualised_sharpe(net[stop:], ppy)},
        "slot_qlike": result.metrics["volatility"][vol_name]["qlike"],
        "slot_qlike_bars": result.metrics["volatility"][vol_name]["rows"],
        **{k: v for k, v in quality.items() if k != "per_bar_log_loss"},
    }


def run_study(config: RunConfig | None = None, *, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Every run of :data:`RUNS`, their summaries and the paired intervals of :data:`COMPARISONS`."""
    from threadpoolctl import threadpool_limits

    base = config or load_config("quick")
    series, iv = sp500_and_vix()
    wf = base.walk_forward
    frames = study_frames(series, iv, wf.test_start)
    labels = make_labels(series.bars, frames["none"]["vol30"].to_numpy(), horizon=base.labels.horizon,
                         threshold=base.labels.threshold)
    test, blank = slice(wf.test_start, len(series)), blanked_bars(len(series), wf.test_start)
    results: dict[str, SymbolResult] = {}
    with threadpool_limits(limits=1):
        for key, run in RUNS.items():
            results[key] = run_symbol(series, run_config(base, run.volatility), features=frames[run.vix])
    ppy = periods_per_year(series.bars.index.to_numpy()[: wf.initial_window + 1])
    losses = {key: signal_quality(r, labels, test)["per_bar_log_loss"] for key, r in results.items()}
    differences: dict[str, Any] = {}
    for a, b in COMPARISONS:
        both = np.isfinite(losses[a]) & np.isfinite(losses[b])
        differences[f"{a} - {b}"] = {
            "sharpe": sharpe_difference(results[a].returns["moe"].to_numpy(), results[b].returns["moe"].to_numpy(),
                                        ppy, reps=reps, seed=seed).to_dict(),
            "confidence_log_loss": mean_difference(losses[a][both], losses[b][both], reps=reps,
                                                   seed=seed).to_dict(),
        }
    return {
        "symbol": series.symbol, "bars": len(series), "first": str(series.bars.index[0]),
        "last": str(series.bars.index[-1]), "test_start": str(series.bars.index[wf.test_start]),
        "test_bars": test.stop - test.start, "missing_vix_bars": int(iv.isna().sum()),
        "blanked": {"first": str(series.bars.index[blank.start]), "last": str(series.bars.index[blank.stop - 1]),
                    "bars": blank.stop - blank.start},
        "cost_bps": base.trading.cost_for(series.symbol), "reps": reps,
        "runs": {key: {"label": run.label, "volatility": run.volatility, "vix": run.vix,
                       **summarise(results[key], labels, test, blank)} for key, run in RUNS.items()},
        "differences": differences,
    }


def markdown(document: dict[str, Any]) -> str:
    """The runs table and the differences table of :func:`run_study`'s document."""
    lines = ["| volatility slot | mean gate weight on the slot | net Sharpe | max drawdown | turnover / yr | "
             "balanced accuracy | confidence log loss | confidence Brier | slot QLIKE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in document["runs"].values():
        lines.append(f"| {run['label']} | {run['mean_gate']['volatility']:.3f} | {run['sharpe']:.2f} | "
                     f"{run['max_drawdown']:.1%} | {run['turnover']:.1f} | {run['balanced_accuracy']:.3f} | "
                     f"{run['confidence_log_loss']:.4f} | {run['confidence_brier']:.4f} | {run['slot_qlike']:.4f} "
                     f"({run['slot_qlike_bars']} bars) |")
    lines += ["", "| difference | net Sharpe [90% interval] | p | confidence log loss [90% interval] | p |",
              "|---|---|---|---|---|"]
    for key, d in document["differences"].items():
        a, b = (document["runs"][k]["label"] for k in key.split(" - "))
        s, c = d["sharpe"], d["confidence_log_loss"]
        lines.append(f"| {a} - {b} | {s['difference']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}] | "
                     f"{s['p_value']:.2f} | {c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] | "
                     f"{c['p_value']:.2f} |")
    check = document["runs"]["har_iv_blanked"]
    blanked = document["blanked"]
    lines += ["", f"Abstention check: VIX blanked on {blanked['bars']} test bars ({blanked['first'][:10]} .. "
                  f"{blanked['last'][:10]}): gate weight on the slot there mean "
                  f"{check['gate_volatility_blanked_bars']:.3f}, max {check['max_gate_volatility_blanked_bars']:.3f}; "
                  f"on the other test bars mean {check['gate_volatility_other_bars']:.3f}.", "",
              "| net Sharpe | before the blanked bars | on them | after them |", "|---|---|---|---|"]
    for key in ("blend", "har_iv", "har_iv_blanked"):
        run = document["runs"][key]
        parts = run["sharpe_by_part"]
        lines.append(f"| {run['label']} | {parts['before_blanked_bars']:.2f} | {parts['blanked_bars']:.2f} | "
                     f"{parts['after_blanked_bars']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The MoE with and without the VIX in its volatility slot.")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    document = run_study(reps=args.reps)
    print(f"{document['symbol']} {document['first'][:10]} .. {document['last'][:10]}: {document['bars']} bars, "
          f"test from {document['test_start'][:10]} ({document['test_bars']} bars), {document['cost_bps']:g} bp, "
          f"{document['missing_vix_bars']} bar(s) without a VIX value")
    print(markdown(document))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
