"""Does implied volatility add to HAR? GARCH(1,1), HAR, IV alone and HAR + IV walked forward on the S&P 500.

Data: the S&P 500 daily bars (``arch.data.sp500``, Yahoo Finance, 1999-2018) and the VIX closes
(``arch.data.vix``, 2014-01-03 .. 2019-01-03) that ship with the ``arch`` package; the span is their
overlap. The VIX close of day t is joined to bar t (``implied_vol``) and, as a check on timing (the VIX
closes 15 minutes after the index), the previous day's close (``implied_vol_prev``). The walk-forward,
labels and QLIKE are those of :func:`signal_engine.evaluation.expert_suite.run_expert_suite` (the suite
runs the experts, with the IV entries allowed because the frame carries the column). Paired stationary-
bootstrap intervals of the mean QLIKE difference come from
:func:`signal_engine.evaluation.significance.mean_difference`.

Run: ``python -m signal_engine.evaluation.implied_vol_study [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signal_engine.config import RunConfig, load_config
from signal_engine.data.loader import PriceSeries, load_prices
from signal_engine.evaluation.backtest import series_frame
from signal_engine.evaluation.expert_suite import SuiteSettings, run_expert_suite
from signal_engine.evaluation.significance import mean_difference
from signal_engine.experts.implied_volatility import IV_COLUMN
from signal_engine.labels import make_labels
from signal_engine.registry import ExpertSpec, load_catalogue

PREVIOUS_COLUMN = "implied_vol_prev"
MODELS = {
    "baseline_garch11": "GARCH(1,1)",
    "vol_har": "HAR",
    "vol_implied": "IV alone (VIX of day t)",
    "vol_har_implied": "HAR + log IV (VIX of day t)",
    "vol_har_implied_prev": "HAR + log IV (VIX of day t-1)",
}
COMPARISONS = (("vol_har_implied", "vol_har"), ("vol_har_implied", "baseline_garch11"),
               ("vol_implied", "vol_har"), ("vol_har_implied_prev", "vol_har"))


def sp500_and_vix(start: str = "2014-01-01", end: str = "2019-01-03") -> tuple[PriceSeries, pd.Series]:
    """The S&P 500 bars between ``start`` and ``end`` (loaded as any price file is) and the VIX aligned to them."""
    from arch.data import sp500, vix

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "SP500.csv"
        sp500.load().loc[start:end].to_csv(path, index_label="Date")
        series = load_prices(path, "SP500")
    closes = vix.load()["vix"]
    closes.index = pd.DatetimeIndex(closes.index).as_unit("us")
    aligned = closes.reindex(pd.DatetimeIndex(series.bars.index))
    return series, pd.Series(aligned.to_numpy(dtype=float), index=series.bars.index, name=IV_COLUMN)


def study_catalogue() -> dict[str, ExpertSpec]:
    """The packaged catalogue with the IV experts allowed on this frame, and the previous-day variant."""
    specs = load_catalogue()
    har_iv = specs["vol_har_implied"]
    specs["vol_implied"] = replace(specs["vol_implied"], inputs="bars")
    specs["vol_har_implied"] = replace(har_iv, inputs="bars")
    specs["vol_har_implied_prev"] = replace(har_iv, name="vol_har_implied_prev", inputs="bars",
                                            kwargs={**har_iv.kwargs, "column": PREVIOUS_COLUMN})
    return specs


def run_study(config: RunConfig | None = None, *, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """QLIKE of every model on the test span and on every out-of-sample bar, and the paired intervals."""
    config = config or load_config("quick")
    series, iv = sp500_and_vix()
    frame = series_frame(series)
    frame[IV_COLUMN] = iv
    frame[PREVIOUS_COLUMN] = iv.shift(1)
    settings = SuiteSettings(experts=tuple(m for m in MODELS if not m.startswith("baseline_")),
                             include_tensorflow=False)
    result = run_expert_suite(series, config, settings=settings, catalogue=study_catalogue(), features=frame)
    labels = make_labels(series.bars, frame["vol30"].to_numpy(), horizon=config.labels.horizon,
                         threshold=config.labels.threshold)
    y = labels.next_variance
    forecasts = {name: result.outputs[name][:, 0] for name in MODELS}
    wf = config.walk_forward
    spans = {"test": wf.test_start, "all_out_of_sample": wf.initial_window}
    document: dict[str, Any] = {
        "bars": len(frame), "first": str(frame.index[0]), "last": str(frame.index[-1]),
        "missing_iv_bars": int(iv.isna().sum()), "walk_forward": {"initial_window": wf.initial_window,
        "test_start": wf.test_start, "refit_every": wf.refit_every}, "reps": reps, "spans": {},
    }
    for span, first in spans.items():
        rows = np.zeros(len(frame), dtype=bool)
        rows[first:] = True
        rows &= np.isfinite(y)
        for f in forecasts.values():
            rows &= np.isfinite(f) & (f > 0)
        losses = {name: np.log(f[rows]) + y[rows] / f[rows] for name, f in forecasts.items()}
        document["spans"][span] = {
            "rows": int(rows.sum()), "from": str(frame.index[int(np.flatnonzero(rows)[0])]),
            "qlike": {name: float(loss.mean()) for name, loss in losses.items()},
            "differences": {f"{a} - {b}": mean_difference(losses[a], losses[b], reps=reps, seed=seed).to_dict()
                            for a, b in COMPARISONS},
        }
    return document


def markdown(document: dict[str, Any]) -> str:
    """The QLIKE table and the interval table of :func:`run_study`'s document."""
    spans = document["spans"]
    lines = ["| model | " + " | ".join(f"QLIKE, {s} ({v['rows']} bars from {v['from'][:10]})"
                                       for s, v in spans.items()) + " |",
             "|---|" + "---|" * len(spans)]
    for name, label in MODELS.items():
        lines.append(f"| {label} | " + " | ".join(f"{v['qlike'][name]:.4f}" for v in spans.values()) + " |")
    lines += ["", "| difference (lower is better for the first) | span | mean | 90% interval | p | block |",
              "|---|---|---|---|---|---|"]
    for span, v in spans.items():
        for key, d in v["differences"].items():
            a, b = key.split(" - ")
            lines.append(f"| {MODELS[a]} - {MODELS[b]} | {span} | {d['difference']:+.4f} | "
                         f"[{d['low']:+.4f}, {d['high']:+.4f}] | {d['p_value']:.3f} | {int(d['block'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GARCH(1,1), HAR, IV and HAR + IV on the S&P 500 and the VIX.")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    document = run_study(reps=args.reps)
    print(f"S&P 500 {document['first'][:10]} .. {document['last'][:10]}: {document['bars']} bars, "
          f"{document['missing_iv_bars']} without a VIX value; walk-forward {document['walk_forward']}")
    print(markdown(document))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
