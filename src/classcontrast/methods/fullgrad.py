"""FullGrad: input-gradient × input plus bias-gradient × bias over every spatial layer."""

from __future__ import annotations

from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hooks import OutputRecorder
from .base import Method, Recording


def _effective_bias(m: nn.Module) -> Tensor | None:
    """The bias a layer adds to its output: a conv's bias, or BatchNorm's β − μγ/√(σ²+ε) in eval."""
    if isinstance(m, nn.Conv2d):
        return None if m.bias is None else m.bias.detach()
    if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
        gamma = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_mean)
        beta = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
        return beta - m.running_mean * gamma / torch.sqrt(m.running_var + m.eps)
    return None


class FullGrad(Method):
    r"""FullGrad (Srinivas & Fleuret 2019) with the study's linear variant as the default:

    $S = \sum_c (\nabla_x O \odot x)_c + \sum_l \operatorname{up}\big(\sum_c (\nabla_{z_l} O \odot b_l)_c\big)$

    over every Conv2d with a bias and every BatchNorm2d (effective bias
    $\beta - \mu\gamma/\sqrt{\sigma^2+\epsilon}$, at the BatchNorm's output before any fused
    activation), bilinearly upsampled to the input size. No abs, so it is linear in the gradient and
    every contrast identity holds. Linear maps are mostly negative: view them with a shared, centred
    scale. ``abs=True`` gives the original FullGrad: each term abs'ed and min-max scaled to [0, 1]
    per image before summing.

    Biases of non-spatial layers (the classifier) have no place in the map and are left out.
    """

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
            if isinstance(m, nn.BatchNorm2d) and isinstance(act, nn.Module):  # timm BatchNormAct2d
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
                tensors.append(out)
                biases.append(bias)
        rec.tensors = tensors
        rec.state["biases"] = biases

    def _post(self, m: Tensor) -> Tensor:
        if not self.abs:
            return m
        m = m.abs()
        lo = m.flatten(-2).min(-1).values[..., None, None]
        hi = m.flatten(-2).max(-1).values[..., None, None]
        return (m - lo) / (hi - lo).clamp_min(1e-12)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        x = rec.input.detach()
        size = x.shape[-2:]
        total = self._post((grads[0] * x).sum(2))
        for g, bias in zip(grads[1:], rec.state["biases"], strict=True):
            term = (g * bias.to(g.dtype)[:, None, None]).sum(2)  # (R, B, h, w)
            if term.shape[-2:] != size:
                term = F.interpolate(term, size=tuple(size), mode="bilinear", align_corners=False)
            total = total + self._post(term)
        return total
