"""SmoothGrad: the contrast's input gradient averaged over noisy copies of the image."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from .base import Method, Pass, Recording


class SmoothGrad(Method):
    r"""SmoothGrad (Smilkov et al., 2017) of the contrast's objective O:

    :math:`\phi = \frac{1}{n}\sum_{k=1}^{n} \nabla_x O(x + \epsilon_k)`, :math:`\epsilon_k \sim
    \mathcal N(0, \sigma^2)`, σ = ``sigma`` × (max − min of the image), signed, summed over colour channels
    unless ``keep_channels``; SmoothGrad² (``squared``) averages :math:`(\nabla_x O)^2` instead (not
    linear in the gradient, so its contrast is "back-propagate the scalar"). The contrast is taken at
    every noisy copy (for ``weighted``, α is that copy's softmax over the other classes).

    Each image's noise comes from a generator seeded with ``seed`` and the image itself, so a call is
    reproducible whatever the batch and ``internal_batch_size`` (rows per forward pass; None: all copies
    of all images at once).
    """

    name = "smoothgrad"
    multipass = True

    def __init__(self, samples: int = 25, sigma: float = 0.15, seed: int = 0, squared: bool = False,
                 keep_channels: bool = False, internal_batch_size: int | None = None) -> None:
        if int(samples) < 1:
            raise ClassContrastError(f"smoothgrad needs at least 1 sample, got {samples}")
        if sigma < 0:
            raise ClassContrastError(f"sigma must be ≥ 0, got {sigma}")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ClassContrastError("internal_batch_size must be at least 1")
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.squared = squared
        self.keep_channels = keep_channels
        self.internal_batch_size = internal_batch_size

    @property
    def linear(self) -> bool:
        return not self.squared

    def noise(self, x: Tensor, image: int) -> Tensor:
        """The ``samples`` noise draws (n, C, H, W) for image ``image`` of the batch ``x``: seeded by ``seed``
        and the image's own bytes, so an image gets the same noise alone or anywhere in a batch."""
        digest = hashlib.sha256(x[image].detach().cpu().contiguous().numpy().tobytes()).digest()
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int.from_bytes(digest[:7], "little")) % 2**63)
        scale = self.sigma * float(x[image].max() - x[image].min())
        eps = torch.randn((self.samples, *x.shape[1:]), generator=g, dtype=torch.float64) * scale
        return eps.to(device=x.device, dtype=x.dtype)

    def passes(self, x: Tensor) -> Iterator[Pass]:
        n, b = self.samples, x.shape[0]
        size = self.internal_batch_size or b * n
        cache: dict[int, Tensor] = {}
        for first in range(0, b * n, size):
            rows = torch.arange(first, min(first + size, b * n))
            images = rows // n
            for i in set(images.tolist()) - set(cache):
                cache = {j: v for j, v in cache.items() if j >= min(images.tolist())}
                cache[i] = self.noise(x, i)
            noisy = torch.stack([x[i].detach() + cache[i][k] for i, k in zip(images.tolist(), (rows % n).tolist(),
                                                                             strict=True)])
            yield Pass(noisy, images.to(x.device))

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        xin = x.detach().requires_grad_(True)
        return Recording(input=xin, tensors=[xin])

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        g = grads[0] * grads[0] if self.squared else grads[0]
        a = g / self.samples
        return a if self.keep_channels else a.sum(2)
