"""Slow, independent reference implementations the fast code is checked against.

Per-class maps are built from the full Jacobian of the logits (one backward pass per class, or one
per copy of the input), then contrasts are formed by their explicit definitions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def layer_jacobian(model: nn.Module, x: Tensor, layer: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """(logits (B, C), activation A (B, K, h, w), dA[s] = ∂y_s/∂A (C, B, K, h, w)) by C backward passes."""
    store: dict[str, Tensor] = {}

    def hook(m: nn.Module, i: object, o: Tensor) -> None:
        store["a"] = o

    h = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            y = model(x)
            a = store["a"]
            grads = [torch.autograd.grad(y[:, s].sum(), a, retain_graph=True)[0] for s in range(y.shape[1])]
    finally:
        h.remove()
    return y.detach(), a.detach(), torch.stack(grads)


def input_jacobian(model: nn.Module, x: Tensor, chunk: int = 250) -> tuple[Tensor, Tensor]:
    """(logits (B, C), ∂y_s/∂x (C, B, 3, H, W)): each class's gradient from its own copy of the image."""
    with torch.no_grad():
        y = model(x)
    c = y.shape[1]
    out = torch.empty((c, *x.shape), dtype=x.dtype)
    for b in range(x.shape[0]):
        for start in range(0, c, chunk):
            n = min(chunk, c - start)
            xs = x[b : b + 1].repeat(n, 1, 1, 1).requires_grad_(True)
            with torch.enable_grad():
                ys = model(xs)
                sel = torch.zeros_like(ys)
                sel[torch.arange(n), torch.arange(start, start + n)] = 1
                out[start : start + n, b] = torch.autograd.grad(ys, xs, sel)[0]
    return y, out


def gradcam_slow(a: Tensor, g: Tensor) -> Tensor:
    """GradCAM with explicit loops over channels: w_k = mean_ij g_k, M = Σ_k w_k A_k. a, g: (K, h, w)."""
    m = torch.zeros(a.shape[1:], dtype=a.dtype)
    for k in range(a.shape[0]):
        m += g[k].mean() * a[k]
    return m


def xgradcam_slow(a: Tensor, g: Tensor, eps: float = 1e-7) -> Tensor:
    """XGradCAM (study variant): w_k = Σ_ij A_kij / (Σ|A_k| + eps) g_kij."""
    m = torch.zeros(a.shape[1:], dtype=a.dtype)
    for k in range(a.shape[0]):
        w = (a[k] / (a[k].abs().sum() + eps) * g[k]).sum()
        m += w * a[k]
    return m


def linear_approx_slow(a: Tensor, g: Tensor) -> Tensor:
    """Σ_k A_k ⊙ g_k."""
    m = torch.zeros(a.shape[1:], dtype=a.dtype)
    for k in range(a.shape[0]):
        m += a[k] * g[k]
    return m


def contrast_slow(phi: Tensor, y: Tensor, t: int, kind: str, foil: int | None = None) -> Tensor:
    """A contrast by its definition from per-class maps phi (C, ...) and logits y (C,) of one image."""
    c = y.shape[0]
    others = [s for s in range(c) if s != t]
    if kind == "original":
        return phi[t]
    if kind == "mean":
        return phi[t] - sum(phi[s] for s in others) / (c - 1)
    if kind == "max":
        s_star = max(others, key=lambda s: float(y[s]))
        return phi[t] - phi[s_star]
    if kind == "weighted":
        z = sum(torch.exp(y[s]) for s in others)
        return phi[t] - sum(torch.exp(y[s]) / z * phi[s] for s in others)
    if kind == "probability":
        p = torch.softmax(y, 0)
        return sum(p[t] * (float(s == t) - p[s]) * phi[s] for s in range(c))
    if kind == "foil":
        assert foil is not None
        return phi[t] - phi[foil]
    raise ValueError(kind)


def relerr(a: Tensor, b: Tensor) -> float:
    """max |a − b| relative to max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def randomize_state(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Every floating-point tensor of the state dict drawn at random (running variances in [0.5, 1.5), the rest
    N(0, 0.2²)): a network whose outputs depend on every weight, for architecture comparisons."""
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5 if "running_var" in key
                        else torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.2)
    return model



def signed_projection(z: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's ``get_2d_projection`` of (B, K, *s) terms with our sign: agreeing with the terms' sum over
    K (theirs is LAPACK's, arbitrary)."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    theirs = get_2d_projection(z.copy())
    return np.stack([t * (1 if (t * zz.sum(0)).sum() >= 0 else -1) for t, zz in zip(theirs, z, strict=True)])
