"""Matplotlib figures of one symbol's backtest, returned as PNG bytes."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import PIL.Image
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import LogFormatter

_STYLES: dict[str, dict[str, Any]] = {
    "moe": {"color": "#1f4e9c", "linewidth": 2.0},
    "baseline_buy_and_hold": {"color": "#444444", "linewidth": 1.4},
}


DPI = 90
_PAD = round(0.1 * DPI)  # savefig's pad_inches around the drawn content, in pixels
_EDGE = 2  # drawn pixels this close to the canvas' edge may belong to an artist that sticks out of it
_METADATA: dict[str, str | None] = {"Software": None}  # no version string: the same bytes on any matplotlib
_P = ParamSpec("_P")
_R = TypeVar("_R")
TITLE_Y: float | None = 1.0  # report_figure's titles' height in axes units (None: matplotlib places them)


def report_figure(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """A figure function whose titles sit at a fixed height above their axes (matplotlib would lay out the y tick
    labels, at every draw, to place them; ``_png`` lifts one that overlaps the y axis' offset text)."""

    @functools.wraps(draw)
    def styled(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context({"axes.titley": TITLE_Y}):
            return draw(*args, **kwargs)

    return styled


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes: what is drawn on it, with a margin of ``_PAD`` pixels of background around.

    The canvas is drawn once and its pixels cropped to the drawn ones, where ``savefig(bbox_inches="tight")``
    draws the figure twice (a layout pass, then the picture) for the same picture. A drawing that reaches the
    canvas' edge (an artist may stick out of it) falls back to ``savefig``'s tight bounding box, which widens
    the canvas to hold every artist. Titles sit at a fixed height (``report_figure``); one that the drawing shows
    overlapping its y axis' offset text (a "1e-5" above the axis) is lifted above it and the figure drawn again.
    """
    try:
        figure.set_dpi(DPI)
        canvas = FigureCanvasAgg(figure)
        _without_label_layout(figure)
        canvas.draw()
        if _lifted_titles(figure, canvas.get_renderer()):
            canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())
        box = _drawn_box(pixels)
        buffer = io.BytesIO()
        if box is None:
            figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata=_METADATA)
        else:
            PIL.Image.fromarray(_padded(pixels, box)).save(buffer, format="png", dpi=(DPI, DPI))
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _without_label_layout(figure: Figure) -> None:
    """An axis without a label needs no room measured for it: matplotlib would measure every tick label of the
    axis (and its siblings) at each draw to place the empty label."""
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            if not axis.label.get_text():
                axis.set_label_coords(0.5, 0.5)


def _lifted_titles(figure: Figure, renderer: RendererAgg) -> bool:
    """Move each title that overlaps its y axis' offset text above that text; whether any moved."""
    lifted = False
    for axes in figure.axes:
        offset = axes.yaxis.offsetText
        if not (axes.title.get_text() and offset.get_visible() and offset.get_text()):
            continue
        box = offset.get_window_extent(renderer)
        if box.overlaps(axes.title.get_window_extent(renderer)):
            axes.title.set_y(axes.transAxes.inverted().transform((0.0, box.y1))[1])
            lifted = True
    return lifted


def _drawn_box(pixels: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns of the drawn pixels (those unlike the top-left corner, the background); None when
    nothing is drawn or the drawing comes within ``_EDGE`` pixels of the canvas' edge."""
    colours = pixels.view(np.uint32)[..., 0]  # one RGBA pixel, one number
    drawn = colours != colours[0, 0]
    rows, columns = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    height, width = drawn.shape
    if not len(rows) or min(rows[0], columns[0], height - 1 - rows[-1], width - 1 - columns[-1]) < _EDGE:
        return None
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def _padded(pixels: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """The drawn pixels in ``box`` with ``_PAD`` pixels of background on every side, without the alpha channel
    when every pixel is opaque (a quarter less to compress)."""
    drawn = pixels[box]
    if (pixels[..., 3] == 255).all():
        drawn = drawn[..., :3]
    padded = np.empty((drawn.shape[0] + 2 * _PAD, drawn.shape[1] + 2 * _PAD, drawn.shape[2]), dtype=pixels.dtype)
    padded[...] = pixels[0, 0, :drawn.shape[2]]
    padded[_PAD:-_PAD, _PAD:-_PAD] = drawn
    return padded


class _PlainLogFormatter(LogFormatter):
    """A log axis' tick labels as plain numbers ("0.8", "2", "0.001") where the log scale's default writes
    "8x10^-1" as mathtext, typeset by a parser on every figure; the same ticks are labelled."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def plain_log_labels(axis: Axis) -> None:
    """Label ``axis`` (on a log scale) with ``_PlainLogFormatter``, major and minor ticks."""
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def text_width(labels: Iterable[object], fontsize: float) -> float:
    """Width in inches of the widest of ``labels`` written at ``fontsize`` points (0 without labels)."""
    renderer = RendererAgg(1, 1, 72)  # at 72 dpi a pixel is a point
    font = FontProperties(size=fontsize)
    widths = [renderer.get_text_width_height_descent(str(label), font, ismath=False)[0] for label in labels]
    return max(widths, default=0.0) / 72


def fixed_margins(figure: Figure, left: float, right: float, top: float, bottom: float, wspace: float = 0.0,
                  hspace: float = 0.0) -> None:
    """Place the figure's grid of subplots with margins and gaps between panels in inches (``_png`` crops the
    blank part): a fixed layout, computed without drawing, where a layout engine measures every label."""
    width, height = figure.get_size_inches()
    grid = figure.axes[0].get_gridspec()
    if grid is None:
        raise ValueError("fixed_margins places a grid of subplots; the figure's first axes is not on one")
    rows, columns = grid.get_geometry()
    panel_width = (width - left - right - (columns - 1) * wspace) / columns
    panel_height = (height - top - bottom - (rows - 1) * hspace) / rows
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                           wspace=wspace / panel_width, hspace=hspace / panel_height)


@report_figure
def equity_curves(returns: pd.DataFrame, title: str) -> bytes:
    """Growth of 1 for each strategy, log scale, the MoE and buy & hold drawn heavier."""
    figure, axis = plt.subplots(figsize=(10, 4.2))
    for name in returns.columns:
        style = _STYLES.get(name, {"linewidth": 0.9, "alpha": 0.8})
        axis.plot(returns.index, (1.0 + returns[name]).cumprod(), label=name, **style)
    axis.set_yscale("log")
    plain_log_labels(axis.yaxis)
    axis.set_title(f"{title}: equity, net of costs (log scale)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2, loc="upper left")
    return _png(figure)


@report_figure
def drawdowns(returns: pd.DataFrame, names: tuple[str, ...], title: str) -> bytes:
    """Drawdown from the running peak for the named strategies."""
    figure, axis = plt.subplots(figsize=(10, 2.8))
    for name in names:
        equity = (1.0 + returns[name]).cumprod()
        axis.fill_between(returns.index, equity / equity.cummax() - 1.0, 0.0, alpha=0.35, label=name)
    axis.set_title(f"{title}: drawdown")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    return _png(figure)


@report_figure
def gate_weights(signals: pd.DataFrame, title: str) -> bytes:
    """Stacked gate weights over the test span."""
    columns = [c for c in signals.columns if c.startswith("gate_")]
    index = pd.to_datetime(signals["timestamp"])
    figure, axis = plt.subplots(figsize=(10, 2.8))
    axis.stackplot(index, *(signals[c].to_numpy() for c in columns), labels=[c[5:] for c in columns], alpha=0.85)
    axis.set_ylim(0, 1)
    axis.set_title(f"{title}: gate weights")
    axis.legend(fontsize=8, loc="upper left", ncol=len(columns))
    return _png(figure)


@report_figure
def volatility(signals: pd.DataFrame, realised: pd.Series, title: str, window: int = 20) -> bytes:
    """Forecast volatility against the realised next-bar move (rolling RMS over ``window`` bars)."""
    index = pd.to_datetime(signals["timestamp"])
    squared = pd.Series(realised.to_numpy() ** 2)
    smoothed = np.sqrt(squared.rolling(window, min_periods=1).mean().to_numpy())
    figure, axis = plt.subplots(figsize=(10, 2.8))
    axis.plot(index, smoothed, color="#999999", linewidth=0.9, label=f"realised ({window}-bar RMS)")
    axis.plot(index, signals["vol_forecast"].to_numpy(), color="#c0392b", linewidth=1.1, label="forecast")
    axis.set_title(f"{title}: next-bar volatility, forecast vs realised")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    return _png(figure)


@report_figure
def reliability(bins: list[dict[str, float]], title: str) -> bytes:
    """Reliability diagram of the signal confidence: hit rate against mean confidence per bin."""
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle="--", label="perfect calibration")
    if bins:
        confidence = [b["confidence"] for b in bins]
        hit_rate = [b["hit_rate"] for b in bins]
        sizes = [20 + 180 * b["rows"] / max(x["rows"] for x in bins) for b in bins]
        axis.plot(confidence, hit_rate, color="#1f4e9c", linewidth=1.2)
        axis.scatter(confidence, hit_rate, s=sizes, color="#1f4e9c", alpha=0.7, label="MoE confidence (size: rows)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("share of signals whose H-bar move went their way")
    axis.set_title(f"{title}: reliability")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")
    return _png(figure)
