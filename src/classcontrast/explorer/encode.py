"""Images and maps as compact data URLs for the self-contained explorer page.

Maps are quantised, not coloured: each map is stored as 8-bit codes ``q = 127 + round(127 · m / s)``
with its own half-range ``s = max |m|`` (so 127 is exactly 0), tiled into one grayscale PNG per image
and method. The page decodes them and applies the colour scale itself, so scale and opacity change
without recomputation.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MAX_SIDE = 64  # stored map resolution: a layer map (7×7, 14×14) as is, an input-space map block-averaged


def fit(maps: torch.Tensor, max_side: int = MAX_SIDE) -> torch.Tensor:
    """(..., h, w) maps with both sides ≤ ``max_side``: averaged over k×k blocks, k the smallest integer
    that fits (224 -> 56 for k = 4), so every stored value is the mean of the pixels it covers."""
    h, w = maps.shape[-2:]
    if max(h, w) <= max_side:
        return maps
    k = math.ceil(max(h, w) / max_side)
    flat = maps.reshape(-1, 1, h, w).float()
    pooled = F.avg_pool2d(flat, k, ceil_mode=True) if h % k or w % k else F.avg_pool2d(flat, k)
    return pooled.reshape(*maps.shape[:-2], *pooled.shape[-2:])


def quantise(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., h, w) float maps -> (uint8 codes, per-map half-ranges); a zero map gets range 0 and code 127."""
    scales = np.abs(maps).reshape(*maps.shape[:-2], -1).max(-1)
    safe = np.where(scales > 0, scales, 1.0)[..., None, None]
    codes = np.clip(np.rint(127.0 + 127.0 * maps / safe), 0, 254).astype(np.uint8)
    return codes, scales.astype(np.float32)


def dequantise(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The inverse of `quantise`, up to half a code step (scale / 254)."""
    return (codes.astype(np.float32) - 127.0) / 127.0 * scales[..., None, None]


def atlas(maps: np.ndarray) -> tuple[str, list[list[float]], int, int]:
    """(L targets, M contrasts, h, w) maps -> (PNG data URL of the L×M tile grid, scales [L][M], w, h)."""
    n_t, n_c, h, w = maps.shape
    codes, scales = quantise(maps.astype(np.float64))
    grid = codes.transpose(0, 2, 1, 3).reshape(n_t * h, n_c * w)
    # 8 significant digits (not 8 decimals: a gradient map's half-range may be 1e-7)
    return png_data_url(grid), [[float(f"{v:.8g}") for v in row] for row in scales.tolist()], w, h


def png_data_url(gray: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(gray, "L").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def jpeg_data_url(pixels: torch.Tensor | np.ndarray, quality: int = 85) -> str:
    """A (3, H, W) [0, 1] image (tensor or array) as a JPEG data URL."""
    arr = pixels.detach().float().cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    img = Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def display_pixels(x: torch.Tensor, to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The images to show for model inputs ``x`` (B, C, H, W), in [0, 1] on the CPU: ``to_pixels(x)`` (a
    ModelBundle's inverse normalisation; values beyond [0, 1], a scan's, windowed: `viz.overlay.viewable`) when
    given, else each image min-max scaled."""
    x = x.detach()
    if to_pixels is not None:
        from ..viz.overlay import viewable

        return torch.stack([viewable(v) for v in to_pixels(x)]).float().cpu()  # a scan's values windowed
    flat = x.flatten(1)
    shape = (-1, *[1] * (x.ndim - 1))  # (B, 1, ...) for images, clips and volumes alike
    lo, hi = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
    return ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).float().cpu()
