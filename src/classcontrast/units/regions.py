r"""Regions of a segmentation as the explained units: per-pixel (per-voxel) logits (B, C, *S), S of one to
three dimensions.

Every pixel of a segmenter is its own softmax classification, so every contrast applies to it. A region's
objective is the sum over its pixels of each pixel's contrast,

$$O_{\text{region}} = \sum_{p \in \text{region}} O\big(y_{:,p},\ t\big),$$

(original: $\sum y_t$; weighted: $\sum \operatorname{logit}(p_t)$; `Foil(s)`: $\sum (y_t - y_s)$), so its
gradient with respect to the dense logits is each pixel's contrast gradient inside the region and 0
outside, and every identity of the contrasts holds pixel by pixel (voxel by voxel for a 3-D segmenter). A
region's maps for K regions × M contrasts come from one forward pass, as for images.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import torch
from torch import Tensor

from ..contrast_base import Contrast, _pick, argmax, head_probabilities, per_row
from ..errors import ClassContrastError, ClassContrastWarning
from ..outputs import logits_of
from ..spatial import resize
from ..text import count
from .base import Selection, Units, register_units
from .records import RegionUnit
from .selectors import AllRegions, Region, is_region_spec


def dense_logits(output: Any, size: Sequence[int]) -> Tensor | None:
    """Per-pixel logits (B, C, *S) at the input's size from a segmenter's output — a tensor, torchvision's
    ``{"out": ...}``, or an object / dict with ``logits`` (Hugging Face, at a lower resolution: upsampled
    linearly, as its own post-processing does) — or None for another output (a classifier's (B, C))."""
    if isinstance(output, Mapping) and "out" in output:
        output = output["out"]
    y = logits_of(output)
    if not isinstance(y, Tensor) or y.ndim != len(size) + 2:
        return None
    return resize(y, size)


@dataclass(frozen=True, kw_only=True, eq=False)
class RegionSelection(Selection):
    """A call's regions: besides the targets, each region's ``masks`` (B, K, *S) in the logits' dtype, 1 inside."""

    masks: Tensor


@register_units
class RegionUnits(Units):
    """Regions of a segmentation as the explained units: targets, masks, the objectives' cotangents."""

    kind = "region"
    record = RegionUnit  # its units' record
    order = 60

    @classmethod
    def accepts(cls, raw: Any, x: Tensor) -> bool:
        return dense_logits(raw, x.shape[2:]) is not None

    def logits(self, raw: Any, x: Tensor, rows: Tensor, seen: Any, chosen: Selection | None, own: bool) -> Tensor:
        y = dense_logits(raw, x.shape[2:])
        assert y is not None
        return y

    def resolve(self, y: Tensor, head: str, chosen: Selection | None) -> RegionSelection:
        """The (B, K) target classes for dense logits ``y`` (B, C, *S), with each region's mask."""
        from ..classes import class_index
        from .selectors import Detections

        if isinstance(self.spec, Detections):
            raise ClassContrastError("Detections targets need a detector; this is a segmentation model (use cc.Region)")
        b, c = y.shape[:2]
        spatial = tuple(y.shape[2:])
        predicted = argmax(y)  # (B, *S)
        selected = None
        spec = self.spec
        if not (isinstance(spec, AllRegions) or is_region_spec(spec)):
            shown = type(spec).__name__ if not isinstance(spec, (int, str, list, tuple)) else repr(spec)
            raise ClassContrastError(f"targets={shown[:60]}: a segmentation model explains regions of pixels; give "
                                     "cc.Region(t) (the pixels of class t), cc.Region(t, mask=...), a list of "
                                     "Regions, or cc.Region.all(k) (the k largest predicted regions)")
        if isinstance(spec, AllRegions):
            counts = torch.stack([torch.bincount(predicted[i].flatten(), minlength=c) for i in range(b)])
            found = (counts > 0).sum(1)
            present = int(found.max())
            if spec.k is not None and not 1 <= spec.k <= c:
                raise ClassContrastError(f"Region.all({spec.k}) asks for more regions than the model has classes ({c})")
            k = present if spec.k is None else spec.k
            if spec.k is not None and k > int(found.min()):
                fewest = int(found.argmin())
                classes = count(int(found[fewest]), "predicted class", "predicted classes")
                warnings.warn(f"Region.all({spec.k}): image {fewest} has only {classes}: its other regions are "
                              "empty, zero maps marked as fillers (Explanation.selected) and left out of figures",
                              ClassContrastWarning, stacklevel=5)
            t = counts.topk(k, dim=1).indices  # largest first; classes not present are fillers (empty masks)
            selected = torch.arange(k, device=y.device)[None] < found[:, None]
            masks = predicted[:, None] == t.reshape(b, k, *([1] * len(spatial)))
        else:
            regions = [spec] if isinstance(spec, Region) else list(cast(Sequence[Region], spec))
            ts, ms = [], []
            for r in regions:
                if r.target is None:
                    raise ClassContrastError("a Region needs its class: cc.Region(t) or cc.Region(t, mask=...)")
                cls = class_index(r.target, self.categories, "Region") if isinstance(r.target, str) else int(r.target)
                if not 0 <= cls < c:
                    raise ClassContrastError(f"Region class {cls} is out of range for a model with {c} classes")
                ts.append(cls)
                ms.append(predicted == cls if r.mask is None else _mask(r.mask, b, spatial))
            t = torch.tensor(ts, device=y.device).expand(b, -1)
            masks = torch.stack(ms, 1)
            empty = (masks.flatten(2).sum(-1) == 0).nonzero()
            if len(empty):
                i, j = (int(v) for v in empty[0])
                name = self.categories[ts[j]] if self.categories is not None else str(ts[j])
                warnings.warn(f"the region of class {name!r} has no pixels in image {i}: its maps are zero",
                              ClassContrastWarning, stacklevel=5)
        return RegionSelection(targets=t.to(y.device).contiguous(), head=head, selected=selected,
                               masks=masks.to(device=y.device, dtype=y.dtype))

    @staticmethod
    def _per_pixel(j: int, rows: Tensor, sel: Selection, like: Tensor) -> tuple[Tensor, Tensor]:
        """Region ``j`` on B' inputs (``rows``: the image of each): its class at every pixel (B', *S) and its mask
        weights (B', *S)."""
        assert isinstance(sel, RegionSelection)
        mask = sel.masks[rows, j]
        return per_row(sel.targets[rows, j], mask).long(), mask.to(like.dtype)

    def cotangents(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, B', C, *S): for contrast m and region k, each pixel's contrast gradient inside the region, 0
        outside (rows: the image of each of the B' inputs, for the multi-pass methods) — computed at every pixel
        in the logits' own layout (the class axis 1), without gathering the region's pixels."""
        k = sel.targets.shape[1]
        out = y.new_empty(len(contrasts), k, *y.shape)
        selected = [c.select(rows, n_images) for c in contrasts]
        for j in range(k):
            target, mask = self._per_pixel(j, rows, sel, y)
            for m, contrast in enumerate(selected):
                torch.mul(contrast.grad_map(y, target), mask.unsqueeze(1), out=out[m, j])
        return out.reshape(len(contrasts) * k, *y.shape)

    def objectives(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, B'): each region's objective on each input, the sum over its pixels of the pixel's contrast."""
        k = sel.targets.shape[1]
        out = y.new_zeros(len(contrasts) * k, y.shape[0])
        selected = [c.select(rows, n_images) for c in contrasts]
        for j in range(k):
            target, mask = self._per_pixel(j, rows, sel, y)
            for m, contrast in enumerate(selected):
                score = contrast.score_map(y, target)
                out[m * k + j] = (score * mask).flatten(1).sum(1).to(out.dtype)
        return out

    def basis(self, cotangents: Tensor) -> tuple[Tensor, Tensor] | None:
        return None  # one cotangent per pixel and unit: no shared basis worth the SVD

    def image_logits(self, y: Tensor) -> Tensor:
        return y.flatten(2).mean(-1)  # a segmenter's image-level logits: the mean over its pixels

    def scores(self, contrast: Contrast, y: Tensor, sel: Selection) -> Tensor:
        """(B, K) each region's objective: the sum over its pixels of the pixel's contrast."""
        b = y.shape[0]
        return self.objectives([contrast], y, sel, torch.arange(b, device=y.device), b).T

    def target_probabilities(self, y: Tensor, sel: RegionSelection) -> Tensor:
        """(B, K) the mean probability of each region's class over its pixels (0 for an empty region): the
        softmax of its pixels' logits only."""
        dtype = y.dtype if y.dtype in (torch.float32, torch.float64) else torch.float32
        p = head_probabilities(y.to(dtype), "softmax", 1)
        rows = torch.arange(y.shape[0], device=y.device)
        out = []
        for j in range(sel.targets.shape[1]):
            target, mask = self._per_pixel(j, rows, sel, p)
            out.append((_pick(p, target) * mask).flatten(1).sum(1))
        area = sel.masks.flatten(2).sum(-1).to(dtype)  # (B, K)
        return torch.stack(out, 1) / area.clamp_min(1)

    @staticmethod
    def records(y: Tensor, sel: RegionSelection) -> list[list[RegionUnit]]:
        """`Explanation.units`: per image, one `RegionUnit` per region (target, mask, the pixels' logits)."""
        t = sel.targets
        out = []
        for i in range(t.shape[0]):
            image = []
            for j in range(t.shape[1]):
                m = sel.masks[i, j] > 0
                image.append(RegionUnit(target=int(t[i, j]), logits=y[i].movedim(0, -1)[m], mask=m,
                                        pixels=int(m.sum())))
            out.append(image)
        return out

    def fields(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> list[dict[str, Any]]:
        """Each region's record, score and mean probability, computed when first read (sums over its pixels); the
        records and probabilities are the same for every contrast, computed once."""
        assert isinstance(sel, RegionSelection)
        records, probabilities = cache(lambda: self.records(y, sel)), cache(lambda: self.target_probabilities(y, sel))

        def scores(c: Contrast) -> Any:
            return lambda: self.scores(c, y, sel)

        return [{"units": records, "scores": scores(c), "target_probabilities": probabilities} for c in contrasts]

    def void(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> Tensor:
        assert isinstance(sel, RegionSelection)
        empty = sel.masks.flatten(2).sum(-1) == 0
        return super().void(contrasts, y, sel) | empty[None]


def _mask(mask: Tensor, b: int, size: tuple[int, ...]) -> Tensor:
    """A user's region mask as (B, *S) booleans at the logits' size (nearest-neighbour resizing)."""
    dims = {1: "L", 2: "H, W", 3: "D, H, W"}[len(size)]
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ClassContrastError(f"a Region mask must be a boolean tensor of shape ({dims}) or (B, {dims})")
    m = mask[None] if mask.ndim == len(size) else mask
    if m.ndim != len(size) + 1 or m.shape[0] not in (1, b):
        raise ClassContrastError(f"a Region mask must have shape ({dims}) or (B, {dims}) for {count(b, 'image')}, "
                                 f"got {tuple(mask.shape)}")
    if tuple(m.shape[1:]) != size:
        m = resize(m[:, None].float(), size, "nearest")[:, 0] > 0.5
    return m.expand(b, *size)


__all__ = ["AllRegions", "Region", "RegionSelection", "RegionUnits", "dense_logits", "is_region_spec"]
