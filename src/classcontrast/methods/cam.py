"""Layer methods on a (B, K, *s) feature map A (s: the layer's spatial dimensions, one to three): Linear
Approximation, GradCAM, XGradCAM.

All are signed by default (no ReLU), as in the paper and the study, so that they stay linear in
the gradient and every contrast identity holds. ``relu=True`` gives the textbook maps.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..hooks import OutputRecorder
from ..layers import default_feature_layer, find_module
from .base import GradientMethod, Method, Recording


class LayerReading(Method):
    """A method that reads one layer's output A (a CAM): ``layer`` is a module name (``"features.40"``), a module, or
    None for the last spatial feature map (`default_feature_layer`); ``relu``, the textbook ReLU on the map. Shared
    by the gradient CAMs (`LayerMethod`) and the score-based ones (`classcontrast.methods.score_cams`)."""

    option_help: ClassVar[dict[str, str]] = {
        "layer": "the layer (a module name, e.g. features.40)", "relu": "the textbook ReLU on the map"}

    def __init__(self, layer: str | nn.Module | None = None, relu: bool = False) -> None:
        self.layer = layer
        self.relu = relu

    def options(self) -> dict[str, object]:
        layer = self.layer if not isinstance(self.layer, nn.Module) else type(self.layer).__name__
        return {"layer": layer, "relu": self.relu}

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        layer = self.layer if self.layer is not None else default_feature_layer(model, x)
        name, module = find_module(model, layer, x)
        recorder = OutputRecorder(module, name, stack)
        return Recording(input=x, layer=name, state={"recorder": recorder, "module": module})

    def after_forward(self, rec: Recording) -> None:
        a = rec.state["recorder"].single()
        if a.ndim == rec.input.ndim and a.shape[0] != rec.input.shape[0]:
            raise ClassContrastError(f"layer '{rec.layer}' outputs shape {tuple(a.shape)}: its first dimension is "
                                     f"not the batch of {rec.input.shape[0]} (an attention block's inner tensor?); "
                                     "choose a layer whose output is (B, C, *spatial)")
        if a.ndim != rec.input.ndim:
            shape = {3: "(B, C, L)", 4: "(B, C, H, W)", 5: "(B, C, D, H, W)"}[rec.input.ndim]
            raise ClassContrastError(
                f"layer '{rec.layer}' outputs shape {tuple(a.shape)}, but {self.name} needs a feature map "
                f"{shape} like its input's; choose a convolutional layer (vit_gradcam handles transformer tokens)"
            )
        rec.tensors = [a]


class LayerMethod(LayerReading, GradientMethod):
    """A gradient method on one layer's output A and its gradient G = ∂O/∂A (see `LayerReading`)."""

    @property
    def linear(self) -> bool:
        return not self.relu  # the textbook ReLU on the map breaks linearity

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        a = rec.tensors[0].detach()
        m = self.cam(a, grads[0])
        return m.clamp_min(0) if self.relu else m

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        """Map (R, B, *s) from activations A (B, K, *s) and gradients G (R, B, K, *s)."""
        raise NotImplementedError


class LinearApprox(LayerMethod):
    r"""Linear Approximation: $M = \sum_k A^k \odot \partial O/\partial A^k$ (a per-position
    first-order Taylor term; HiResCAM without ReLU). The original code's extra 1/K is dropped."""

    name = "linear_approx"

    aliases = ("linear_approximation",)

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return (g * a).sum(2)


def gradcam_map(a: Tensor, g: Tensor) -> Tensor:
    """Σ_k w_k A^k with w_k the spatial mean of G^k; A (B, K, *s), G (R, B, K, *s) -> (R, B, *s)."""
    return torch.einsum("rbk,bk...->rb...", g.flatten(3).mean(-1), a)


class GradCAM(LayerMethod):
    r"""GradCAM: $w_k = \frac{1}{hw}\sum_{ij}\partial O/\partial A^k_{ij}$,
    $M = \sum_k w_k A^k$ (signed; ``relu=True`` applies the textbook ReLU)."""

    name = "gradcam"

    aliases = ("layer_gradcam",)

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return gradcam_map(a, g)


class XGradCAM(LayerMethod):
    r"""XGradCAM as modified by the study: $w_k = \sum_{ij} \frac{A^k_{ij}}{\lVert A^k\rVert_1 + \varepsilon}
    \partial O/\partial A^k_{ij}$, $M = \sum_k w_k A^k$, $\varepsilon = 10^{-7}$.

    The L1 normaliser (instead of XGradCAM's plain sum) keeps the weights well defined for signed,
    pre-ReLU activations.
    """

    name = "xgradcam"
    eps = 1e-7

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        norm = a.abs().flatten(2).sum(-1).reshape(*a.shape[:2], *([1] * (a.ndim - 2))) + self.eps
        w = (g * (a / norm)).flatten(3).sum(-1)
        return torch.einsum("rbk,bk...->rb...", w, a)
