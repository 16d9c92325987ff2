"""Clips and volumes drawn as images: the 2-D views of an explanation of (C, T, H, W) clips or (C, D, H, W)
volumes that the figures, the explorer and the notebook draw — a strip of frames, three orthogonal slices
through a region's centre, a grid of slices — each view an `Explanation` of 2-D maps, so every figure and page
that draws images draws them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..explanation import Explanation
from ..spatial import resize

PLANES = ("axial", "coronal", "sagittal")  # slices across D, H and W of a (D, H, W) volume


def evenly(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``total`` (the centre of each of ``n`` equal segments), all when fewer."""
    if n >= total:
        return list(range(total))
    return [int((i + 0.5) * total / n) for i in range(n)]


def _view(ex: Explanation, image: int, cut: Any, n: int, size: tuple[int, int] | None) -> Explanation:
    """Image ``image`` of ``ex`` as ``n`` 2-D views: ``cut(t)`` maps a (..., *S) tensor to (n, ..., h, w)."""
    def shown(t: Tensor, mode: str = "linear") -> Tensor:
        v = cut(t)
        if size is None or tuple(v.shape[-2:]) == size:
            return v
        flat = v.reshape(-1, 1, *v.shape[-2:]).float()
        return resize(flat, size, mode).reshape(*v.shape[:-2], *size).to(v.dtype)

    one = ex[image]
    maps = shown(one.shown()[0])  # (n, K, h, w)
    views = [[u.viewed(lambda m, v=v: shown(m[None].float(), "nearest")[v, 0] > 0.5) for u in one.units[0]]
             for v in range(n)]

    def take(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.expand(n, *t.shape[1:])

    return one.replace(layer_maps=maps, maps=maps, targets=take(one.targets), logits=take(one.logits),
                       foils=take(one.foils), selected=take(one.selected),
                       size=tuple(maps.shape[-2:]), units=views, scores=take(one.scores),
                       target_probabilities=take(one.target_probabilities), inputs=None)


def clip_views(pixels: Tensor, results: Mapping[str, Explanation], image: int = 0, frames: int = 4
               ) -> tuple[list[Tensor], dict[str, Explanation], list[str]]:
    """(frame images, explanations over those frames, titles): ``frames`` frames spread evenly over clip
    ``image`` (``pixels``: its (C, T, H, W) in [0, 1]) — a strip of frames, one row each."""
    t = pixels.shape[1]
    chosen = evenly(t, frames)
    index = torch.tensor(chosen)

    def cut(v: Tensor) -> Tensor:  # (..., T, H, W) -> (F, ..., H, W)
        return v.index_select(-3, index.to(v.device)).movedim(-3, 0)

    views = {k: _view(ex, image, cut, len(chosen), None) for k, ex in results.items()}
    return [pixels[:, i] for i in chosen], views, [f"frame {i + 1} of {t}" for i in chosen]


def centre(ex: Explanation, image: int = 0) -> list[int]:
    """The voxel the orthogonal slices go through: the centre of the first explained region's voxels, else the
    centre of the positive evidence of the first map, else the volume's centre."""
    region = next((u.focus() for u in ex.units[image] if u.focus() is not None), None)
    weight = region.double() if region is not None else ex.shown()[image, 0].double().clamp_min(0)
    if float(weight.sum()) <= 0:
        return [s // 2 for s in weight.shape]
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64, device=weight.device) for s in weight.shape],
                           indexing="ij")
    return [round(float((g * weight).sum() / weight.sum())) for g in grids]


def volume_views(pixels: Tensor, results: Mapping[str, Explanation], image: int = 0,
                 at: Sequence[int] | None = None) -> tuple[list[Tensor], dict[str, Explanation], list[str]]:
    """(slice images, explanations over those slices, titles): the three orthogonal slices of volume ``image``
    (``pixels``: its (C, D, H, W) in [0, 1]) through ``at`` (default: `centre`), each shown square."""
    first = next(iter(results.values()))
    point = list(at) if at is not None else centre(first, image)
    side = max(pixels.shape[1:])

    def cut(v: Tensor) -> Tensor:  # (..., D, H, W) -> (3, ..., side, side)
        planes = [v.select(-3, point[0]), v.select(-2, point[1]), v.select(-1, point[2])]
        flat = [resize(p.reshape(-1, 1, *p.shape[-2:]).float(), (side, side)).reshape(*p.shape[:-2], side, side)
                for p in planes]
        return torch.stack(flat).to(v.dtype)

    views = {k: _view(ex, image, cut, 3, None) for k, ex in results.items()}
    images = list(cut(pixels))
    names = [f"{plane} slice {point[i] + 1} of {pixels.shape[i + 1]}" for i, plane in enumerate(PLANES)]
    return images, views, names


def slice_grid(pixels: Tensor, results: Mapping[str, Explanation], image: int = 0, slices: int = 8
               ) -> tuple[list[Tensor], dict[str, Explanation], list[str]]:
    """(slice images, explanations, titles): ``slices`` axial slices spread evenly through volume ``image``."""
    images, views, _ = clip_views(pixels, results, image, slices)
    d = pixels.shape[1]
    return images, views, [f"axial slice {i + 1} of {d}" for i in evenly(d, slices)]


def profile(ex: Explanation) -> Tensor:
    """(B, K, T) the evidence in each frame (or slice): the sum of the map over each frame's pixels — when in the
    clip the evidence for t (over what the contrast compares it with) lies, signed."""
    return ex.shown().flatten(3).sum(-1)


__all__ = ["PLANES", "centre", "clip_views", "evenly", "profile", "slice_grid", "volume_views"]
