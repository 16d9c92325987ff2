r"""ROAD's noisy linear imputation (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022), on torch tensors.

Removed pixels are filled so that each equals the weighted mean of its (up to 8) neighbours, weights
1/6 for the four direct and 1/12 for the four diagonal neighbours (weights of neighbours outside the
image dropped): for every removed pixel i,

$$\Big(\sum_{n \in N(i)} w_n\Big) v_i - \sum_{n \in N(i),\ \text{removed}} w_n v_n
= \sum_{n \in N(i),\ \text{kept}} w_n x_n,$$

a sparse symmetric positive-definite system (as pytorch-grad-cam's ``NoisyLinearImputer``, which solves
it with scipy), solved here by multigrid-preconditioned conjugate gradients on a 3×3 stencil, for every image and
channel of a batch at once, on any device. Then noise of standard deviation ``noise`` is added to the filled pixels.
With no kept pixel the system has no unique solution; the image's channel means are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_KERNEL = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)


def _stencil(z: Tensor) -> Tensor:
    """Σ_n w_n z_n for every pixel of (N, 1, H, W) z (zero outside the image)."""
    return F.conv2d(z, _KERNEL.to(z)[None, None], padding=1)


def _degree(h: int, w: int, like: Tensor) -> Tensor:
    return _stencil(torch.ones(1, 1, h, w, dtype=like.dtype, device=like.device))


def _apply(z: Tensor, u: Tensor, degree: Tensor) -> Tensor:
    """The system's matrix on the unknowns: (deg · z − Σ_n w_n z_n) on unknown pixels (z is 0 elsewhere)."""
    return u * (degree * z - _stencil(z))


def _vcycle(r: Tensor, u: Tensor, sweeps: int = 2, omega: float = 0.8) -> Tensor:
    """One multigrid V-cycle approximating A⁻¹ r: weighted-Jacobi smoothing, the residual averaged onto
    the half-size grid (a coarse cell is unknown only when all its pixels are), the coarse correction
    (times 4: the stencil spans twice the distance) copied back, smoothing again."""
    h, w = r.shape[-2:]
    degree = _degree(h, w, r)
    e = torch.zeros_like(r)

    def smooth(e: Tensor, n: int) -> Tensor:
        for _ in range(n):
            e = e + omega * u * (r - _apply(e, u, degree)) / degree
        return e

    if min(h, w) <= 4:
        return smooth(e, 60)
    e = smooth(e, sweeps)
    coarse_u = -F.max_pool2d(-u, 2, ceil_mode=True)
    coarse_r = 4 * F.avg_pool2d(u * (r - _apply(e, u, degree)), 2, ceil_mode=True) * coarse_u
    correction = F.interpolate(_vcycle(coarse_r, coarse_u, sweeps, omega), scale_factor=2, mode="nearest")
    e = e + u * correction[..., :h, :w]
    return smooth(e, sweeps)


def _solve(known: Tensor, u: Tensor, tol: float, max_iter: int) -> Tensor:
    """The unknowns z (0 on known pixels) of the imputation system, (N, 1, H, W), by conjugate gradients
    preconditioned with a multigrid V-cycle (a handful of iterations whatever the size and shape of the
    holes); ``known`` holds the kept values (0 where unknown), ``u`` is 1 where unknown."""
    degree = _degree(*known.shape[-2:], known)
    rhs = u * _stencil(known)
    z = torch.zeros_like(rhs)
    r = rhs.clone()
    q = _vcycle(r, u)
    p = q.clone()
    rq = (r * q).sum((1, 2, 3))
    tiny = torch.finfo(known.dtype).tiny
    stop = tol**2 * (rhs * rhs).sum((1, 2, 3))
    for _ in range(max_iter):
        ap = _apply(p, u, degree)
        alpha = rq / (p * ap).sum((1, 2, 3)).clamp_min(tiny)
        z = z + alpha.view(-1, 1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1, 1) * ap
        if bool(((r * r).sum((1, 2, 3)) <= stop).all()):
            break
        q = _vcycle(r, u)
        rq_new = (r * q).sum((1, 2, 3))
        p = q + (rq_new / rq.clamp_min(tiny)).view(-1, 1, 1, 1) * p
        rq = rq_new
    return z


def road_impute(x: Tensor, removed: Tensor, noise: float = 0.01, generator: torch.Generator | None = None,
                tol: float = 1e-6, max_iter: int = 5000) -> Tensor:
    """Images ``x`` (B, C, H, W) with the pixels where ``removed`` (B, H, W) is True filled by ROAD's noisy
    linear imputation (solved in float64 to relative residual ``tol``), plus noise of standard deviation
    ``noise`` (from ``generator``) on the filled pixels."""
    b, c, h, w = x.shape
    kept = (~removed)[:, None].to(torch.float64).expand(b, c, h, w).reshape(b * c, 1, h, w)
    known = x.double().reshape(b * c, 1, h, w) * kept
    filled = (known + _solve(known, 1 - kept, tol, max_iter)).reshape(b, c, h, w)
    nothing_kept = removed.flatten(1).all(1)
    if bool(nothing_kept.any()):
        means = x.double().mean((-2, -1), keepdim=True).expand_as(filled)
        filled = torch.where(nothing_kept[:, None, None, None], means, filled)
    if noise > 0:
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(filled.device) * noise
        filled = filled + eps * removed[:, None].to(filled.dtype)
    return filled.to(x.dtype)
