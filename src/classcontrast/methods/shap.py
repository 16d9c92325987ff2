r"""GradientSHAP (Lundberg & Lee 2017; Captum's ``GradientShap``): expected gradients of the contrast's objective O
over random baselines, random points on the path and, optionally, noise on the input.

$$\phi = \frac1n \sum_{k=1}^{n} (\tilde x_k - x'_k) \odot \nabla_x O\big(x'_k + \alpha_k(\tilde x_k - x'_k)\big),
\qquad \tilde x_k = x + \varepsilon_k,$$

$x'_k$ drawn uniformly from the ``baselines`` (a (N, C, *S) distribution, one (C, *S) image, or ``"zeros"`` /
``"blur"`` as Integrated Gradients' baseline), $\alpha_k \sim U[0, 1)$, $\varepsilon_k \sim \mathcal N(0,
\text{stdevs}^2)$ (0: no noise). Linear in the gradient: every contrast shares the passes. Completeness holds in
expectation (stdevs 0): $E\,\sum\phi = O(x) - E\,O(x')$.

Each image's draws come from a generator seeded with ``seed`` and the image's bytes, so a call is reproducible
whatever the batch and ``internal_batch_size`` (`GradientShap.draws`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor

from ..baselines import baseline as baseline_image
from ..errors import ClassContrastError
from .base import InputMethod, Pass, Recording, check_internal_batch_size, row_chunks
from .smooth import image_generator


def distribution(baselines: str | Tensor, x: Tensor, method: str) -> Tensor:
    """(B or 1, N, C, *S): the baselines of images ``x`` — ``"zeros"`` / ``"blur"`` (one per image, made from it), one
    (C, *S) image, or a (N, C, *S) distribution — a shape that fits nothing is one line naming ``method``."""
    if isinstance(baselines, str):
        return baseline_image(x, baselines)[:, None]
    d = baselines.to(device=x.device, dtype=x.dtype)
    d = d[None] if d.ndim == x.ndim - 1 else d
    if d.ndim != x.ndim or tuple(d.shape[1:]) != tuple(x.shape[1:]):
        raise ClassContrastError(f"{method}: baselines of shape {tuple(baselines.shape)}, the images "
                                 f"{tuple(x.shape[1:])} (give (C, *S) or (N, C, *S))")
    return d[None]


class GradientShap(InputMethod):
    r"""GradientSHAP: $\phi = \frac1n\sum_k (\tilde x_k - x'_k) \odot \nabla_x O(x'_k + \alpha_k(\tilde x_k -
    x'_k))$ (module docstring), summed over colour channels unless ``keep_channels``."""

    option_help: ClassVar[dict[str, str]] = {
        "baselines": "zeros | blur, or a tensor (N, C, *S) of baselines drawn from", "samples": "draws per image",
        "stdevs": "the input noise's standard deviation (0: none)", "seed": "random seed"}

    name = "gradient_shap"
    aliases = ("gradientshap", "expected_gradients")
    multipass = True

    def __init__(self, baselines: str | Tensor = "zeros", samples: int = 5, stdevs: float = 0.0, seed: int = 0,
                 keep_channels: bool = False, internal_batch_size: int | None = None) -> None:
        if isinstance(baselines, str) and baselines not in ("zeros", "blur"):
            raise ClassContrastError(f"unknown baselines {baselines!r}; choose zeros, blur or give a tensor")
        if isinstance(baselines, Tensor) and (baselines.numel() == 0 or not bool(torch.isfinite(baselines).all())):
            raise ClassContrastError("gradient_shap: the baselines are empty or hold NaN or infinite values")
        if samples < 1:
            raise ClassContrastError(f"gradient_shap needs at least 1 sample, got {samples}")
        if stdevs < 0:
            raise ClassContrastError(f"stdevs must be ≥ 0, got {stdevs}")
        self.baselines, self.samples, self.stdevs, self.seed = baselines, int(samples), float(stdevs), int(seed)
        self.keep_channels = keep_channels
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def options(self) -> dict[str, object]:
        base = self.baselines if isinstance(self.baselines, str) else f"tensor{tuple(self.baselines.shape)}"
        return {"baselines": base, "samples": self.samples, "stdevs": self.stdevs, "seed": self.seed,
                "keep_channels": self.keep_channels, "internal_batch_size": self.internal_batch_size}

    def distribution(self, x: Tensor) -> Tensor:
        """(B or 1, N, C, *S): the baselines each image draws from."""
        return distribution(self.baselines, x, self.name)

    def draws(self, x: Tensor, image: int, n_baselines: int) -> tuple[Tensor, Tensor, Tensor]:
        """Image ``image``'s draws: baseline indices (n,), path points α (n,) in float64 and noise (n, C, *S) in the
        images' dtype, from a CPU generator seeded with ``seed`` and the image's bytes."""
        g = image_generator(x, image, self.seed)
        index = torch.randint(n_baselines, (self.samples,), generator=g)
        alpha = torch.rand(self.samples, generator=g, dtype=torch.float64)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        noise = torch.randn((self.samples, *x.shape[1:]), generator=g, dtype=dtype) * self.stdevs
        return index, alpha, noise.to(device=x.device, dtype=x.dtype)

    def passes(self, x: Tensor) -> Iterator[Pass]:
        n, b = self.samples, x.shape[0]
        d = self.distribution(x).detach()
        cache: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for rows in row_chunks(b * n, self.internal_batch_size, x.device):
            points, deltas, images = [], [], rows // n
            for row in rows.tolist():  # (host integers)
                i, k = divmod(row, n)
                if i not in cache:
                    cache = {i: self.draws(x, i, d.shape[1])}
                index, alpha, noise = cache[i]
                start = d[i if d.shape[0] > 1 else 0, int(index[k])]
                delta = x[i].detach() + noise[k] - start
                points.append(start + float(alpha[k]) * delta)
                deltas.append(delta)
            yield Pass(torch.stack(points), images, {"delta": torch.stack(deltas)})

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        return self.channels(grads[0] * rec.state["delta"][None] / self.samples)


__all__ = ["GradientShap", "distribution"]
