"""Baseline images: what replaces removed pixels (masking, deletion/insertion) or where a path starts
(Integrated Gradients). All in the model's input space, on the input's device and dtype."""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ClassContrastError

KINDS = ("blur", "zeros", "mean")


def baseline(x: Tensor, kind: str, sigma: float | tuple[float, float] = 15.0, kernel: int = 101,
             generator: torch.Generator | None = None) -> Tensor:
    """The replacement image (normalised space): Gaussian blur (kernel 101, σ = 15, or σ ~ U(lo, hi)
    per call as in the original code), zeros (the mean colour in pixel space), or each channel's mean."""
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.flatten(2).mean(-1).reshape(*x.shape[:2], *([1] * (x.ndim - 2))).expand_as(x)
    if kind == "blur" and x.ndim != 4:
        raise ClassContrastError(f"the blur baseline is for images (B, C, H, W); this input has shape "
                                 f"{tuple(x.shape)}: use baseline='zeros' or 'mean'")
    if kind == "blur":
        if isinstance(sigma, tuple):
            lo, hi = sigma
            sigma = float(lo + (hi - lo) * torch.rand((), generator=generator))
        k = min(kernel, 2 * (min(x.shape[-2:]) - 1) - 1)  # reflect padding needs pad < size
        return gaussian_blur(x, k if k % 2 else k - 1, float(sigma))
    raise ClassContrastError(f"unknown baseline {kind!r}; choose blur, zeros or mean")


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    r"""Each channel of the images ``x`` (B, C, H, W) convolved with the normalised Gaussian
    $g_i \propto e^{-i^2/2\sigma^2}$, $i = -(k-1)/2 \ldots (k-1)/2$, along the rows and then the columns, the image
    reflected at its borders (the common Gaussian blur: the same kernel, in the input's dtype, and padding as
    the usual image libraries' ``gaussian_blur``, separable, so a 101-wide kernel costs 2·101 products a pixel,
    not 101²). ``kernel`` odd and shorter than twice each side."""
    half = (kernel - 1) * 0.5
    g = torch.exp(-0.5 * (torch.linspace(-half, half, kernel, dtype=x.dtype, device=x.device) / sigma) ** 2)
    g = g / g.sum()
    c, pad = x.shape[1], kernel // 2
    out = torch.nn.functional.pad(x, [pad, pad, pad, pad], mode="reflect")
    out = torch.nn.functional.conv2d(out, g.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), groups=c)
    return torch.nn.functional.conv2d(out, g.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), groups=c)
