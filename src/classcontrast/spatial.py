"""Spatial dimensions: maps, masks and logits of one to three spatial dimensions (signals, images, clips and
volumes) resized alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize(t: Tensor, size: Sequence[int], mode: str = "linear", corners: bool = False) -> Tensor:
    """(N, C, *S) resized to ``size`` in every spatial dimension: ``"linear"`` (linear, bilinear or trilinear by
    the number of dimensions, half-pixel centres — ``align_corners=False`` — unless ``corners``, which aligns the
    corner pixels as ``UpsamplingBilinear2d`` does) or ``"nearest"``."""
    if tuple(t.shape[2:]) == tuple(size):
        return t
    how = _MODES[len(size)] if mode == "linear" else mode
    return F.interpolate(t, size=tuple(size), mode=how, **({} if how == "nearest" else {"align_corners": corners}))


__all__ = ["resize"]
