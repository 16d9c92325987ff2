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

from torch import Tensor, nn

from .cam import LayerMethod, first_component


class _Eigen(LayerMethod):
    """A CAM that already is a first principal component: ``eigen_smooth`` would change nothing and is not offered."""

    option_help: ClassVar[dict[str, str]] = {
        k: v for k, v in LayerMethod.option_help.items() if k != "eigen_smooth"}

    def __init__(self, layer: str | nn.Module | None = None, relu: bool = False, aug_smooth: bool = False) -> None:
        super().__init__(layer, relu, aug_smooth=aug_smooth)

    def options(self) -> dict[str, object]:
        return {k: v for k, v in super().options().items() if k != "eigen_smooth"}

    @property
    def linear(self) -> bool:
        return False  # the SVD (EigenCAM: a map that ignores the gradient is no linear function of it)


class EigenCAM(_Eigen):
    r"""EigenCAM: $M = Z_c v_1$ with $Z = A$, the layer's activations (module docstring): class-agnostic, the same map
    for every target and contrast."""

    name = "eigencam"
    class_agnostic: ClassVar[bool] = True
    reads_gradient = False  # no backward pass

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        return a.expand(g.shape[0], *a.shape)

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return first_component(a, a.ndim - 2).expand(g.shape[0], *a.shape[:1], *a.shape[2:])


class EigenGradCAM(_Eigen):
    r"""EigenGradCAM: $M = Z_c v_1$ with $Z = A \odot \partial O/\partial A$ (module docstring): the objective's
    Linear Approximation terms' first principal component. Not linear in the gradient."""

    name = "eigengradcam"

    def terms(self, a: Tensor, g: Tensor) -> Tensor:
        return g * a

    def cam(self, a: Tensor, g: Tensor) -> Tensor:
        return first_component(g * a, a.ndim - 2)


__all__ = ["EigenCAM", "EigenGradCAM", "first_component"]
