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


def viewable(pixels: Any) -> Any:
    """An input as shown: pixels already in [0, 1] as they are; values beyond (a scan's CT units or MRI
    intensities, which a volume model takes as they are stored) windowed to their 0.5–99.5th percentiles, so a
    CT slice is not drawn all white. A tensor in, a tensor out."""
    import torch

    lo, hi = float(pixels.min()), float(pixels.max())
    if lo >= -0.01 and hi <= 1.01:
        return pixels.clamp(0, 1)
    flat = pixels.detach().flatten().float()
    sample = flat[torch.linspace(0, len(flat) - 1, min(len(flat), 1_000_000)).long()]
    low, high = torch.quantile(sample, torch.tensor([0.005, 0.995])).tolist()
    return ((pixels - low) / max(high - low, 1e-12)).clamp(0, 1)


def halfrange(values: np.ndarray) -> float:
    """The symmetric colour range of a signed map: the 99.5th percentile of |value| (pixel-level maps have
    a few extreme pixels that would wash out the rest; for smooth CAM maps this is ≈ max |value|, the
    study's ``CenteredNorm``), 1 for an all-zero map."""
    a = np.abs(values[np.isfinite(values)]) if values.size else np.zeros(0)
    h = float(np.percentile(a, OUTLIER_PERCENTILE)) if a.size else 0.0
    if h <= 0:
        h = float(a.max()) if a.size else 0.0
    return h if h > 0 else 1.0


def greyscale(image: Any) -> np.ndarray:
    """The photo as a light grey (H, W, 3) backdrop for a coloured map: the map's red and blue never
    blend into a red or blue object (a red cup under a red map reads as "all red")."""
    rgb = to_numpy_image(image)
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    return np.repeat((0.25 + 0.6 * lum)[..., None], 3, axis=2)


def signed_rgba(signed_map: np.ndarray, scale: float, cmap: str = "bwr", gamma: float = 0.75) -> np.ndarray:
    """A signed map as RGBA: colour from ``cmap`` centred on 0, opacity growing with |value| / scale
    (0 is transparent, so the photo shows where the map says nothing)."""
    from matplotlib import colormaps

    z = np.clip(signed_map / scale, -1.0, 1.0)
    rgba = colormaps[cmap](0.5 + 0.5 * z)
    rgba[..., 3] = 0.9 * np.abs(z) ** gamma
    return rgba


def smooth(signed_map: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian-smoothed copy of an (H, W) map (σ in pixels, edges repeated), as input-space maps are
    shown: the pixel speckle of gradients averaged into regions, the sign kept."""
    if sigma <= 0:
        return signed_map
    import torch
    import torch.nn.functional as F

    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    k = k / k.sum()
    m = torch.as_tensor(np.asarray(signed_map, dtype=np.float64))[None, None]
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return m[0, 0].numpy()


def overlay(ax: Any, image: Any, signed_map: Any, scale: float | None = None, alpha: float | None = None,
            cmap: str = "bwr", background: str = "grey") -> Any:
    """Draw ``signed_map`` (H, W) over ``image`` on a matplotlib axis: red supports the target, blue
    speaks against it, with a colour scale centred on 0.

    ``scale`` is the half-range of the colour scale; None uses the map's own `halfrange`. Pass the
    same value to several overlays to make them comparable. By default the photo is drawn as a light
    grey backdrop and the map's opacity grows with |value| (readable on any photo, red objects
    included); ``background="colour", alpha=0.5`` draws the study's figures (spec B.8: ``bwr``,
    ``CenteredNorm(0)``, alpha 0.5 over the colour image).
    """
    m = signed_map.detach().float().cpu().numpy() if hasattr(signed_map, "detach") else np.asarray(signed_map)
    half = scale if scale else halfrange(m)
    ax.imshow(greyscale(image) if background == "grey" else to_numpy_image(image))
    norm = CenteredNorm(0.0, half)
    if alpha is None:
        ax.imshow(signed_rgba(m, half, cmap))
        from matplotlib.cm import ScalarMappable

        im = ScalarMappable(norm=norm, cmap=cmap)
    else:
        im = ax.imshow(m, cmap=cmap, alpha=alpha, norm=norm)
    ax.set_axis_off()
    return im


def colorbar(fig: Any, ax: Any, scale: float | None = None, cmap: str = "bwr") -> Any:
    """A horizontal diverging colour bar centred on 0: "against t" (blue) … 0 … "for t" (red).

    With ``scale`` (a shared half-range) the ticks show values; without it each map has its own range
    (`halfrange`) and the bar says so.
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


def overlay_rgb(image: Any, signed_map: Any, *, view: str = "signed", scale: float | None = None,
                image_weight: float = 0.5, cmap: str | None = None) -> np.ndarray:
    """The map over the image as a uint8 (H, W, 3) array, the map resized (bilinearly) to the image when its size
    differs — for files, notebooks and pipelines without matplotlib's axes (`overlay` draws on an axis).

    ``view="signed"`` (the default): as `overlay` draws it, the photo as a light grey backdrop under a diverging map
    centred on 0 (``cmap`` ``bwr``: red supports the target, blue speaks against it), opacity growing with |value|,
    ``scale`` its half-range (None: the map's own `halfrange`). ``view="unsigned"``: pytorch-grad-cam's
    ``show_cam_on_image`` habit — the map rectified (ReLU) and min-max scaled to [0, 1] as its ``scale_cam_image``
    does, coloured (``cmap`` ``jet``, matplotlib's), blended with the image (``image_weight`` of the image) and
    divided by its maximum. The unsigned view drops the map's sign: what speaks against the target is gone."""
    import torch
    from matplotlib import colormaps

    from ..errors import ClassContrastError

    if view not in ("signed", "unsigned"):
        raise ClassContrastError(f"overlay_rgb(view=...) is 'signed' or 'unsigned', got {view!r}")
    if not 0 <= image_weight <= 1:
        raise ClassContrastError(f"overlay_rgb(image_weight=...) is in [0, 1], got {image_weight}")
    img = to_numpy_image(image)
    m = torch.as_tensor(signed_map.detach().cpu() if hasattr(signed_map, "detach") else np.asarray(signed_map),
                        dtype=torch.float64)
    if m.ndim != 2:
        raise ClassContrastError(f"overlay_rgb needs one (H, W) map, got shape {tuple(m.shape)}")
    if tuple(m.shape) != img.shape[:2]:
        m = torch.nn.functional.interpolate(m[None, None], size=img.shape[:2], mode="bilinear",
                                            align_corners=False)[0, 0]
    values = m.numpy()
    if view == "unsigned":
        cam = np.maximum(values, 0)
        cam = cam - cam.min()
        cam = cam / (1e-7 + cam.max())
        heat = colormaps[cmap or "jet"](cam)[..., :3]
        out = (1 - image_weight) * heat + image_weight * img
        out = out / out.max()
    else:
        rgba = signed_rgba(values, scale if scale else halfrange(values), cmap or "bwr")
        out = greyscale(img) * (1 - rgba[..., 3:]) + rgba[..., :3] * rgba[..., 3:]
    return np.clip(np.rint(255 * out), 0, 255).astype(np.uint8)
