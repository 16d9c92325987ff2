"""Grids of explanations: rows = images × target classes, columns = input + (method, contrast)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from ..explanation import Explanation
from ..text import printable
from .overlay import colorbar, halfrange, overlay, smooth, to_numpy_image

Scale = Literal["map", "row", "column", "figure"]
SMOOTH_FRACTION = 1 / 56  # σ of the display smoothing of input-space maps, as a fraction of the image side


def _region(ex: Explanation, i: int, j: int) -> np.ndarray | None:
    """The explained region's mask (H, W) of image i, target j, when the unit is a region (drawn as an
    outline on every map of the row); None for whole images."""
    units = getattr(ex, "units", None)
    if not units or j >= len(units[i]) or units[i][j].get("kind") != "region":
        return None
    mask = units[i][j]["mask"].float().cpu().numpy()
    return mask if 0 < mask.sum() < mask.size else None


def _object(ex: Explanation, i: int, j: int) -> dict[str, Any] | None:
    """The detected object of image i, target j (its box drawn on every map of the row); None otherwise."""
    units = getattr(ex, "units", None)
    if not units or j >= len(units[i]) or units[i][j].get("kind") != "object":
        return None
    return units[i][j]


def _draw_box(ax: Any, unit: dict[str, Any], name: str) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = unit["box"]
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black", linewidth=1.0))
    ax.text(x0, y0, f" {name}", fontsize=5, va="bottom", ha="left", color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "linewidth": 0})


def readable(label: str) -> str:
    """A column label as a title: a foil's key ``foil:Egyptian cat`` reads "rather than Egyptian cat"."""
    return label.replace("foil:", "rather than ")


def sign_note(score: float) -> str:
    """The one line under a map whose sum has the other sign than its contrast's score."""
    return f"note: map sums {'< 0' if score > 0 else '> 0'}, score {score:+.3g}"


def _shown(ex: Explanation, smooth_input: bool) -> np.ndarray:
    """An explanation's maps (B, K, H, W) as drawn: per-channel maps summed; input-space maps smoothed."""
    maps = ex.shown().detach().float().cpu().numpy()
    at_input = tuple(ex.shown(layer=True).shape[-2:]) == tuple(maps.shape[-2:])
    if not smooth_input or not at_input or max(maps.shape[-2:]) < 64:
        return maps
    sigma = max(maps.shape[-2:]) * SMOOTH_FRACTION
    return np.stack([[smooth(m, sigma) for m in row] for row in maps]).astype(np.float32)


def plot_explanations(
    images: Sequence[Any],
    results: Mapping[str, Explanation],
    categories: Sequence[str] | None = None,
    scale: Scale = "map",
    titles: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    cell: float = 2.4,
    smooth_input: bool = True,
) -> Figure:
    """A grid of signed overlays with a diverging colour bar ("against t" blue, 0 white, "for t" red).

    Args:
        images: the B input images in pixel space ([0, 1] (3, H, W) tensors, PIL images or arrays),
            at the resolution of the maps.
        results: column label -> [`Explanation`][classcontrast.explanation.Explanation] (all for the same
            images and targets); a result
            of [`explain`][classcontrast.engine.explain] passed as ``dict(result)`` titles a foil "rather than <class>".
        categories: class names for the row labels.
        scale: ``"map"`` (each map its own symmetric range, as in the study), ``"row"``, ``"column"``
            or ``"figure"`` (one range shared so the maps are comparable; the colour bar then shows
            the values).
        titles: optional name per image (e.g. file names).
        path: if given, the figure is saved there (PNG, 150 dpi).
        cell: the size of one map in inches.
        smooth_input: draw input-space maps (gradients, IG, LRP...) Gaussian-smoothed (σ = 1/56 of the
            image side, 4 pixels at 224) as the field shows them; the arrays are not changed.

    The photo is drawn in colour in the first column and as a grey backdrop under the maps, whose
    opacity grows with |value|. A map whose sum has the opposite sign of its contrast's score is marked
    with one short line (`classcontrast.text.SIGN_NOTE` says what it means; see the map-sign page).

    Returns:
        The matplotlib figure (made without pyplot: safe in threads, shown inline by Jupyter).
    """
    cols = list(results)
    first = results[cols[0]]
    b, k = first.targets.shape
    maps = {c: _shown(results[c], smooth_input) for c in cols}
    notes = {c: results[c].disagreeing() for c in cols}
    scores = {c: results[c].scores for c in cols}
    probs = first.target_probabilities.detach().float().cpu().numpy()
    targets = first.targets.cpu().numpy()
    selected = first.selected  # Threshold targets: fillers (below the threshold) are not drawn
    rows = [(i, j) for i in range(b) for j in range(k) if selected is None or bool(selected[i, j])]
    fig = Figure(figsize=(cell * (len(cols) + 1), cell * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows) + 1, len(cols) + 1, height_ratios=[1.0] * len(rows) + [0.06])
    figure_scale = halfrange(np.stack([maps[c] for c in cols]))
    column_scale = {c: halfrange(maps[c]) for c in cols}
    for row, (i, j) in enumerate(rows):
        img = to_numpy_image(images[i])
        cls = int(targets[i, j])
        name = categories[cls] if categories is not None and cls < len(categories) else f"class {cls}"
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(img)
        ax.set_axis_off()
        label = f"{name}\np={probs[i, j]:.3f}" if first.head != "sigmoid" else \
            f"{name}\nσ={probs[i, j]:.3f} (independent)"
        unit = first.units[i][j] if first.units and j < len(first.units[i]) else None
        if unit is not None and unit.get("kind") == "region":
            share = unit["pixels"] / max(1, unit["mask"].numel())
            label = f"{name} (region: {share:.0%} of pixels)\nmean p={probs[i, j]:.3f}"
        thing = _object(first, i, j)
        if thing is not None:
            label = f"{name} (object {thing['index']})\nscore {thing['score']:.3f}"
            _draw_box(ax, thing, name)
        if titles is not None and (row == 0 or rows[row - 1][0] != i):
            label = f"{printable(titles[i])}\n{label}"  # a non-UTF-8 file name drawn with escapes
        ax.set_title(label, fontsize=8)
        row_scale = halfrange(np.stack([maps[c][i, j] for c in cols]))
        region = _region(first, i, j)
        for col, c in enumerate(cols, start=1):
            s = {"map": None, "row": row_scale, "column": column_scale[c], "figure": figure_scale}[scale]
            ax = fig.add_subplot(grid[row, col])
            overlay(ax, img, maps[c][i, j], scale=s)
            if region is not None:
                ax.contour(region, levels=[0.5], colors="black", linewidths=0.8)
            if thing is not None:
                _draw_box(ax, thing, name)
            if row == 0:
                ax.set_title(readable(c), fontsize=8)
            if notes[c] is not None and bool(notes[c][i, j]):
                ax.text(0.5, -0.02, sign_note(float(scores[c][i, j])), transform=ax.transAxes, ha="center",
                        va="top", fontsize=6, color="0.25")
    colorbar(fig, fig.add_subplot(grid[len(rows), 1:]), figure_scale if scale == "figure" else None)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    _displayable_in_notebooks()
    return fig


def _displayable_in_notebooks() -> None:
    """In IPython / Jupyter, make figures made without pyplot display as PNG (what ``%matplotlib inline``
    registers for pyplot's figures)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return
    if Figure not in formatters["image/png"].type_printers:
        from IPython.core.pylabtools import print_figure

        formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))
