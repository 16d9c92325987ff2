"""Grids of explanations: rows = images × target classes, columns = input + (method, contrast)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from ..explanation import Explanation, displayed
from ..text import printable
from .overlay import colorbar, halfrange, overlay, to_numpy_image

Scale = Literal["map", "row", "column", "figure"]


def plot_explanations(
    images: Sequence[Any],
    results: Mapping[str, Explanation],
    categories: Sequence[str] | None = None,
    scale: Scale = "map",
    titles: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    cell: float = 2.4,
) -> Figure:
    """A grid of signed overlays with a diverging colour bar ("against t" blue, 0 white, "for t" red).

    Args:
        images: the B input images in pixel space ([0, 1] (3, H, W) tensors, PIL images or arrays),
            at the resolution of the maps.
        results: column label -> :class:`Explanation` (all for the same images and targets).
        categories: class names for the row labels.
        scale: ``"map"`` (each map its own symmetric range, as in the study), ``"row"``, ``"column"``
            or ``"figure"`` (one range shared so the maps are comparable; the colour bar then shows
            the values).
        titles: optional name per image (e.g. file names).
        path: if given, the figure is saved there (PNG, 150 dpi).

    Returns:
        The matplotlib figure (made without pyplot: safe in threads, shown inline by Jupyter).
    """
    cols = list(results)
    first = results[cols[0]]
    b, k = first.targets.shape
    maps = {c: displayed(results[c].maps).detach().float().cpu().numpy() for c in cols}
    probs = first.target_probabilities.detach().float().cpu().numpy()
    targets = first.targets.cpu().numpy()
    fig = Figure(figsize=(cell * (len(cols) + 1), cell * b * k + 0.6))
    grid = fig.add_gridspec(b * k + 1, len(cols) + 1, height_ratios=[1.0] * (b * k) + [0.06])
    figure_scale = halfrange(np.stack([maps[c] for c in cols]))
    column_scale = {c: halfrange(maps[c]) for c in cols}
    for i in range(b):
        img = to_numpy_image(images[i])
        for j in range(k):
            row = i * k + j
            cls = int(targets[i, j])
            name = categories[cls] if categories is not None and cls < len(categories) else f"class {cls}"
            ax = fig.add_subplot(grid[row, 0])
            ax.imshow(img)
            ax.set_axis_off()
            label = f"{name}\np={probs[i, j]:.3f}"
            if titles is not None and j == 0:
                label = f"{printable(titles[i])}\n{label}"  # a non-UTF-8 file name drawn with escapes
            ax.set_title(label, fontsize=8)
            row_scale = halfrange(np.stack([maps[c][i, j] for c in cols]))
            for col, c in enumerate(cols, start=1):
                s = {"map": None, "row": row_scale, "column": column_scale[c], "figure": figure_scale}[scale]
                ax = fig.add_subplot(grid[row, col])
                overlay(ax, img, maps[c][i, j], scale=s)
                if row == 0:
                    ax.set_title(c, fontsize=8)
    colorbar(fig, fig.add_subplot(grid[b * k, 1:]), figure_scale if scale == "figure" else None)
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
