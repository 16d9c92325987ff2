"""Figures of concepts: per image and target, the image and its top concepts' conditional heatmaps, each titled with
its channel and share of the layer's relevance. Draws what `classcontrast.crp.Concepts` holds; runs no model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .grid import readable
from .overlay import overlay, to_numpy_image


def plot_concepts(images: Sequence[Any], results: Mapping[str, Any], categories: Sequence[str] | None = None, *,
                  titles: Sequence[str] | None = None, path: str | Path | None = None, cell: float = 2.0) -> Any:
    """One row per image × target × contrast of ``results`` (a contrast's key → `Concepts`, or one `Concepts`):
    the image, then each shown concept's heatmap over it (signed, each on its own scale), titled
    ``channel c · share``. Returns the matplotlib figure (written to ``path`` when given)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not isinstance(results, Mapping):
        results = {results.contrast: results}
    rows = [(i, j, key, c) for i in range(len(images)) for key, c in results.items()
            for j in range(c.channels.shape[1])]
    top = max(c.channels.shape[2] for c in results.values())
    fig, axes = plt.subplots(len(rows), top + 1, figsize=(cell * (top + 1), cell * 1.3 * len(rows)), squeeze=False)
    for r, (i, j, key, c) in enumerate(rows):
        _row(axes[r], to_numpy_image(images[i]), c, i, j, key, categories or c.categories,
             titles[i] if titles else f"image {i}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def _row(axes: Sequence[Any], image: Any, c: Any, i: int, j: int, key: str, categories: Sequence[str] | None,
         title: str) -> None:
    """One image × target: the image titled with the question, then its concepts."""
    t = int(c.targets[i, j])
    name = categories[t] if categories is not None else str(t)
    axes[0].imshow(image)
    axes[0].set_title(readable(f"{title}\n{name} · {key}\n{c.method} concepts at {c.layer}"), fontsize=7)
    axes[0].set_axis_off()
    share = c.share
    for r, ax in enumerate(axes[1:]):
        if r >= c.channels.shape[2]:
            ax.set_axis_off()
            continue
        overlay(ax, image, c.heatmaps[i, j, r])
        ax.set_title(f"channel {int(c.channels[i, j, r])} · {float(share[i, j, r]):+.0%}", fontsize=7)


__all__ = ["plot_concepts"]
