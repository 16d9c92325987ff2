r"""Layer methods on a (B, K, *s) feature map A (s: the layer's spatial dimensions, one to three): Linear
Approximation, GradCAM, XGradCAM.

All are signed by default (no ReLU), as in the paper and the study, so that they stay linear in
the gradient and every contrast identity holds. ``relu=True`` gives the textbook maps.

Every gradient CAM (`LayerMethod`) and score CAM (`classcontrast.methods.score_cams`) takes pytorch-grad-cam's two
smoothing options:

- ``eigen_smooth``: the map is the first principal component of the per-channel terms $T^k$ the CAM sums
  ($M = \sum_k T^k$, e.g. $T^k = w_k A^k$ for GradCAM): $M = T_c v_1$ (`classcontrast.methods.eigen`), signed to
  agree with $\sum_k T^k$. Not linear in the gradient.
- ``aug_smooth``: test-time augmentation, the mean over the six inputs $x' = \lambda\,x$ and $x' = \lambda\,
  \mathrm{flip}(x)$, $\lambda \in \{0.9, 1, 1.1\}$ (flipped along the last axis), of each input's map, flipped
  back: $M = \frac16 \sum_a \mathrm{flip}_a^{-1} M(x'_a)$. The targets come from the images themselves, the
  contrast from each input's own logits (for ``weighted``, α is that input's softmax). Linear when the map is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..hooks import OutputRecorder
from ..layers import default_feature_layer, find_module
from .base import GradientMethod, Method, Pass, Recording

# aug_smooth's inputs, pytorch-grad-cam's test-time augmentation (ttach's HorizontalFlip × Multiply(0.9, 1, 1.1)):
# (flipped along the last axis, the factor the input is multiplied by)
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple((flip, f) for flip in (False, True) for f in (0.9, 1.0, 1.1))


def augmented(x: Tensor) -> Iterator[tuple[bool, Tensor]]:
    """``aug_smooth``'s inputs: for each of `AUGMENTATIONS`, (whether it is flipped, ``x`` scaled and flipped)."""
    for flip, factor in AUGMENTATIONS:
        scaled = x.detach() * factor
        yield flip, scaled.flip(-1) if flip else scaled


def restored(m: Tensor, flip: bool) -> Tensor:
    """One augmented input's map flipped back, as a term of ``aug_smooth``'s mean."""
    return (m.flip(-1) if flip else m) / len(AUGMENTATIONS)


def first_component(z: Tensor, spatial: int) -> Tensor:
    """(..., K, *s) -> (..., *s), ``spatial`` the number of dimensions of s: each position's projection on the first
    principal component of the K-channel rows, centred over positions, signed to agree with the channels' sum."""
    shape = z.shape
    flat = z.flatten(-spatial) if spatial > 1 else z  # (..., K, N)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    rows = work.transpose(-1, -2)  # (..., N, K)
    centred = rows - rows.mean(-2, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[..., 0, :, None])[..., 0]  # (..., N)
    agree = (projection * work.sum(-2)).sum(-1, keepdim=True)
    projection = torch.where(agree < 0, -projection, projection)
    return projection.to(z.dtype).reshape(*shape[: -spatial - 1], *shape[-spatial:])


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
    """A gradient method on one layer's output A and its gradient G = ∂O/∂A (see `LayerReading`); ``eigen_smooth`` and
    ``aug_smooth`` as in the module docstring."""

    option_help: ClassVar[dict[str, str]] = {
        **LayerReading.option_help,
        "eigen_smooth": "the first principal component of the CAM's per-channel terms (pytorch-grad-cam's)",
        "aug_smooth": "the mean over flipped and scaled inputs (pytorch-grad-cam's test-time augmentation)"}

    def __init__(self, layer: str | nn.Module | None = None, relu: bool = False, eigen_smooth: bool = False,
                 aug_smooth: bool = False) -> None:
        super().__init__(layer, relu)
        self.eigen_smooth = eigen_smooth
        self.aug_smooth = aug_smooth
        self.multipass = aug_smooth  # the targets come from the images, not from the augmented inputs

    def options(self) -> dict[str, object]:
        return {**super().options(), "eigen_smooth": self.eigen_smooth, "aug_smooth": self.aug_smooth}

    @property
    def linear(self) -> bool:
        return not self.relu and not self.eigen_smooth  # the ReLU and the SVD break linearity

    def passes(self, x: Tensor) -> Iterator[Pass]:
        """One pass on the images; with ``aug_smooth``, one per augmented input (`AUGMENTATIONS`)."""
        if not self.aug_smooth:
            yield from super().passes(x)
            return
        rows = torch.arange(x.shape[0], device=x.device)
        for flip, xa in augmented(x):
            yield Pass(xa, rows, {"flip": flip})

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        a = rec.tensors[0].detach()
        m = first_component(self.terms(a, grads[0]), a.ndim - 2) if self.eigen_smooth else self.cam(a, grads[0])
        m = m.clamp_min(0) if self.relu else m
        return restored(m, rec.state["flip"]) if self.aug_smooth else m

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        """The per-channel terms T (R, B, K, *s) whose sum over K is the map, from A (B, K, *s) and G (R, B, K, *s)."""
        raise NotImplementedError

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        """Map (R, B, *s) from activations A (B, K, *s) and gradients G (R, B, K, *s): Σ_k T^k (`terms`)."""
        return self.terms(a, g).sum(2)


class LinearApprox(LayerMethod):
    r"""Linear Approximation: $M = \sum_k A^k \odot \partial O/\partial A^k$ (a per-position
    first-order Taylor term; HiResCAM without ReLU). The original code's extra 1/K is dropped."""

    name = "linear_approx"

    aliases = ("linear_approximation",)

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        return g * a


def gradcam_map(a: Tensor, g: Tensor) -> Tensor:
    """Σ_k w_k A^k with w_k the spatial mean of G^k; A (B, K, *s), G (R, B, K, *s) -> (R, B, *s)."""
    return torch.einsum("rbk,bk...->rb...", g.flatten(3).mean(-1), a)


def channel_terms(w: Tensor, a: Tensor) -> Tensor:
    """The terms w_k A^k (R, B, K, *s) of channel weights w (R, B, K) and activations A (B, K, *s)."""
    return w.reshape(*w.shape, *([1] * (a.ndim - 2))) * a


class GradCAM(LayerMethod):
    r"""GradCAM: $w_k = \frac{1}{hw}\sum_{ij}\partial O/\partial A^k_{ij}$,
    $M = \sum_k w_k A^k$ (signed; ``relu=True`` applies the textbook ReLU)."""

    name = "gradcam"

    aliases = ("layer_gradcam",)

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        return channel_terms(g.flatten(3).mean(-1), a)

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

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        norm = a.abs().flatten(2).sum(-1).reshape(*a.shape[:2], *([1] * (a.ndim - 2))) + self.eps
        return channel_terms((g * (a / norm)).flatten(3).sum(-1), a)
