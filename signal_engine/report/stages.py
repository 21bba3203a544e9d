"""The multi-stage engine's section of the report: what each stage removed, what it cost, net Sharpe after it."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("candidates_in", "passed", "false_positives_removed", "true_positives_lost", "precision", "sharpe",
           "max_drawdown", "turnover")
TITLES = {
    "raw": "raw calls (stage-1 model, every bar)",
    "stage1_filters": "stage 1: fast filters (LightGBM probability + RSI rule)",
    "stage2_sequence": "stage 2: sequence refinement",
    "stage3_stacking": "stage 3: stacking + uncertainty (calibrated confidence)",
}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def stages_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per stage: candidates in, passed, false positives removed, true positives lost (the cost), net Sharpe."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("stage", *COLUMNS))
    body = "".join(
        "<tr><td>" + html.escape(TITLES.get(str(row["stage"]), str(row["stage"]))) + "</td>"
        + "".join(f"<td>{_cell(row.get(c, float('nan')))}</td>" for c in COLUMNS) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def stages_section(metrics: Mapping[str, Any]) -> str:
    """The ``<h3>`` section for one symbol's ``metrics['stages']``; empty when the engine did not run."""
    rows = metrics.get("stages")
    if not rows:
        return ""
    note = ("<p class=\"note\">Seed 002's multi-stage engine on the walk-forward test span. Every bar starts as "
            "the stage-1 model's raw call (long if P(up) &ge; P(down), else short); a call is a true positive when "
            "the H-bar trend class matches it. Each stage keeps some of the previous stage's calls: false "
            "positives removed is the gain, true positives lost the cost. Sharpe is net of costs for trading "
            "every kept call (volatility-targeted) from the bar's close to the next; the last row is the "
            "<code>multistage</code> strategy.</p>")
    return f"<h3>multi-stage engine</h3>{note}{stages_table(rows)}"
