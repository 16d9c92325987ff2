"""Whole images (clips, volumes) as the explained units: a classifier's one row of logits per input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..contrast_base import Contrast
from ..errors import ClassContrastError
from ..outputs import logits_of
from ..targets import Threshold, resolve_targets
from .base import Units, register_units
from .records import ImageUnit


@register_units
class ImageUnits(Units):
    """A classifier's units: each input (an image, a clip, a volume) is scored by its row of logits (B, C),
    its targets are classes (`classcontrast.targets.resolve_targets`)."""

    kind = "image"
    record = ImageUnit  # its units' record
    order = 90

    @classmethod
    def accepts(cls, raw: Any, x: Tensor) -> bool:
        y = logits_of(raw)
        return isinstance(y, Tensor) and y.ndim == 2

    def logits(self, raw: Any, x: Tensor, rows: Tensor) -> Tensor:
        y: Tensor = logits_of(raw)
        return y

    def resolve(self, y: Tensor) -> Tensor:
        from .regions import is_region_spec
        from .selectors import Detections

        if is_region_spec(self.spec):
            raise ClassContrastError("Region targets need a segmentation model (per-pixel logits, (B, C, h, w)); "
                                     f"this model returns {tuple(y.shape)}")
        if isinstance(self.spec, Detections):
            raise ClassContrastError("Detections targets need a detector (torchvision Faster R-CNN, DETR-style "
                                     f"models); this model returns logits of shape {tuple(y.shape)}")
        self.t = resolve_targets(self.spec, y, self.head)
        self.y = y
        return self.t

    def cotangents(self, contrasts: Sequence[Contrast], y: Tensor, t: Tensor, rows: Tensor, n_images: int) -> Tensor:
        cs = [c.select(rows, n_images) for c in contrasts]  # a per-image foil follows its image's inputs
        tr = t[rows]
        return torch.stack([c.grad(y, tr[:, j]) for c in cs for j in range(t.shape[1])])

    def objectives(self, contrasts: Sequence[Contrast], y: Tensor, t: Tensor, rows: Tensor, n_images: int) -> Tensor:
        cs = [c.select(rows, n_images) for c in contrasts]
        tr = t[rows]
        return torch.stack([c.score(y, tr[:, j]) for c in cs for j in range(t.shape[1])])

    def selected(self) -> Tensor | None:
        return self.spec.selected(self.y, self.t, self.head) if isinstance(self.spec, Threshold) else None

    def fields(self, contrast: Contrast, y: Tensor, t: Tensor) -> dict[str, Any]:
        return {}  # the Explanation computes an image's records, scores and probabilities from its logits

    def expected_zero(self, contrasts: Sequence[Contrast], y: Tensor, t: Tensor) -> Tensor:
        out = super().expected_zero(contrasts, y, t)
        if y.shape[1] == 2:  # a one-output model's class 0: its logit is the constant 0 (classcontrast.outputs)
            out |= ((t == 0) & ~y[:, :1].detach().ne(0).any())[None]
        return out
