r"""EigenCAM and EigenGradCAM (Muhammad & Yeasin 2020; pytorch-grad-cam's ``EigenCAM`` and ``EigenGradCAM``): a
layer's first principal component as the map.

For a feature map $Z$ with $K$ channels at $N$ positions, the rows $Z^\top$ ($N \times K$) centred over positions,
$Z_c = Z^\top - \bar Z^\top$, and $v_1$ the first right singular vector of $Z_c$, the map is the projection
$M = Z_c v_1$ (one value per position). EigenCAM takes $Z = A$, the activations: it is **class-agnostic**, the same
map for every target and every contrast — whatever is asked, it shows where the layer varies most (its
``class_agnostic`` says so; a foil equal to its target still gives the zero map of "t rather than t").
EigenGradCAM takes $Z = A \odot \partial O/\partial A$, so its map follows the objective, though not linearly (the
SVD): every objective is back-propagated on its own.

A singular vector's sign is arbitrary (pytorch-grad-cam keeps LAPACK's, then rectifies and rescales). Here it is
fixed so that the map agrees with $\sum_k Z^k$ — the activations' sum; for EigenGradCAM the Linear Approximation
map —: $\langle M, \sum_k Z^k \rangle \ge 0$, so red is where the component goes with the evidence.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .cam import LayerMethod


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


class EigenCAM(LayerMethod):
    r"""EigenCAM: $M = Z_c v_1$ with $Z = A$, the layer's activations (module docstring): class-agnostic, the same map
    for every target and contrast."""

    name = "eigencam"
    class_agnostic: ClassVar[bool] = True

    @property
    def linear(self) -> bool:
        return False  # a map that ignores the gradient is no linear function of it

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return first_component(a, a.ndim - 2).expand(g.shape[0], *a.shape[:1], *a.shape[2:])


class EigenGradCAM(LayerMethod):
    r"""EigenGradCAM: $M = Z_c v_1$ with $Z = A \odot \partial O/\partial A$ (module docstring): the objective's
    Linear Approximation terms' first principal component. Not linear in the gradient."""

    name = "eigengradcam"

    @property
    def linear(self) -> bool:
        return False

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return first_component(g * a, a.ndim - 2)


__all__ = ["EigenCAM", "EigenGradCAM", "first_component"]
