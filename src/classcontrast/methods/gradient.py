"""Input-space methods: the gradient and gradient × input."""

from __future__ import annotations

from contextlib import ExitStack

from torch import Tensor, nn

from .base import Method, Recording


class Gradient(Method):
    r"""The input gradient :math:`\phi = \partial O / \partial x` (signed, no abs).

    Summed over colour channels by default, giving an (H, W) map; ``keep_channels=True`` keeps the
    (C, H, W) gradient (what the gradient-sign perturbation experiment uses).
    """

    name = "gradient"

    def __init__(self, keep_channels: bool = False) -> None:
        self.keep_channels = keep_channels

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        xin = x.detach().requires_grad_(True)
        return Recording(input=xin, tensors=[xin])

    def attribution(self, x: Tensor, g: Tensor) -> Tensor:
        """Per-channel attribution from the input ``x`` (B, C, H, W) and its gradient (R, B, C, H, W)."""
        return g

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        a = self.attribution(rec.input.detach(), grads[0])
        return a if self.keep_channels else a.sum(2)


class GradientXInput(Gradient):
    r"""Gradient times input, :math:`\phi = x \odot \partial O / \partial x`, summed over channels by default."""

    name = "gradient_x_input"

    def attribution(self, x: Tensor, g: Tensor) -> Tensor:
        return g * x
