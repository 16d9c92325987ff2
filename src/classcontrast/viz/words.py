"""A question's figure: the question, the candidate answers with their probabilities, the image maps and, under
each, the prompt's words coloured by their attribution (red: the word moved the answer towards the target and
away from what it is contrasted with; blue: the other way)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..explanation import Explanation
from .grid import LITERAL, drawn, fitted
from .overlay import colorbar, halfrange, overlay


def token_strip(ax: Any, tokens: Sequence[str], values: Any, scale: float | None = None, cmap: str = "bwr",
                fontsize: float = 8.0) -> None:
    """Draw ``tokens`` left to right on ``ax`` (its axes hidden), each on a background coloured by its signed value
    (``scale``: the colour's half-range, by default the values' own), wrapping onto new lines."""
    from matplotlib import colormaps

    v = np.asarray(values.detach().float().cpu() if hasattr(values, "detach") else values, dtype=float)
    half = scale or halfrange(v)
    ax.set_axis_off()
    renderer = ax.figure.canvas.get_renderer()
    x, y = 0.0, 0.85
    for token, value in zip(tokens, v, strict=True):
        z = float(np.clip(value / half, -1, 1))
        colour = colormaps[cmap](0.5 + 0.5 * z)
        text = ax.text(x, y, drawn(token), transform=ax.transAxes, va="top", ha="left", fontsize=fontsize, **LITERAL,
                       color="white" if abs(z) > 0.6 else "black",
                       bbox={"facecolor": colour, "edgecolor": "none", "boxstyle": "round,pad=0.15"})
        box = text.get_window_extent(renderer).transformed(ax.transAxes.inverted())
        if box.x1 > 1.0 and x > 0:  # wrap: the token starts the next line
            y -= 1.6 * (box.y1 - box.y0)
            text.set_position((0.0, y))
            box = text.get_window_extent(renderer).transformed(ax.transAxes.inverted())
        x = box.x1 + 0.03


def plot_answers(image: Any, results: Mapping[str, Explanation], words: Mapping[str, Any], tokens: Sequence[str],
                 categories: Sequence[str], question: str, path: str | os.PathLike[str] | None = None,
                 cell: float = 2.4) -> Any:
    """One image's figure for a vision-language model's candidate answers.

    Args:
        image: the input in pixel space ([0, 1] (3, H, W)), at the maps' resolution.
        results: column title -> the image's [`Explanation`][classcontrast.explanation.Explanation] (one image; K
            targets, one row each).
        words: column title -> the prompt's word attributions (K, L) of the same contrast and targets.
        tokens: the L words' strings.
        categories: the candidates; question: the prompt as asked.
        path: if given, the figure is saved there (PNG, 150 dpi).
    """
    import matplotlib.pyplot as plt

    first = next(iter(results.values()))
    k, columns = first.targets.shape[1], list(results)
    probabilities = first.probabilities[0] if first.probabilities is not None else None
    fig = plt.figure(figsize=(cell * (1 + len(columns)), 1.3 + k * (cell + 0.6)))
    grid = fig.add_gridspec(2 * k + 1, 1 + len(columns), height_ratios=[cell, 0.6] * k + [0.12], hspace=0.15,
                            wspace=0.05, top=1 - 0.75 / fig.get_figheight(), bottom=0.06, left=0.01, right=0.99)
    if probabilities is not None:
        order = probabilities.argsort(descending=True).tolist()
        answers = " · ".join(f"{categories[j]} {float(probabilities[j]):.2f}" for j in order[:8])
    else:
        answers = ", ".join(categories[:8])
    fig.suptitle(drawn(f"question: {question}\nanswers: {answers}"), fontsize=10, y=1 - 0.1 / fig.get_figheight(),
                 va="top", **LITERAL)
    for row in range(k):
        target = int(first.targets[0, row])
        ax = fig.add_subplot(grid[2 * row, 0])
        ax.imshow(np.clip(image.permute(1, 2, 0).float().cpu().numpy(), 0, 1))
        ax.set_axis_off()
        ax.set_title(fitted(f"why {categories[target]}?"), fontsize=9, **LITERAL)
        for c, title in enumerate(columns):
            ax = fig.add_subplot(grid[2 * row, 1 + c])
            overlay(ax, image, results[title].maps[0, row])
            ax.set_title(fitted(title, size=9), fontsize=9, **LITERAL)
            if title in words:
                token_strip(fig.add_subplot(grid[2 * row + 1, 1 + c]), tokens, words[title][row])
        note = fig.add_subplot(grid[2 * row + 1, 0])
        note.set_axis_off()
        note.text(0, 0.85, "the prompt's words:\nred for, blue against", fontsize=8, va="top",
                  transform=note.transAxes)
    colorbar(fig, fig.add_subplot(grid[2 * k, 1:]))  # the figures' signed scale: each map its own range
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")  # (the colour bar's labels reach the edges)
        plt.close(fig)
    return fig


__all__ = ["plot_answers", "token_strip"]
