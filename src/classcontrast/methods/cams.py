"""pytorch-grad-cam's other gradient CAMs on a (B, K, *s) feature map A with gradient G = ∂O/∂A: GradCAM++,
LayerCAM, HiResCAM — each with every contrast (O is the contrast's objective).

GradCAM++ and LayerCAM rectify or square the gradient, so they are **not linear in it**: a contrast's map is
not the same combination of per-class maps, and the engine back-propagates each objective of a call on its
own (one backward pass per contrast × target). HiResCAM is linear and shares the low-rank basis.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cam import LayerMethod, LinearApprox, channel_terms


class GradCAMPlusPlus(LayerMethod):
    r"""GradCAM++ (Chattopadhay et al. 2018, eq. 19) in pytorch-grad-cam's form:

    $\alpha^k_{ij} = \dfrac{G^2_{kij}}{2G^2_{kij} + \sum_{ab} A^k_{ab}\,G^3_{kij} + \varepsilon}$
    ($\varepsilon = 10^{-6}$; $\alpha = 0$ where $G = 0$), $w_k = \sum_{ij} \alpha^k_{ij}\,\mathrm{ReLU}(G_{kij})$,
    $M = \sum_k w_k A^k$ (signed; ``relu=True`` is the textbook map).

    The ε is pytorch-grad-cam's, added to the denominator rather than the paper's exact ratio: where gradients are
    small (a contrast's objective, a saturated probability) it dominates and α tends to $G^2/\varepsilon$. Not
    linear in the gradient: every objective is back-propagated on its own.
    """

    name = "gradcam_plus_plus"

    aliases = ("gradcampp",)
    eps = 1e-6

    @property
    def linear(self) -> bool:
        return False

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        g2 = g * g
        total = a.flatten(2).sum(-1).reshape(*a.shape[:2], *([1] * (a.ndim - 2)))  # Σ_ab A^k_ab, (B, K, 1...)
        alpha = torch.where(g != 0, g2 / (2 * g2 + total * g2 * g + self.eps), torch.zeros_like(g))
        return channel_terms((alpha * g.clamp_min(0)).flatten(3).sum(-1), a)


class LayerCAM(LayerMethod):
    r"""LayerCAM (Jiang et al. 2021): $M = \sum_k \mathrm{ReLU}(G_k) \odot A^k$ — each position weighted by its own
    positive gradient (pytorch-grad-cam's ``LayerCAM``). Not linear in the gradient: every objective is
    back-propagated on its own."""

    name = "layercam"

    @property
    def linear(self) -> bool:
        return False

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        return g.clamp_min(0) * a


class HiResCAM(LinearApprox):
    r"""HiResCAM (Draelos & Carin 2020): $M = \sum_k G_k \odot A^k$, the element-wise product summed over channels
    — the same map as `linear_approx` (the paper's Linear Approximation), under the name pytorch-grad-cam's
    users know. Linear in the gradient."""

    name = "hirescam"


__all__ = ["GradCAMPlusPlus", "HiResCAM", "LayerCAM"]
