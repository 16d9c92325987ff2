"""FullGrad: input-gradient × input plus bias-gradient × bias over every spatial layer."""

from __future__ import annotations

from contextlib import ExitStack
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..hooks import OutputRecorder
from ..spatial import resize
from .base import GradientMethod, Recording


def _effective_bias(m: nn.Module) -> Tensor | None:
    """The bias a layer adds to its output: a convolution's bias (1-D, 2-D or 3-D), or BatchNorm's
    β − μγ/√(σ²+ε) in eval."""
    if isinstance(m, nn.modules.conv._ConvNd):  # 1-D, 2-D, 3-D, transposed
        return None if m.bias is None else m.bias.detach()
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.running_mean is not None \
            and m.running_var is not None:
        gamma = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_mean)
        beta = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
        return beta - m.running_mean * gamma / torch.sqrt(m.running_var + m.eps)
    return None


class FullGrad(GradientMethod):
    r"""FullGrad (Srinivas & Fleuret 2019) with the study's linear variant as the default:

    $S = \sum_c (\nabla_x O \odot x)_c + \sum_l \operatorname{up}\big(\sum_c (\nabla_{z_l} O \odot b_l)_c\big)$

    over every convolution with a bias and every BatchNorm (effective bias
    $\beta - \mu\gamma/\sqrt{\sigma^2+\epsilon}$, at the BatchNorm's output before any fused
    activation) whose output has the input's spatial dimensions, upsampled linearly to the input size (images,
    clips and volumes alike). No abs, so it is linear in the gradient and
    every contrast identity holds. Linear maps are mostly negative: view them with a shared, centred
    scale. ``abs=True`` gives the original FullGrad: each term abs'ed and min-max scaled to [0, 1]
    per image before summing.

    Biases of non-spatial layers (the classifier) have no place in the map and are left out.
    """

    option_help: ClassVar[dict[str, str]] = {"abs": "the original abs'ed FullGrad"}

    name = "fullgrad"

    def __init__(self, abs: bool = False) -> None:
        self.abs = abs

    @property
    def linear(self) -> bool:
        return not self.abs  # abs and min-max scaling are not linear

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        xin = x.detach().requires_grad_(True)
        layers: list[tuple[OutputRecorder, Tensor]] = []
        for name, m in model.named_modules():
            bias = _effective_bias(m)
            if bias is None:
                continue
            rec = OutputRecorder(None, name, None)
            act = getattr(m, "act", None)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and isinstance(act, nn.Module):  # timm BatchNormAct2d
                rec.attach(act, stack, before=True)
            else:
                rec.attach(m, stack)
            layers.append((rec, bias))
        return Recording(input=xin, state={"layers": layers})

    def after_forward(self, rec: Recording) -> None:
        biases: list[Tensor] = []
        tensors = [rec.input]
        for recorder, bias in rec.state.pop("layers"):
            for out in recorder.outputs:
                if out.ndim != rec.input.ndim:  # a layer of the classifier (B, C): no place in the map
                    continue
                tensors.append(out)
                biases.append(bias)
        rec.tensors = tensors
        rec.state["biases"] = biases

    def _post(self, m: Tensor, spatial: int) -> Tensor:
        if not self.abs:
            return m
        m = m.abs()
        flat = m.flatten(-spatial)
        shape = (*m.shape[:-spatial], *([1] * spatial))
        lo, hi = flat.min(-1).values.reshape(shape), flat.max(-1).values.reshape(shape)
        return (m - lo) / (hi - lo).clamp_min(1e-12)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        x = rec.input.detach()
        size, spatial = x.shape[2:], x.ndim - 2
        total = self._post((grads[0] * x).sum(2), spatial)
        for g, bias in zip(grads[1:], rec.state["biases"], strict=True):
            term = (g * bias.to(g.dtype).reshape(-1, *([1] * spatial))).sum(2)  # (R, B, *s)
            if term.shape[2:] != size:
                term = resize(term, size)
            total = total + self._post(term, spatial)
        return total
