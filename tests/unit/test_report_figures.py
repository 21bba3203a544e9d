"""The report's figure rendering: one draw cropped to the drawn pixels, its fallbacks, the fixed layouts."""

from __future__ import annotations

import gc
import io

import numpy as np
import PIL.Image
import pytest
from matplotlib import pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from signal_engine.report.figures import _png, fixed_margins, plain_log_labels, report_figure, text_width
from signal_engine.report.html import _old_objects_left_out_of_collections

PAD = 9  # savefig's pad_inches, 0.1 inch, at 90 dpi


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB"))


def _figure_with_block(left: int, bottom: int, width: int, height: int) -> Figure:
    """A 2 x 1 inch figure (180 x 90 pixels at 90 dpi) with one black block at these pixels (from the bottom left)."""
    figure = plt.figure(figsize=(2, 1))
    block = Rectangle((left / 180, bottom / 90), width / 180, height / 90, transform=figure.transFigure,
                      facecolor="black", edgecolor="none", antialiased=False)
    figure.add_artist(block)
    return figure


def test_a_figure_is_cropped_to_its_drawing_with_a_pad_of_background() -> None:
    pixels = _pixels(_png(_figure_with_block(left=40, bottom=20, width=60, height=30)))
    assert pixels.shape == (30 + 2 * PAD, 60 + 2 * PAD, 3)
    inside = pixels[PAD:-PAD, PAD:-PAD]
    assert (inside == 0).all()
    border = np.ones(pixels.shape[:2], dtype=bool)
    border[PAD:-PAD, PAD:-PAD] = False
    assert (pixels[border] == 255).all()


def test_a_drawing_that_reaches_the_canvas_edge_gets_savefig_tight_bounding_box() -> None:
    figure = plt.figure(figsize=(2, 1))
    figure.text(0.6, 0.5, "a label sticking out of the figure", fontsize=10)
    pixels = _pixels(_png(figure))
    assert pixels.shape[1] > 180  # the canvas widened to hold the whole label, as savefig(bbox_inches="tight")


def test_the_png_is_the_same_bytes_every_time() -> None:
    assert _png(_figure_with_block(40, 20, 60, 30)) == _png(_figure_with_block(40, 20, 60, 30))


def test_fixed_margins_place_the_panels_in_inches() -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    fixed_margins(figure, left=1.0, right=0.5, top=0.5, bottom=1.0, wspace=1.0)
    # panels 3.75 inches wide: (10 - 1 - 0.5 - 1) / 2
    assert left.get_position().bounds == pytest.approx((0.1, 0.25, 0.375, 0.625))
    assert right.get_position().bounds == pytest.approx((0.575, 0.25, 0.375, 0.625))
    plt.close(figure)


def test_text_width_grows_with_the_text_and_its_size() -> None:
    assert text_width([], 10) == 0.0
    narrow, wide = text_width(["iii"], 10), text_width(["WWW"], 10)
    assert 0 < narrow < wide
    assert text_width(["iii", "WWW"], 10) == wide
    assert text_width(["WWW"], 20) == pytest.approx(2 * wide, rel=0.05)


def test_log_axis_labels_are_plain_numbers() -> None:
    figure, axis = plt.subplots()
    axis.set_yscale("log")
    axis.set_ylim(0.75, 1.05)
    plain_log_labels(axis.yaxis)
    figure.canvas.draw()
    labels = [t.get_text() for t in (*axis.get_yticklabels(), *axis.get_yticklabels(minor=True)) if t.get_text()]
    plt.close(figure)
    assert {"0.8", "0.9", "1"} <= set(labels)
    assert not any("$" in label or "times" in label for label in labels)


@report_figure
def _titled(scale: float) -> tuple[Figure, bytes]:
    figure, axis = plt.subplots(figsize=(6, 2.8))
    axis.plot(np.arange(100), scale * np.sin(np.arange(100) / 10))
    axis.set_title("a title as wide as the axes, reaching the offset text above the y axis' top left")
    return figure, _png(figure)


def test_a_title_sits_at_the_axes_top_unless_the_offset_text_is_in_its_way() -> None:
    figure, _ = _titled(1.0)
    assert figure.axes[0].title.get_position()[1] == 1.0
    figure, _ = _titled(1e-7)  # the y axis writes "1e-7" above its top left
    axes = figure.axes[0]
    canvas = FigureCanvasAgg(figure)  # closed figures lose theirs
    canvas.draw()
    renderer = canvas.get_renderer()
    offset = axes.yaxis.offsetText.get_window_extent(renderer)
    assert axes.yaxis.offsetText.get_text()
    assert axes.title.get_position()[1] > 1.0
    assert not offset.overlaps(axes.title.get_window_extent(renderer))


def test_the_collector_skips_older_objects_only_while_the_report_is_drawn() -> None:
    assert gc.get_freeze_count() == 0
    with _old_objects_left_out_of_collections():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_objects_frozen_by_someone_else_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _old_objects_left_out_of_collections():
            pass
        # still frozen (a frozen object that dies leaves the count, so it is not compared exactly): unfreeze on
        # exit would have thawed them all, to 0
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()
