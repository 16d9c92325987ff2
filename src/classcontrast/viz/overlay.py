"""Signed overlays: red supports the target over the contrast, blue speaks against it."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import CenteredNorm

matplotlib.use("Agg", force=False)


def to_numpy_image(image: Any) -> np.ndarray:
    """A (H, W, 3) float array in [0, 1] from a (3, H, W) tensor in [0, 1], a PIL image or an array."""
    if hasattr(image, "detach"):
        arr = image.detach().float().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(image, dtype=np.float64)
        if arr.max() > 1.0:
            arr = arr / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.clip(arr, 0.0, 1.0)


OUTLIER_PERCENTILE = 99.5


def halfrange(values: np.ndarray) -> float:
    """The symmetric colour range of a signed map: the 99.5th percentile of |value| (pixel-level maps have
    a few extreme pixels that would wash out the rest; for smooth CAM maps this is ≈ max |value|, the
    study's ``CenteredNorm``), 1 for an all-zero map."""
    a = np.abs(values[np.isfinite(values)]) if values.size else np.zeros(0)
    h = float(np.percentile(a, OUTLIER_PERCENTILE)) if a.size else 0.0
    if h <= 0:
        h = float(a.max()) if a.size else 0.0
    return h if h > 0 else 1.0


def overlay(ax: Any, image: Any, signed_map: Any, scale: float | None = None, alpha: float = 0.5,
            cmap: str = "bwr") -> Any:
    """Draw ``signed_map`` (H, W) over ``image`` on a matplotlib axis, as the study does (spec B.8):
    ``bwr`` colormap, ``CenteredNorm(0)`` (white = 0), alpha 0.5 over the de-normalised image.

    ``scale`` is the half-range of the colour scale; None uses the map's own max |value|. Pass the
    same value to several overlays to make them comparable.
    """
    m = signed_map.detach().float().cpu().numpy() if hasattr(signed_map, "detach") else np.asarray(signed_map)
    ax.imshow(to_numpy_image(image))
    im = ax.imshow(m, cmap=cmap, alpha=alpha, norm=CenteredNorm(0.0, scale if scale else halfrange(m)))
    ax.set_axis_off()
    return im


def colorbar(fig: Any, ax: Any, scale: float | None = None, cmap: str = "bwr") -> Any:
    """A horizontal diverging colour bar centred on 0: "against t" (blue) … 0 … "for t" (red).

    With ``scale`` (a shared half-range) the ticks show values; without it each map has its own range
    (:func:`halfrange`) and the bar says so.
    """
    from matplotlib.cm import ScalarMappable

    half = scale if scale else 1.0
    bar = fig.colorbar(ScalarMappable(norm=CenteredNorm(0.0, half), cmap=cmap), cax=ax, orientation="horizontal")
    bar.set_ticks([-half, 0.0, half])
    if scale:
        bar.set_ticklabels([f"against t\n{-half:.3g}", "0", f"for t\n{half:.3g}"])
    else:
        bar.set_ticklabels(["against t\n(each map's own scale)", "0", "for t\n(each map's own scale)"])
    bar.ax.tick_params(labelsize=7)
    return bar
