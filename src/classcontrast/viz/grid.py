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


def readable(label: str) -> str:
    """A column label as a title: a foil's key ``foil:Egyptian cat`` reads "rather than Egyptian cat"."""
    return label.replace("foil:", "rather than ")


def sign_note(score: float) -> str:
    """The one line under a map whose sum has the other sign than its contrast's score."""
    return f"note: map sums {'< 0' if score > 0 else '> 0'}, score {score:+.3g}"


def _displayed(ex: Explanation, smooth_input: bool) -> np.ndarray:
    """An explanation's maps (B, K, H, W) as drawn: per-channel maps summed; input-space maps smoothed."""
    maps = ex.shown().detach().float().cpu().numpy()
    at_input = tuple(ex.shown(layer=True).shape[-2:]) == tuple(maps.shape[-2:])
    if not smooth_input or not at_input or max(maps.shape[-2:]) < 64:
        return maps
    sigma = max(maps.shape[-2:]) * SMOOTH_FRACTION
    return np.stack([[smooth(m, sigma) for m in row] for row in maps]).astype(np.float32)


def drawn(text: str) -> str:
    """Text as the figures draw it: control characters escaped (`printable`). Every text a figure draws is also
    made with ``parse_math=False`` (`LITERAL`), so a file named ``price_$5_$6.png`` or a prompt "$5 or $6" is drawn
    as written, never read as mathtext (which failed on the first and dropped the dollars and spaces of the
    second)."""
    return printable(text, lines=True)


LITERAL = {"parse_math": False}  # matplotlib's text keyword: drawn as written


TITLE_CHARS = 26  # characters of a size-8 title that fit over one map of `cell` 2.4 inches (its image ~1.8 inches)


def fitted(text: str, cell: float = 2.4, size: float = 8) -> str:
    """A title wrapped to the width of its map (long file names broken), so no title is clipped at the
    figure's edge or runs into its neighbour's."""
    import textwrap

    width = max(8, round(TITLE_CHARS * cell / 2.4 * 8 / size))
    return "\n".join(part for line in drawn(text).split("\n")
                     for part in (textwrap.wrap(line, width, break_long_words=True) or [""]))


NEGLIGIBLE_NOTE = "≈ 0: negligible against its objective (score {score:+.3g})"
SAME_FOIL_NOTE = "rather than {name}: the target\nitself — nothing to explain"
CLASS_AGNOSTIC_NOTE = "class-agnostic: the same map\nfor every class and contrast"

# a row of a figure: (image, target, heading above the row's label or None, column title -> Explanation)
Row = tuple[int, int, "str | None", Mapping[str, Explanation]]


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
    with one short line (`classcontrast.text.SIGN_NOTE` says what it means; see the map-sign page); a map
    that is numerically zero against its score (`Explanation.negligible`) is drawn as zero with the note "≈ 0";
    a foil equal to the row's target is a note in place of the panel.

    Returns:
        The matplotlib figure (made without pyplot: safe in threads, shown inline by Jupyter).
    """
    first = results[next(iter(results))]
    b, k = first.targets.shape
    selected = first.selected  # Threshold targets: fillers (below the threshold) are not drawn
    rows: list[Row] = [(i, j, None, results) for i in range(b) for j in range(k)
                       if selected is None or bool(selected[i, j])]
    return _figure(images, rows, categories, scale, titles, path, cell, smooth_input)


def plot_grid(
    images: Sequence[Any],
    results: Mapping[str, Mapping[str, Explanation]],
    categories: Sequence[str] | None = None,
    scale: Scale = "map",
    titles: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    cell: float = 2.4,
    smooth_input: bool = True,
) -> Figure:
    """Many methods × many contrasts as a grid: one row per image, target and method (``results``: method ->
    contrast -> Explanation), one column per contrast — instead of one very long row of every (method, contrast).
    Otherwise as `plot_explanations`."""
    methods = list(results)
    first = results[methods[0]][next(iter(results[methods[0]]))]
    b, k = first.targets.shape
    selected = first.selected
    rows: list[Row] = [(i, j, m, results[m]) for i in range(b) for j in range(k)
                       if selected is None or bool(selected[i, j]) for m in methods]
    return _figure(images, rows, categories, scale, titles, path, cell, smooth_input)


def _figure(images: Sequence[Any], rows: list[Row], categories: Sequence[str] | None, scale: Scale,
            titles: Sequence[str] | None, path: str | os.PathLike[str] | None, cell: float, smooth_input: bool
            ) -> Figure:
    """Draw ``rows`` (each: the photo, its label, then its columns' maps) with one colour bar; save to ``path``."""
    cols = list(rows[0][3])
    drawn_maps: dict[int, np.ndarray] = {}
    for _, _, _, columns in rows:
        for ex in columns.values():
            if id(ex) not in drawn_maps:
                drawn_maps[id(ex)] = _displayed(ex, smooth_input)
    fig = Figure(figsize=(cell * (len(cols) + 1), cell * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows) + 1, len(cols) + 1, height_ratios=[1.0] * len(rows) + [0.06])
    cells = [[drawn_maps[id(columns[c])][i, j] for c in cols] for i, j, _, columns in rows]
    figure_scale = halfrange(np.stack([m for row in cells for m in row]))
    column_scale = {c: halfrange(np.stack([row[n] for row in cells])) for n, c in enumerate(cols)}
    for r, (i, j, heading, columns) in enumerate(rows):
        img = to_numpy_image(images[i])
        first = columns[cols[0]]
        name = _class_name(categories, int(first.targets[i, j]))
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(img)
        ax.set_axis_off()
        label = _row_label(first, i, j, name, ax)
        if heading is not None:
            label = f"{heading}\n{label}"
        if titles is not None and (r == 0 or rows[r - 1][0] != i):
            label = f"{titles[i]}\n{label}"
        ax.set_title(fitted(label, cell), fontsize=8, **LITERAL)
        row_scale = halfrange(np.stack(cells[r]))
        for n, c in enumerate(cols):
            s = {"map": None, "row": row_scale, "column": column_scale[c], "figure": figure_scale}[scale]
            ax = fig.add_subplot(grid[r, n + 1])
            _cell(ax, img, columns[c], i, j, cells[r][n], s, categories)
            if r == 0:
                ax.set_title(fitted(readable(c), cell), fontsize=8, **LITERAL)
    colorbar(fig, fig.add_subplot(grid[len(rows), 1:]), figure_scale if scale == "figure" else None)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    _displayable_in_notebooks()
    return fig


def _class_name(categories: Sequence[str] | None, cls: int) -> str:
    return categories[cls] if categories is not None and cls < len(categories) else f"class {cls}"


def _row_label(first: Explanation, i: int, j: int, name: str, ax: Any) -> str:
    """The row's label under its photo (the unit's caption: the class and its probability, a region's share of the
    pixels, an object's index and score), the unit marked on the photo (an object's box)."""
    unit = first.units[i][j]
    if unit.mark_photo:
        unit.mark(ax, drawn(name))
    return unit.caption(name, float(first.target_probabilities[i, j]), first.head)


def _cell(ax: Any, img: np.ndarray, ex: Explanation, i: int, j: int, m: np.ndarray, scale: float | None,
          categories: Sequence[str] | None) -> None:
    """One map over the grey photo, with its region's outline or object's box and the note it needs; a foil
    equal to the target is a note instead of a map."""
    same = ex.foil_is_target()
    if same is not None and bool(same[i, j]):
        ax.set_axis_off()
        name = _class_name(categories, int(ex.targets[i, j]))
        ax.text(0.5, 0.5, drawn(SAME_FOIL_NOTE.format(name=name)), transform=ax.transAxes, ha="center",
                va="center", fontsize=7, color="0.3", **LITERAL)
        return
    negligible = ex.negligible()
    score = None if ex.scores is None else float(ex.scores[i, j])
    zero = negligible is not None and bool(negligible[i, j])
    overlay(ax, img, np.zeros_like(m) if zero else m, scale=scale)
    ex.units[i][j].mark(ax, drawn(_class_name(categories, int(ex.targets[i, j]))))  # an outline, a box
    note = None
    if ex.class_agnostic:  # its sign speaks of no class: no note about the score
        note = CLASS_AGNOSTIC_NOTE
    elif zero and score is not None:
        note = NEGLIGIBLE_NOTE.format(score=score)
    else:
        disagree = ex.disagreeing()
        if disagree is not None and bool(disagree[i, j]) and score is not None:
            note = sign_note(score)
    if note is not None:
        ax.text(0.5, -0.02, drawn(note), transform=ax.transAxes, ha="center", va="top", fontsize=6, color="0.25",
                **LITERAL)


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
