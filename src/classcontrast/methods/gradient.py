"""Input-space methods: the gradient and gradient × input."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .base import InputMethod, Recording


class Gradient(InputMethod):
    r"""The input gradient $\phi = \partial O / \partial x$ (signed, no abs).

    Summed over colour channels by default, giving an (H, W) map; ``keep_channels=True`` keeps the
    (C, H, W) gradient (what the gradient-sign perturbation experiment uses).
    """

    name = "gradient"

    aliases: ClassVar[tuple[str, ...]] = ("saliency", "vanilla_gradient")

    def __init__(self, keep_channels: bool = False) -> None:
        self.keep_channels = keep_channels

    def attribution(self, x: Tensor, g: Tensor) -> Tensor:
        """Per-channel attribution from the input ``x`` (B, C, H, W) and its gradient (R, B, C, H, W)."""
        return g

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        return self.channels(self.attribution(rec.input.detach(), grads[0]))


class GradientXInput(Gradient):
    r"""Gradient times input, $\phi = x \odot \partial O / \partial x$, summed over channels by default."""

    name = "gradient_x_input"

    aliases: ClassVar[tuple[str, ...]] = ("input_x_gradient",)

    def attribution(self, x: Tensor, g: Tensor) -> Tensor:
        return g * x
