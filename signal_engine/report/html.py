"""Render the backtest into one self-contained HTML file (figures inlined as PNG)."""

from __future__ import annotations

import base64
import contextlib
import gc
import html
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from signal_engine.report import figures
from signal_engine.report.monitoring import STRATEGY_COLUMNS, monitoring_sections
from signal_engine.report.stages import stages_section

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
tr.baseline td{color:#666}tr.best td{font-weight:600}img{max-width:100%}.note{color:#555;font-size:.9em}
"""


class _Result(Protocol):
    symbol: str
    data: dict[str, Any]
    signals: pd.DataFrame
    metrics: dict[str, dict[str, dict[str, Any]]]
    returns: pd.DataFrame
    realised_vol: pd.Series


_COLUMNS = {
    "strategies": STRATEGY_COLUMNS,
    "trend": ("accuracy", "balanced_accuracy", "log_loss", "rows"),
    "volatility": ("qlike", "mse", "rows"),
    "levels": ("support_error", "resistance_error", "support_hold_rate", "resistance_hold_rate", "rows"),
    "confidence": ("ece", "brier", "hit_rate", "rows"),
}


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return html.escape(str(value))


def metric_table(rows: Mapping[str, Mapping[str, Any]], columns: Iterable[str]) -> str:
    columns = tuple(columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("model", *columns))
    body = []
    for name, values in rows.items():
        css = ' class="baseline"' if name.startswith("baseline_") else ""
        cells = "".join(f"<td>{_format(values.get(c, float('nan')))}</td>" for c in columns)
        body.append(f"<tr{css}><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


_EXPERT_SECTIONS = ("trend", "volatility", "levels")


def _expert_tables(experts: Mapping[str, Any]) -> str:
    """The expert suite's tables: every expert of a kind, its baseline named beside it."""
    baselines = experts.get("baselines", {})
    parts = []
    for section in _EXPERT_SECTIONS:
        rows = experts.get(section, {})
        if not rows:
            continue
        columns = list(dict.fromkeys(k for values in rows.values() for k in values if k != "rows"))
        labelled = {
            (f"{name} (vs {baselines[name]})" if baselines.get(name) else name): values for name, values in rows.items()
        }
        parts.append(f"<h3>experts: {section}</h3>{metric_table(labelled, columns)}")
    return "".join(parts)


def _explanation_table(rows: pd.DataFrame) -> str:
    """Each signal with every expert's share of the score (score x gate weight) and the trend model's top features."""
    columns = [c for c in rows.columns if c not in ("symbol",)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_format(row[c])}</td>" for c in columns) + "</tr>" for _, row in rows.iterrows()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _symbol_section(result: _Result) -> str:
    title = result.symbol
    data = result.data
    parts = [
        f"<h2>{html.escape(title)}</h2>",
        f'<p class="note">{data["bars"]} bars from {html.escape(data["start"])} to {html.escape(data["end"])} '
        f"({html.escape(data['source'])}); test span starts {html.escape(data['test_start'])} "
        f"({data['test_bars']} bars).</p>",
        _image(figures.equity_curves(result.returns, title), f"{title} equity curves"),
        _image(figures.drawdowns(result.returns, ("moe", "baseline_buy_and_hold"), title), f"{title} drawdown"),
        _image(figures.gate_weights(result.signals, title), f"{title} gate weights"),
        _image(figures.volatility(result.signals, result.realised_vol, title), f"{title} volatility"),
        _image(figures.reliability(result.metrics["confidence"]["moe"]["bins"], title), f"{title} reliability"),
    ]
    for section, columns in _COLUMNS.items():
        parts.append(f"<h3>{section}</h3>{metric_table(result.metrics[section], columns)}")
    parts.append(stages_section(result.metrics))
    explanations = getattr(result, "explanations", None)
    if explanations is not None and len(explanations):
        parts.append(f"<h3>latest signals, explained</h3>{_explanation_table(explanations.tail(10))}")
    experts = getattr(result, "experts", None)
    if experts:
        parts.append(f'<p class="note">Expert suite: the series routes to archetype '
                     f"<b>{html.escape(str(experts.get('archetype')))}</b>.</p>{_expert_tables(experts)}")
    return "\n".join(parts)


@contextlib.contextmanager
def _old_objects_left_out_of_collections() -> Iterator[None]:
    """While inside, the garbage collector's passes skip the objects alive on entry (``gc.freeze``): drawing the
    figures allocates enough to trigger full passes, each of which would walk every object of the backtest
    (two took 0.3 s of a 2.5 s report); the figures' own garbage is still collected. Left alone when something
    else froze objects already (``gc.unfreeze`` would thaw them too)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def render_report(results: Sequence[_Result], metrics: dict[str, Any], books: Sequence[Any] = ()) -> str:
    """The whole report: a summary of every model against its baselines, the monitoring of each orchestrated
    book (``books``), then one section per symbol."""
    with _old_objects_left_out_of_collections():
        return _render_report(results, metrics, books)


def _render_report(results: Sequence[_Result], metrics: dict[str, Any], books: Sequence[Any]) -> str:
    evaluation = metrics["evaluation"]
    summary = "".join(
        f"<h3>{section}</h3>{metric_table(metrics[section], columns)}" for section, columns in _COLUMNS.items()
    )
    scope = "one symbol" if len(results) == 1 else f"mean over {len(results)} symbols"
    intro = (
        f"<p>Walk-forward evaluation, profile <b>{html.escape(str(metrics['data']['profile']))}</b>, costs "
        f"{evaluation['cost_bps']} bps per unit of exposure traded, refit every {evaluation['refit_every']} bars, "
        f"label horizon {evaluation['horizon']} bars. Every number is out of sample; baselines (grey) are "
        f"computed in the same run. Summary: {scope}.</p>"
    )
    if "experts" in metrics:
        summary += "<h2>Experts against their baselines</h2>" + _expert_tables(metrics["experts"])
    sections = "\n".join(_symbol_section(r) for r in results)
    if books:
        sections = monitoring_sections(books, _image, metric_table) + "\n" + sections
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>signal-engine backtest</title>"
        f"<style>{_CSS}</style></head><body><h1>signal-engine backtest</h1>{intro}"
        f"<h2>Summary</h2>{summary}{sections}</body></html>"
    )
