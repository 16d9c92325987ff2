"""Integrated Gradients, with any contrast back-propagated at every point of the path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..baselines import baseline as baseline_image
from ..errors import ClassContrastError
from .base import InputMethod, Pass, Recording, check_internal_batch_size, row_chunks

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(rule: str, n: int) -> tuple[Tensor, Tensor]:
    """(points α in [0, 1], weights) of an n-point rule for ∫₀¹, in float64, named as in Captum; every
    rule integrates constants exactly (Captum's trapezoid does not: see below)."""
    if rule not in RULES:
        raise ClassContrastError(f"unknown integration rule {rule!r}; choose one of {', '.join(RULES)}")
    if n < 1 or (rule == "riemann_trapezoid" and n < 2):
        raise ClassContrastError(f"integration needs at least {2 if rule == 'riemann_trapezoid' else 1} steps, got {n}")
    if rule == "gausslegendre":
        nodes, gauss = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * gauss)
    k = torch.arange(n, dtype=torch.float64)
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_left":
        return k / n, weights
    if rule == "riemann_right":
        return (k + 1) / n, weights
    if rule == "riemann_middle":
        return (k + 0.5) / n, weights
    # the composite trapezoid rule on n points: spacing 1/(n-1), ends halved. (Captum takes its weights
    # as 1/n with ends halved, which integrate a constant to (n-1)/n: its maps are ours times (n-1)/n.)
    weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
    weights[0] /= 2
    weights[-1] /= 2
    return k / (n - 1), weights


def path_start(baseline: str | Tensor, x: Tensor) -> Tensor:
    """The baseline x′ of images ``x``: ``"zeros"`` / ``"blur"`` made from them, or a tensor broadcast to them (one that
    does not broadcast is one line)."""
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError as e:
            raise ClassContrastError(f"the baseline of shape {tuple(baseline.shape)} does not broadcast "
                                     f"to the images' shape {tuple(x.shape)}") from e
    return baseline_image(x, baseline)


class IntegratedGradients(InputMethod):
    r"""Integrated Gradients (Sundararajan et al., ICML 2017) of the contrast's objective O:

    $\phi = (x - x') \odot \sum_k w_k\, \nabla_x O\big(x' + \alpha_k (x - x')\big)$, summed over colour
    channels unless ``keep_channels``; $(\alpha_k, w_k)$ an n-point rule (``steps``, ``integration``:
    Captum's ``riemann_left/right/middle/trapezoid`` or ``gausslegendre``, the default as in Captum).

    The contrast is back-propagated at every path point (for ``weighted``, α is that point's softmax over the
    other classes), so completeness holds per contrast: $\sum \phi = O(x) - O(x')$ up to the
    quadrature error. ``baseline`` x′: ``"zeros"`` (zeros of the model's input space), ``"blur"`` (the
    Gaussian-blurred image, kernel 101, σ = 15) or a tensor broadcastable to x. All path points of all
    images run in batched forward passes of at most ``internal_batch_size`` rows (16 unless given, as
    Captum's option of that name: memory does not grow with the number of images; the maps are the same
    for any value), and every target × contrast comes from the same passes.
    """

    option_help: ClassVar[dict[str, str]] = {
        "steps": "path points", "baseline": "zeros | blur", "integration": " | ".join(RULES)}

    name = "integrated_gradients"

    aliases = ("ig",)
    multipass = True

    def __init__(self, steps: int = 32, baseline: str | Tensor = "zeros", integration: str = "gausslegendre",
                 keep_channels: bool = False, internal_batch_size: int | None = None) -> None:
        self.alphas, self.weights = quadrature(integration, int(steps))
        if isinstance(baseline, str) and baseline not in ("zeros", "blur"):
            raise ClassContrastError(f"unknown baseline {baseline!r}; choose zeros, blur or give a tensor")
        if isinstance(baseline, Tensor) and baseline.numel() and not bool(torch.isfinite(baseline).all()):
            raise ClassContrastError("integrated_gradients: the baseline holds NaN or infinite values")
        self.steps = int(steps)
        self.baseline = baseline
        self.integration = integration
        self.keep_channels = keep_channels
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def options(self) -> dict[str, object]:
        base = self.baseline if isinstance(self.baseline, str) else f"tensor{tuple(self.baseline.shape)}"
        return {"steps": self.steps, "baseline": base, "integration": self.integration,
                "keep_channels": self.keep_channels, "internal_batch_size": self.internal_batch_size}

    def start(self, x: Tensor) -> Tensor:
        """The baseline x′ for images ``x``."""
        return path_start(self.baseline, x)

    def passes(self, x: Tensor) -> Iterator[Pass]:
        n, b = self.steps, x.shape[0]
        start = self.start(x).detach()
        delta = x.detach() - start
        alphas = self.alphas.to(device=x.device, dtype=x.dtype)
        weights = self.weights.to(device=x.device, dtype=x.dtype)
        for rows in row_chunks(b * n, self.internal_batch_size, x.device):
            image, k = rows // n, rows % n
            points = start[image] + alphas[k].view(-1, *([1] * (x.ndim - 1))) * delta[image]
            yield Pass(points, image, {"weights": weights[k], "delta": delta[image]})

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        w, delta = rec.state["weights"], rec.state["delta"]
        return self.channels(grads[0] * w.view(1, -1, *([1] * (delta.ndim - 1))) * delta[None])
