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
        from torchvision.transforms.functional import gaussian_blur  # imported on use: a second of start-up

        k = min(kernel, 2 * (min(x.shape[-2:]) - 1) - 1)  # reflect padding needs pad < size
        k = k if k % 2 else k - 1
        return gaussian_blur(x, [k, k], [sigma, sigma])
    raise ClassContrastError(f"unknown baseline {kind!r}; choose blur, zeros or mean")
