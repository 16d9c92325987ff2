"""SmoothGrad: the contrast's input gradient averaged over noisy copies of the image."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ClassContrastError
from .base import InputMethod, Pass, Recording, check_internal_batch_size


def image_generator(x: Tensor, image: int, seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` and the bytes of image ``image`` of ``x`` (any dtype, bfloat16 too): an
    image draws the same numbers alone or anywhere in a batch."""
    raw = x[image].detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    digest = hashlib.sha256(raw.numpy().tobytes()).digest()
    return torch.Generator().manual_seed((seed * 1_000_003 + int.from_bytes(digest[:7], "little")) % 2**63)


class SmoothGrad(InputMethod):
    r"""SmoothGrad (Smilkov et al., 2017) of the contrast's objective O:

    $\phi = \frac{1}{n}\sum_{k=1}^{n} \nabla_x O(x + \epsilon_k)$, $\epsilon_k \sim
    \mathcal N(0, \sigma^2)$, σ = ``sigma`` × (max − min of the image), signed, summed over colour channels
    unless ``keep_channels``; SmoothGrad² (``squared``) averages $(\nabla_x O)^2$ instead (not
    linear in the gradient, so its contrast is "back-propagate the scalar"). The contrast is taken at
    every noisy copy (for ``weighted``, α is that copy's softmax over the other classes).

    Each image's noise comes from a generator seeded with ``seed`` and the image itself, one sample after the
    other, so a call is reproducible whatever the batch and ``internal_batch_size`` (noisy copies per forward pass,
    16 unless given: neither the noise nor the passes' memory grows with the number of images or of samples).
    """

    option_help: ClassVar[dict[str, str]] = {
        "samples": "noisy copies", "sigma": "noise std as a fraction of the image's range", "seed": "random seed",
        "squared": "SmoothGrad² (mean of squared gradients)"}

    name = "smoothgrad"
    multipass = True

    def __init__(self, samples: int = 25, sigma: float = 0.15, seed: int = 0, squared: bool = False,
                 keep_channels: bool = False, internal_batch_size: int | None = None) -> None:
        if samples < 1:
            raise ClassContrastError(f"smoothgrad needs at least 1 sample, got {samples}")
        if sigma < 0:
            raise ClassContrastError(f"sigma must be ≥ 0, got {sigma}")
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.squared = squared
        self.keep_channels = keep_channels
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    @property
    def linear(self) -> bool:
        return not self.squared

    def _draws(self, x: Tensor, image: int) -> Iterator[Tensor]:
        """Image ``image``'s noise, one sample (C, *S) at a time in order: seeded by ``seed`` and the image's own
        bytes, so an image gets the same noise alone or anywhere in a batch, whatever ``internal_batch_size``.
        Drawn on the CPU (the same numbers on every device) in float64 for float64 images and in float32 otherwise
        (a float64 draw costs four times as much: 4% of a 16-sample resnet50 call)."""
        g = image_generator(x, image, self.seed)
        scale = self.sigma * float(x[image].max() - x[image].min())
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        for _ in range(self.samples):
            yield torch.randn(tuple(x.shape[1:]), generator=g, dtype=dtype).mul_(scale).to(device=x.device,
                                                                                          dtype=x.dtype)

    def noise(self, x: Tensor, image: int) -> Tensor:
        """All ``samples`` noise draws (n, C, *S) of image ``image`` of the batch ``x`` (the calls draw them one
        internal batch at a time: memory does not grow with ``samples``)."""
        return torch.stack(list(self._draws(x, image)))

    def passes(self, x: Tensor) -> Iterator[Pass]:
        n, step, total = self.samples, self.internal_batch_size, x.shape[0] * self.samples
        draws: dict[int, Iterator[Tensor]] = {}  # each image's noise, drawn as its rows come (rows are in order)
        for first in range(0, total, step):
            last = min(first + step, total)
            eps = []
            for row in range(first, last):  # (host integers: no device sync)
                if row // n not in draws:
                    draws = {row // n: self._draws(x, row // n)}  # an image's rows are consecutive
                eps.append(next(draws[row // n]))
            images = torch.arange(first, last, device=x.device) // n
            yield Pass(x.detach()[images] + torch.stack(eps), images)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        g = grads[0] * grads[0] if self.squared else grads[0]
        return self.channels(g / self.samples)
