"""Segments of an input, the features the segment-based gradient-free methods (feature ablation, KernelSHAP) switch
on and off: scikit-image's SLIC superpixels, or a user's mask (e.g. a segmenter's regions)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import ClassContrastError

DEFAULT_SEGMENTS = 50


def segments_of(x: Tensor, spec: int | Tensor | None) -> Tensor:
    """(B, *S) segment numbers 0 … F_b − 1 for each input of ``x`` (B, C, *S).

    ``spec``: None (SLIC with `DEFAULT_SEGMENTS` superpixels), a number of SLIC superpixels, or a user's integer
    mask of shape (*S) (one for every input) or (B, *S) whose distinct values are the segments.
    """
    spatial = tuple(x.shape[2:])
    if isinstance(spec, Tensor):
        mask = spec[None] if spec.ndim == len(spatial) else spec
        if mask.dtype.is_floating_point or mask.dtype == torch.bool or tuple(mask.shape[1:]) != spatial \
                or mask.shape[0] not in (1, x.shape[0]):
            raise ClassContrastError(f"segments must be an integer tensor of shape {spatial} or "
                                     f"({x.shape[0]}, {', '.join(map(str, spatial))}), got {mask.dtype} "
                                     f"{tuple(spec.shape)}")
        mask = mask.to(x.device).expand(x.shape[0], *spatial)
        return torch.stack([torch.unique(m, return_inverse=True)[1] for m in mask])
    if spec is None:
        spec = DEFAULT_SEGMENTS
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 1:
        raise ClassContrastError(f"segments must be a number of superpixels (>= 1) or an integer mask, got {spec!r}")
    if len(spatial) == 1:
        raise ClassContrastError("SLIC superpixels need 2-D or 3-D inputs: give segments=MASK, an integer tensor "
                                 f"of shape {spatial}")
    from skimage.segmentation import slic

    out = []
    for image in x.detach().float().cpu():
        pixels = image.movedim(0, -1).numpy().astype(np.float64)
        low, high = pixels.min(), pixels.max()
        pixels = (pixels - low) / (high - low) if high > low else pixels * 0
        labels = slic(pixels, n_segments=spec, compactness=10.0, start_label=0, channel_axis=-1)
        out.append(torch.unique(torch.from_numpy(labels.astype(np.int64)), return_inverse=True)[1])
    return torch.stack(out).to(x.device)


__all__ = ["DEFAULT_SEGMENTS", "segments_of"]
