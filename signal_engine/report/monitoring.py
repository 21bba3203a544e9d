"""The orchestration's monitoring section of the report (seed 004 section 6), one part per book.

Allocation history, correlation heatmaps (models and assets), conflict events, risk-limit activations, the
synergy figure (the combined system against the sum of its parts), each model's contribution, the signal
alignment analysis (alignment frequency by timeframe, its impact on performance) and trade clustering,
drawn from the event table and the orchestrator's per-bar history; every figure has its numbers in a table
or in ``metrics.json`` too.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from signal_engine.orchestration import OrchestrationResult
from signal_engine.orchestration.analytics import (
    ModelAttribution,
    agreement_matrix,
    harmony_buckets,
    model_attribution,
    side_split,
    trade_clustering,
    trade_log,
    with_book,
)
from signal_engine.report.figures import _png, fixed_margins, plain_log_labels, report_figure, text_width

STRATEGY_COLUMNS = ("sharpe", "gross_sharpe", "cagr", "max_drawdown", "turnover", "cost_drag", "trades", "exposure")

ACTIVATION_KINDS = ("risk_limit_activated", "emergency_deleveraging", "correlation_warning")
# room, in inches, around the panels of a fixed layout (``fixed_margins``)
_TICK = 0.1  # between an axis and its tick labels: the tick and its pad
_LINE = 0.15  # a line of 8-point text
_PAD = 0.15  # between two things
_TITLE = 0.35  # above a panel: a 9-point title
_STYLES: dict[str, dict[str, Any]] = {
    "orchestrated": {"color": "#1f4e9c", "linewidth": 2.0},
    "timeframes_equal_weight": {"color": "#c0392b", "linewidth": 1.4},
    "moe": {"color": "#27ae60", "linewidth": 1.2},
    "baseline_buy_and_hold": {"color": "#444444", "linewidth": 1.2},
}


class _Book(Protocol):
    name: str
    symbols: tuple[str, ...]
    periods_per_year: float
    cost_bps: dict[str, float]
    result: OrchestrationResult
    returns: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    comparisons: dict[str, dict[str, float]]


@report_figure
def allocation_history(result: OrchestrationResult, title: str) -> bytes:
    """Stacked capital shares of the timeframe models over time, the optimiser's targets dashed."""
    figure, axis = plt.subplots(figsize=(10, 3.0))
    allocations = result.allocations
    axis.stackplot(allocations.index, *(allocations[m].to_numpy() for m in result.models), labels=list(result.models),
                   alpha=0.8)
    targets = result.target_allocations.cumsum(axis=1)
    for model in list(result.models)[:-1]:
        axis.plot(targets.index, targets[model].to_numpy(), color="black", linewidth=0.6, linestyle="--")
    axis.set_ylim(0, 1)
    axis.set_title(f"{title}: capital allocation per timeframe model (dashed: optimiser's target, cumulative)")
    axis.legend(fontsize=8, loc="upper left", ncol=len(result.models))
    return _png(figure)


def _heatmap_margins(figure: Figure, labels: Sequence[str], colorbar_label: str, right: float, bottom: float,
                     next_panel: float = 0.0) -> None:
    """Fixed margins of a row of heatmaps with a colour bar each and ``labels`` (8 points) on both axes, the x
    ones at 45 degrees: the widest label sets the room left of each panel and below it; ``colorbar_label`` (10
    points) is as wide as the colour bars' widest; ``right`` and ``bottom``: at least this room at the right
    and the bottom; ``next_panel``: the room the next panel's own y tick labels need."""
    label = text_width(labels, 8) + _TICK
    colorbar = text_width([colorbar_label], 10) + _TICK
    rotated = 0.71 * (label + _LINE)  # a label at 45 degrees reaches this far below the axis
    fixed_margins(figure, left=label + _PAD, right=max(right, colorbar + _PAD), top=_TITLE,
                  bottom=max(bottom, rotated + _PAD), wspace=colorbar + max(label, next_panel) + _PAD)


@report_figure
def correlation_heatmaps(result: OrchestrationResult, title: str) -> bytes:
    """Correlation of the models' returns and of the assets' returns over the whole run."""
    panels = [("timeframe models' returns", result.model_correlation())]
    if len(result.symbols) > 1:
        panels.append(("assets' returns", result.asset_correlation()))
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    labels = [str(label) for _, matrix in panels for label in (*matrix.index, *matrix.columns)]
    _heatmap_margins(figure, labels, "\N{MINUS SIGN}0.75", right=0.0, bottom=0.0)
    for axis, (name, matrix) in zip(axes[0], panels, strict=True):
        values = matrix.to_numpy(dtype=float)
        image = axis.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
        axis.set_xticks(range(len(matrix)), list(matrix.columns), rotation=45, fontsize=8)
        axis.set_yticks(range(len(matrix)), list(matrix.index), fontsize=8)
        for (i, j), value in np.ndenumerate(values):
            axis.text(j, i, "-" if not np.isfinite(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
        axis.set_title(f"{title}: {name}", fontsize=9)
        figure.colorbar(image, ax=axis, fraction=0.046)
    return _png(figure)


@report_figure
def risk_scales(result: OrchestrationResult, title: str) -> bytes:
    """Every risk component's scale per bar (1: not binding), emergency deleveraging marked."""
    figure, axis = plt.subplots(figsize=(10, 3.0))
    scales = result.risk_scales
    for component in scales.columns:
        width = 1.6 if component == "final" else 0.8
        axis.plot(scales.index, scales[component].to_numpy(), linewidth=width, label=component, alpha=0.85)
    events = result.events
    emergencies = events.loc[events["kind"] == "emergency_deleveraging", "timestamp"]
    for stamp in emergencies:
        axis.axvline(stamp, color="#c0392b", linewidth=0.8, linestyle=":")
    axis.set_ylim(-0.02, 1.05)
    axis.set_title(f"{title}: risk-limit scales per bar (red dotted: emergency deleveraging)")
    axis.legend(fontsize=7, loc="lower left", ncol=len(scales.columns))
    axis.grid(True, alpha=0.3)
    return _png(figure)


@report_figure
def synergy_figure(book: _Book) -> bytes:
    """Equity of the combined system against the sum of its parts, each part alone, the MoE and buy & hold."""
    figure, axis = plt.subplots(figsize=(10, 4.2))
    for name, style in _STYLES.items():
        if name in book.returns.columns:
            axis.plot(book.returns.index, (1.0 + book.returns[name]).cumprod(), label=name, **style)
    for model, series in book.result.model_returns().items():
        axis.plot(series.index, (1.0 + series).cumprod(), label=f"{model} alone", linewidth=0.7, alpha=0.7)
    axis.set_yscale("log")
    plain_log_labels(axis.yaxis)
    sharpe = {k: book.metrics[k]["sharpe"] for k in ("orchestrated", "timeframes_equal_weight")}
    axis.set_title(f"{book.name} book: combined system (Sharpe {sharpe['orchestrated']:.2f}) vs sum of parts "
                   f"(Sharpe {sharpe['timeframes_equal_weight']:.2f}), net of costs, log scale")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, ncol=3, loc="upper left")
    return _png(figure)


@report_figure
def contribution_figure(attribution: ModelAttribution, title: str) -> bytes:
    """Cumulative net contribution of each timeframe model to the book (they add up to the book's line)."""
    figure, axis = plt.subplots(figsize=(10, 3.4))
    net = attribution.net
    for model in net.columns:
        axis.plot(net.index, net[model].cumsum().to_numpy(), linewidth=1.1, label=str(model))
    axis.plot(net.index, net.sum(axis=1).cumsum().to_numpy(), color="black", linewidth=1.8, label="book")
    axis.axhline(0.0, color="#888888", linewidth=0.6)
    axis.set_title(f"{title}: cumulative net contribution per timeframe model (sum of returns, costs shared by "
                   "traded part)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", ncol=len(net.columns) + 1)
    return _png(figure)


@report_figure
def alignment_figure(agreement: pd.DataFrame, buckets: pd.DataFrame, title: str) -> bytes:
    """Left: how often the timeframes agree (diagonal: share of bars with a view). Right: the book's return
    per unit of exposure by the harmony of the calls, hit rate above each bar."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.0))
    # right of the colour bar: the bars' y tick labels (as wide as "-0.025", say); below them: their x label
    _heatmap_margins(figure, [str(label) for label in agreement.index], "0.8", right=0.3, bottom=0.6,
                     next_panel=text_width(["\N{MINUS SIGN}0.000"], 10) + _TICK)
    values = agreement.to_numpy(dtype=float)
    image = left.imshow(values, vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(agreement)), list(agreement.columns), rotation=45, fontsize=8)
    left.set_yticks(range(len(agreement)), list(agreement.index), fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        left.text(j, i, "-" if not np.isfinite(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="white" if np.isfinite(value) and value < 0.6 else "black")
    left.set_title(f"{title}: agreement when both have a view", fontsize=9)
    figure.colorbar(image, ax=left, fraction=0.046)
    returns = buckets["return_per_exposure"].to_numpy(dtype=float)
    heights = np.nan_to_num(returns)
    colours = ["#27ae60" if v >= 0 else "#c0392b" for v in heights]
    labels = [str(h).split(" (")[0] for h in buckets["harmony"]]
    right.bar(range(len(buckets)), heights, color=colours)
    for i, (height, hit, count) in enumerate(zip(heights, buckets["hit_rate"], buckets["positions"], strict=True)):
        text = f"hit {hit:.0%}\n{count} bars" if np.isfinite(hit) else "no bars"
        right.annotate(text, (i, height), ha="center", va="bottom" if height >= 0 else "top", fontsize=7)
    right.set_xticks(range(len(buckets)), labels, fontsize=8)
    right.axhline(0.0, color="#888888", linewidth=0.6)
    right.use_sticky_edges = False  # room above and below the bars for the labels, whatever their sign
    right.margins(y=0.25)
    right.set_xlabel("harmony score of the calls behind the position")
    right.set_title(f"{title}: gross return a year per unit of exposure", fontsize=9)
    right.grid(True, axis="y", alpha=0.3)
    return _png(figure)


@report_figure
def trade_clustering_figure(result: OrchestrationResult, log: pd.DataFrame, title: str) -> bytes:
    """Top: exposure traded per bar over time (all symbols). Bottom: sizes of the trades (``log``, the
    result's ``trade_log``), as a fraction of the symbol's sleeve (log scale): many small resizes or few
    large moves."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6))
    # dates' tick labels stick out of the axes by half their width
    fixed_margins(figure, left=0.75, right=0.5, top=0.3, bottom=0.4, hspace=0.65)
    per_bar = log.assign(size=log["traded"].abs()).groupby("timestamp")["size"].sum()
    per_bar = per_bar.reindex(result.positions.index, fill_value=0.0)
    top.vlines(per_bar.index, 0.0, per_bar.to_numpy(), color="#1f4e9c", linewidth=0.6)
    top.set_title(f"{title}: exposure traded per bar (fraction of the book)", fontsize=9)
    top.grid(True, alpha=0.3)
    sizes = log["traded"].abs().to_numpy(dtype=float) * len(result.symbols)
    if len(sizes):
        bins = np.logspace(np.log10(max(sizes.min(), 1e-6)), np.log10(max(sizes.max(), 1e-5)), 40)
        bottom.hist(sizes, bins=bins, color="#7f8c8d", histtype="stepfilled")  # the bars' outline, one patch
        bottom.set_xscale("log")
        plain_log_labels(bottom.xaxis)
    bottom.set_title(f"{title}: trade sizes (fraction of the sleeve, log scale)", fontsize=9)
    bottom.grid(True, alpha=0.3)
    return _png(figure)


def contribution_table(attribution: ModelAttribution, periods_per_year: float) -> pd.DataFrame:
    """Per model: gross, costs and net a year, and its share of the book's net P&L."""
    rows = [{"model": model, **values} for model, values in attribution.summary(periods_per_year).items()]
    return pd.DataFrame(rows)


def alignment_table(result: OrchestrationResult, agreement: pd.DataFrame) -> pd.DataFrame:
    """Per model: share of bars with a view (the diagonal of ``agreement_matrix``) and how often the book sides
    with it (alignment frequency)."""
    return pd.DataFrame({"model": list(result.models), "share_of_bars_with_a_view": np.diag(agreement.to_numpy()),
                         "book_on_its_side": with_book(result).to_numpy()})


def activation_table(result: OrchestrationResult) -> pd.DataFrame:
    """Per component and rule: activations, and the share of bars the risk scale it feeds (``scale``, a column
    of ``risk_scales``) was below 1."""
    events = result.events
    fired = events[events["kind"].isin(ACTIVATION_KINDS)]
    counts = fired.groupby(["component", "rule"]).size().rename("activations")
    table = counts.reset_index()
    scales = result.risk_scales
    share = {c: float((scales[c] < 1.0 - 1e-12).mean()) for c in scales.columns}
    columns = [rule if rule in share else component for component, rule in zip(table["component"], table["rule"],
                                                                                  strict=True)]
    table["scale"] = columns
    table["bars_scaled_share"] = [share.get(c, np.nan) for c in columns]
    return table.sort_values(["component", "rule"], ignore_index=True)


def conflict_table(result: OrchestrationResult) -> pd.DataFrame:
    """Per symbol: conflicts, and the mean |net| exposure the models asked for and kept."""
    events = result.events[result.events["kind"] == "conflict"]
    if events.empty:
        return pd.DataFrame(columns=["symbol", "conflicts", "mean_abs_net_before", "mean_abs_net_after"])
    return events.groupby("symbol").agg(
        conflicts=("kind", "size"), mean_abs_net_before=("threshold", "mean"), mean_abs_net_after=("value", "mean"),
    ).reset_index()


def comparison_table(comparisons: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per pair of strategies: the Sharpe difference, its bootstrap interval and p-value."""
    rows = [{"comparison": name.replace("_vs_", " - "), "Sharpe difference": round(c["difference"], 3),
             f"{c['level']:.0%} interval": f"[{c['low']:.2f}, {c['high']:.2f}]", "p-value": round(c["p_value"], 3),
             "mean block (bars)": round(c["block"], 1)} for name, c in comparisons.items()]
    return pd.DataFrame(rows)


def _frame_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "-" if not np.isfinite(value) else f"{value:.4f}"
    if isinstance(value, pd.Timestamp):
        return html.escape(str(value.date()) if value == value.normalize() else str(value))
    return html.escape(str(value))


def _latest_conflicts(result: OrchestrationResult, rows: int = 8) -> pd.DataFrame:
    events = result.events[result.events["kind"] == "conflict"].tail(rows)
    details = [json.loads(d) for d in events["detail"]]
    return pd.DataFrame({
        "timestamp": events["timestamp"].to_list(), "symbol": events["symbol"].to_list(),
        "strategy": events["rule"].to_list(), "long": [d["long"] for d in details],
        "short": [d["short"] for d in details], "net before": [d["net_before"] for d in details],
        "net after": [d["net_after"] for d in details],
    })


def book_section(book: _Book, image: Any, metric_table: Any) -> str:
    """The monitoring of one book: comparison table, synergy, allocations, correlations, conflicts, risk."""
    r, title = book.result, f"{book.name} book"
    symbols = ", ".join(book.symbols)
    models = ", ".join(r.models)
    latest = _latest_conflicts(r)
    parts = [
        f"<h2>Portfolio: {html.escape(title)} ({html.escape(symbols)})</h2>",
        f'<p class="note">Timeframe models {html.escape(models)}, orchestrated into one book; each symbol has an '
        f"equal sleeve of 1/{len(book.symbols)} of the capital in every strategy below. <b>orchestrated</b>: the "
        "managed book; <b>moe</b>: each sleeve holds the single-horizon MoE's own position; "
        "<b>timeframes_equal_weight</b>: every timeframe model alone with a fixed equal share (the sum of the "
        "parts); walk-forward, net of each symbol's costs.</p>",
        metric_table(book.metrics, STRATEGY_COLUMNS),
        "<h3>Sharpe differences: could the ranking be noise?</h3>",
        '<p class="note">Paired stationary bootstrap of the two strategies\' net returns over the same bars '
        "(Politis-Romano; block length by Politis-White): an interval that contains 0 means this backtest cannot "
        "tell the two apart.</p>",
        _frame_table(comparison_table(book.comparisons)),
        image(synergy_figure(book), f"{title} synergy"),
        image(allocation_history(r, title), f"{title} allocation history"),
        image(correlation_heatmaps(r, title), f"{title} correlation heatmap"),
        image(risk_scales(r, title), f"{title} risk-limit scales"),
        *_analysis_parts(book, image),
        "<h3>risk-limit activations</h3>",
        _frame_table(activation_table(r)),
        "<h3>conflict events</h3>",
        _frame_table(conflict_table(r)),
    ]
    if len(latest):
        parts += ["<h4>latest conflicts</h4>", _frame_table(latest)]
    counts = pd.DataFrame(sorted(r.event_counts.items()), columns=["event", "count"])
    parts += ['<h3>all events (<code>events.csv</code>)</h3>', _frame_table(counts)]
    return "\n".join(parts)


def _analysis_parts(book: _Book, image: Any) -> list[str]:
    r, title = book.result, f"{book.name} book"
    attribution = model_attribution(r, book.cost_bps)
    buckets = harmony_buckets(r, book.periods_per_year)
    agreement = agreement_matrix(r)
    log = trade_log(r)
    return [
        "<h3>each timeframe model's contribution</h3>",
        '<p class="note">The book\'s net return split over the models: a model earns its part of each position; '
        "the costs of a trade are shared by the models' traded parts. The parts add up to the book.</p>",
        image(contribution_figure(attribution, title), f"{title} model contribution"),
        _frame_table(contribution_table(attribution, book.periods_per_year)),
        "<h3>signal alignment</h3>",
        '<p class="note">Alignment frequency by timeframe (how often two models with a view are on the same '
        "side, and how often the book sides with each) and its impact on performance: the book's gross return "
        "per unit of exposure by the harmony score of the calls behind the position.</p>",
        image(alignment_figure(agreement, buckets, title), f"{title} signal alignment"),
        _frame_table(alignment_table(r, agreement)),
        _frame_table(buckets),
        "<h4>long against short positions</h4>",
        _frame_table(side_split(r, book.periods_per_year)),
        "<h3>trade clustering</h3>",
        image(trade_clustering_figure(r, log, title), f"{title} trade clustering"),
        _frame_table(pd.DataFrame([trade_clustering(r, book.periods_per_year, log)])),
    ]


def monitoring_sections(books: Sequence[_Book], image: Any, metric_table: Any) -> str:
    """Every book's monitoring section."""
    return "\n".join(book_section(b, image, metric_table) for b in books)
