r"""Score-based CAMs (gradient-free): channel weights of a layer's map A (B, K, *s) from the contrast's score of
perturbed forwards — ScoreCAM (inputs masked by each channel) and AblationCAM (each channel ablated) — every
contrast and target from the same forwards. ``layer`` and ``relu`` as for GradCAM; maps at the layer's size.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..spatial import resize
from .base import Pass, Recording, check_internal_batch_size
from .cam import LayerMethod, LayerReading, augmented, channel_terms, first_component, restored
from .perturbation import PerturbationMethod, Score


class _ScoreCAM(LayerReading, PerturbationMethod):
    """A layer read on the images' own forward, its channels weighted by perturbed forwards."""

    option_help: ClassVar[dict[str, str]] = {
        "internal_batch_size": "perturbed inputs per forward pass: bounds memory, the maps are the same",
        "eigen_smooth": LayerMethod.option_help["eigen_smooth"], "aug_smooth": LayerMethod.option_help["aug_smooth"]}

    def __init__(self, layer: str | nn.Module | None = None, relu: bool = False,
                 internal_batch_size: int | None = None, eigen_smooth: bool = False, aug_smooth: bool = False) -> None:
        super().__init__(layer, relu)
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)
        self.eigen_smooth = eigen_smooth
        self.aug_smooth = aug_smooth

    @property
    def linear(self) -> bool:
        return False

    def options(self) -> dict[str, object]:
        return {**super().options(), "internal_batch_size": self.internal_batch_size,
                "eigen_smooth": self.eigen_smooth, "aug_smooth": self.aug_smooth}

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        """The map of the images; with ``aug_smooth`` (`classcontrast.methods.cam`), the mean of the maps of the six
        flipped and scaled inputs, flipped back — each input's layer read and objectives scored by one more forward."""
        a, module = rec.tensors[0], rec.state["module"]
        if not self.aug_smooth:
            return self.weighted(a, self.weights(x, a, clean, score, module))
        rows = torch.arange(x.shape[0], device=x.device)
        total: Tensor | None = None
        for flip, xa in augmented(x):
            read: list[Tensor] = []
            clean_a = score(Pass(xa, rows, {"read": read, "module": module}))
            m = restored(self.weighted(read[0], self.weights(xa, read[0], clean_a, score, module)), flip)
            total = m if total is None else total + m
        assert total is not None
        return total

    def perturb(self, model: nn.Module, p: Pass, stack: ExitStack) -> None:
        """An augmented input's pass reads the layer (``aug_smooth``)."""
        if "read" in p.state:
            stack.enter_context(p.state["module"].register_forward_hook(
                lambda module, args, out: p.state["read"].append(out.detach())))

    def weights(self, x: Tensor, a: Tensor, clean: Tensor, score: Score, module: nn.Module) -> Tensor:
        """The channel weights (R, B, K) of the inputs ``x`` whose layer output is ``a`` and objectives ``clean``."""
        raise NotImplementedError

    def weighted(self, a: Tensor, w: Tensor) -> Tensor:
        """$\\sum_k w_k A^k$ for weights (R, B, K) -> (R, B, *s) — with ``eigen_smooth``, the first principal
        component of the terms $w_k A^k$ (`classcontrast.methods.cam`) — ReLU'd when asked."""
        if self.eigen_smooth:
            m = first_component(channel_terms(w, a), a.ndim - 2)
        else:
            m = torch.einsum("rbk,bk...->rb...", w, a)
        return m.clamp_min(0) if self.relu else m


class ScoreCAM(_ScoreCAM):
    r"""ScoreCAM (Wang et al. 2020) in pytorch-grad-cam's form: each channel $A^k$ upsampled to the input
    (linearly, ``align_corners=True`` as its ``UpsamplingBilinear2d``), min-max normalised
    ($(U - \min U)/(\max U - \min U + 10^{-8})$), multiplies the input; $w = \mathrm{softmax}_k\,
    O(x \odot U^k)$ over the channels; $M = \sum_k w_k A^k$. One forward per channel and image, batched.
    The softmax makes the weights depend on the objective's scale: a contrast with a small range gives near-uniform
    weights (the map tends to the channels' sum).
    """

    name = "scorecam"

    def weights(self, x: Tensor, a: Tensor, clean: Tensor, score: Score, module: nn.Module) -> Tensor:
        def make(x: Tensor, images: Tensor, which: Tensor) -> Tensor:
            up = resize(a[images, which][:, None], x.shape[2:], corners=True)
            flat = up.flatten(1)
            low, high = flat.min(1).values, flat.max(1).values
            shape = (-1, *([1] * (x.ndim - 1)))
            up = (up - low.reshape(shape)) / (high - low + 1e-8).reshape(shape)
            return x[images] * up

        return torch.softmax(self.sample_scores(x, a.shape[1], make, score), -1)


class AblationCAM(_ScoreCAM):
    r"""AblationCAM (Desai & Ramaswamy 2020) in pytorch-grad-cam's form: $w_k = (O(x) - O_{k})/O(x)$, $O_k$ the
    objective with channel k of the layer set to the ablation value; $M = \sum_k w_k A^k$. One forward per channel.

    The division by the score is the published definition and pytorch-grad-cam's, kept so that the maps are
    theirs: for a contrast whose objective is negative (``Foil`` against a stronger class, ``max`` for a runner-up)
    every weight flips sign, and an objective near 0 blows the weights up — prefer ``occlusion`` or ``scorecam`` for
    contrasts that cross 0. ``ablation``: the value an ablated channel takes; None is pytorch-grad-cam's rule, 0
    where the image's layer map has minimum 0 (after a ReLU) and that minimum − 10⁷ otherwise (per image; theirs
    takes the batch's minimum and lowers it at each ablated row).
    """

    option_help: ClassVar[dict[str, str]] = {
        "ablation": "the value of an ablated channel (default: pytorch-grad-cam's rule)"}

    name = "ablationcam"
    nonfinite_hint = (" (it divides each channel's drop by the objective O(x): an objective of exactly 0 has no "
                      "AblationCAM map; explain that contrast with scorecam or occlusion)")

    def __init__(self, layer: str | nn.Module | None = None, relu: bool = False, ablation: float | None = None,
                 internal_batch_size: int | None = None, eigen_smooth: bool = False, aug_smooth: bool = False) -> None:
        super().__init__(layer, relu, internal_batch_size, eigen_smooth, aug_smooth)
        self.ablation = None if ablation is None else float(ablation)

    def options(self) -> dict[str, object]:
        return {**super().options(), "ablation": self.ablation}

    def perturb(self, model: nn.Module, p: Pass, stack: ExitStack) -> None:
        if "read" in p.state:
            return super().perturb(model, p, stack)
        module = p.state["module"]
        value, channel = p.state["value"][p.rows], p.state["samples"]

        def hook(module: nn.Module, args: Any, out: Tensor) -> Tensor:
            out = out.clone()
            out[torch.arange(len(channel), device=out.device), channel] = value.to(out.dtype).reshape(
                -1, *([1] * (out.ndim - 2)))
            return out

        stack.enter_context(module.register_forward_hook(hook))

    def weights(self, x: Tensor, a: Tensor, clean: Tensor, score: Score, module: nn.Module) -> Tensor:
        if self.ablation is None:
            low = a.flatten(1).min(1).values
            value = torch.where(low == 0, torch.zeros_like(low), low - 1e7)
        else:
            value = a.new_full((a.shape[0],), self.ablation)
        ablated = self.sample_scores(x, a.shape[1], lambda x, images, which: x[images], score,
                                     module=module, value=value)
        return (clean[..., None] - ablated) / clean[..., None]


__all__ = ["AblationCAM", "ScoreCAM"]
