"""A model with everything needed to explain it: preprocessing and class names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import Tensor, nn


class Normalize(nn.Module):
    """Channel-wise (x - mean) / std as a module, on the input's device and dtype."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def forward(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    def inverse(self, x: Tensor) -> Tensor:
        """Back to pixel space [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return x * std + mean


def binary_names(categories: Sequence[str]) -> list[str]:
    """Class names for the logits: a one-output model's one name ``X`` becomes ``["not X", "X"]`` (its output
    is read as the binary logits $[0, y]$, see `classcontrast.outputs`); other lists are kept."""
    names = list(categories)
    return [f"not {names[0]}", names[0]] if len(names) == 1 else names


@dataclass
class ModelBundle:
    """An eval-mode classifier with its preprocessing and class names.

    ``preprocess`` maps a PIL image to a [0, 1] tensor (resize, crop); ``normalize`` maps that to the
    model's input space; ``transform`` does both (PIL -> model input). ``layer`` is the bundle's CAM
    layer for calls that name none.
    """

    model: nn.Module
    preprocess: Callable[[Image.Image], Tensor]
    normalize: Normalize
    categories: list[str]
    name: str = "model"
    info: dict[str, object] = field(default_factory=dict)
    layer: str | None = None  # the CAM layer used when a call names none (None: the automatic default)
    head: str = "softmax"  # "sigmoid" for a multi-label head: each class its own decision

    def __post_init__(self) -> None:
        self.categories = binary_names(self.categories)

    def transform(self, image: Image.Image) -> Tensor:
        """PIL image -> normalised (C, H, W) model input."""
        return self.normalize(self.preprocess(image))

    def pixel_model(self) -> nn.Module:
        """The model taking [0, 1] pixel images (normalisation inside the forward pass)."""
        return nn.Sequential(self.normalize, self.model)

    def to(self, device: str | torch.device) -> ModelBundle:
        self.model.to(device)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.categories)
