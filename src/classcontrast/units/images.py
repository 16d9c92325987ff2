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
from .base import Selection, Units, register_units
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

    def logits(self, raw: Any, x: Tensor, rows: Tensor, seen: Any, chosen: Selection | None, own: bool) -> Tensor:
        y: Tensor = logits_of(raw)
        return y

    def resolve(self, y: Tensor, head: str, chosen: Selection | None) -> Selection:
        from .regions import is_region_spec
        from .selectors import Detections

        if is_region_spec(self.spec):
            raise ClassContrastError("Region targets need a segmentation model (per-pixel logits, (B, C, h, w)); "
                                     f"this model returns {tuple(y.shape)}")
        if isinstance(self.spec, Detections):
            raise ClassContrastError("Detections targets need a detector (torchvision Faster R-CNN, DETR-style "
                                     f"models); this model returns logits of shape {tuple(y.shape)}")
        t = resolve_targets(self.spec, y, head)
        selected = self.spec.selected(y, t, head) if isinstance(self.spec, Threshold) else None
        return Selection(targets=t, head=head, selected=selected)

    def cotangents(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        cs = [c.select(rows, n_images) for c in contrasts]  # a per-image foil follows its image's inputs
        t = sel.targets
        tr = t[rows]
        return torch.stack([c.grad(y, tr[:, j]) for c in cs for j in range(t.shape[1])])

    def objectives(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        cs = [c.select(rows, n_images) for c in contrasts]
        t = sel.targets
        tr = t[rows]
        return torch.stack([c.score(y, tr[:, j]) for c in cs for j in range(t.shape[1])])

    def fields(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> list[dict[str, Any]]:
        return [{} for _ in contrasts]  # the Explanation computes an image's records, scores and probabilities

    def expected_zero(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> Tensor:
        out = super().expected_zero(contrasts, y, sel)
        if y.shape[1] == 2:  # a one-output model's class 0: its logit is the constant 0 (classcontrast.outputs)
            out |= ((sel.targets == 0) & ~y[:, :1].detach().ne(0).any())[None]
        return out
