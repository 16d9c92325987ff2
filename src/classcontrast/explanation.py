"""Results: signed maps with the targets and logits they explain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Explanation:
    """Signed maps for K target classes of B images under one method and one contrast.

    ``maps`` (B, K, H, W) are at input resolution (bilinear upsampling of ``layer_maps``, which are
    at the layer's resolution; the two are identical for input-space methods). Positive values
    support the target over what the contrast compares it with; negative values speak against it.
    """

    maps: Tensor
    layer_maps: Tensor
    targets: Tensor
    logits: Tensor
    method: str
    contrast: str
    layer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def probabilities(self) -> Tensor:
        """Softmax of the logits, (B, C)."""
        y = self.logits
        return torch.softmax(y if y.dtype in (torch.float32, torch.float64) else y.float(), 1)

    @property
    def target_probabilities(self) -> Tensor:
        """The probability of each explained target, (B, K)."""
        return self.probabilities.gather(1, self.targets)

    def to(self, device: str | torch.device) -> Explanation:
        """A copy with every tensor moved to ``device``."""
        return Explanation(
            self.maps.to(device), self.layer_maps.to(device), self.targets.to(device),
            self.logits.to(device), self.method, self.contrast, self.layer, dict(self.options),
        )


class Explanations(dict[str, Explanation]):
    """Several contrasts computed from one forward pass: ``ex["weighted"]``, ``ex["original"]``, ..."""

    @property
    def logits(self) -> Tensor:
        return next(iter(self.values())).logits

    @property
    def targets(self) -> Tensor:
        return next(iter(self.values())).targets
