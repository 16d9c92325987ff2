"""The engine: one forward pass, one batched backward, any method × any contrasts × K targets."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrasts import Contrast, get_contrast
from .errors import ClassContrastError
from .explanation import Explanation, Explanations
from .methods import METHODS, LayerMethod, Method, get_method
from .state import frozen_eval
from .targets import resolve_targets

ContrastSpec = str | Contrast
_CHUNK = 64  # objectives per batched backward pass


def unwrap_model(model: Any) -> nn.Module:
    """The ``nn.Module`` inside a :class:`~classcontrast.models.ModelBundle` (or the module itself)."""
    net = getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise ClassContrastError(f"expected a torch nn.Module or a ModelBundle, got {type(model).__name__}")
    return net


def check_input(x: Any) -> Tensor:
    """Validate an image batch: a finite floating-point (B, C, H, W) tensor."""
    if not isinstance(x, Tensor):
        raise ClassContrastError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim == 3:
        raise ClassContrastError(f"x has shape {tuple(x.shape)}; add the batch dimension: x[None] or torch.stack")
    if x.ndim != 4:
        raise ClassContrastError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ClassContrastError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise ClassContrastError("x is an empty batch")
    if not torch.isfinite(x).all():
        raise ClassContrastError("x contains NaN or Inf values")
    return x


def vjp(output: Tensor, inputs: list[Tensor], cotangents: Tensor, batched: bool = True) -> list[Tensor]:
    """Vector-Jacobian products of ``output`` (B, C) for R cotangents (R, B, C): gradients (R, ...) for
    each input, with ``torch.autograd.grad`` only (no parameter gradients are ever computed).

    Uses batched backward passes (``is_grads_batched``) in chunks; falls back to one pass per
    cotangent where an operator has no batching rule.
    """
    r = cotangents.shape[0]
    if r == 1:
        gs = torch.autograd.grad(output, inputs, cotangents[0], allow_unused=True)
        return [_zeros_if_none(g, x)[None] for g, x in zip(gs, inputs, strict=True)]
    chunks: list[list[Tensor]] = []
    if batched:
        try:
            for i in range(0, r, _CHUNK):
                gs = torch.autograd.grad(
                    output, inputs, cotangents[i : i + _CHUNK], retain_graph=True,
                    is_grads_batched=True, allow_unused=True,
                )
                n = len(cotangents[i : i + _CHUNK])
                chunks.append([_zeros_if_none(g, x, n) for g, x in zip(gs, inputs, strict=True)])
        except RuntimeError:
            chunks = []
    if not chunks:
        for i in range(r):
            gs = torch.autograd.grad(output, inputs, cotangents[i], retain_graph=i < r - 1, allow_unused=True)
            chunks.append([_zeros_if_none(g, x)[None] for g, x in zip(gs, inputs, strict=True)])
    return [torch.cat([c[j] for c in chunks]) for j in range(len(inputs))]


def _zeros_if_none(g: Tensor | None, x: Tensor, batch: int | None = None) -> Tensor:
    if g is not None:
        return g
    return torch.zeros((batch, *x.shape) if batch else x.shape, dtype=x.dtype, device=x.device)


def explain(
    model: Any,
    x: Tensor,
    method: str | Method = "gradcam",
    contrast: ContrastSpec | Sequence[ContrastSpec] = "weighted",
    targets: Any = None,
    *,
    layer: str | nn.Module | int | None = None,
    relu: bool | None = None,
    batched: bool = True,
    **method_options: Any,
) -> Explanation | Explanations:
    """Explain why ``model`` scores each target class of each image in ``x`` against the others.

    Args:
        model: an ``nn.Module`` returning logits (B, C), or a :class:`~classcontrast.ModelBundle`.
        x: preprocessed images (B, C, H, W), on the model's device, any floating dtype.
        method: ``"gradient"``, ``"gradient_x_input"``, ``"linear_approx"``, ``"gradcam"``,
            ``"xgradcam"``, ``"fullgrad"``, ``"vit_gradcam"``, ``"attention_rollout"`` (or any
            method added with :func:`register_method`), or a :class:`Method`.
        contrast: a name (``"original"``, ``"mean"``, ``"max"``, ``"weighted"``, ``"probability"``),
            a :class:`Contrast` such as ``Foil(s)``, or a list of them (then the result maps each
            contrast's name to its :class:`Explanation`).
        targets: None (top-1), an int, one class per image, (B, K) classes, or ``TopK(k)``.
        layer, relu, **method_options: passed to the method (e.g. ``layer="features.40"``,
            ``keep_channels=True``, ``abs=True``, ``discard_ratio=0.9``). With a ModelBundle and no
            ``layer``, CAM methods use the bundle's own layer when it names one.
        batched: back-propagate all objectives in batched passes (else one pass each).

    Returns:
        An :class:`Explanation` with ``maps`` (B, K, H, W), or :class:`Explanations` for a list of
        contrasts. All contrasts and targets come from ONE forward pass.
    """
    net = unwrap_model(model)
    x = check_input(x)
    if layer is None and getattr(model, "layer", None) and isinstance(method, str) \
            and issubclass(METHODS.get(method.lower(), Method), LayerMethod):
        layer = model.layer  # a ModelBundle's own CAM layer
    m = get_method(method, layer=layer, relu=relu, **method_options)
    many = isinstance(contrast, (list, tuple))
    contrasts = [get_contrast(c) for c in (contrast if many else [contrast])]
    if not contrasts:
        raise ClassContrastError("no contrast given")
    names = [_unique_name(c, contrasts[:i]) for i, c in enumerate(contrasts)]

    with frozen_eval(net):
        with ExitStack() as hooks:
            try:
                rec = m.record(net, x, hooks)
                logits = net(rec.input)
            except (RuntimeError, AssertionError, TypeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ClassContrastError(
                    f"the model failed on an input of shape {tuple(x.shape)} and dtype {x.dtype}: {first}"
                ) from e
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ClassContrastError(f"the model must return logits of shape (B, C), got {shape}")
        m.after_forward(rec)
        t = resolve_targets(targets, logits)
        y = logits.detach()
        k = t.shape[1]
        cot = torch.stack([c.grad(y, t[:, j]) for c in contrasts for j in range(k)])
        grads = vjp(logits, rec.tensors, cot, batched=batched)
        maps = m.compute(rec, grads).detach()

    maps = maps.reshape(len(contrasts), k, *maps.shape[1:]).transpose(1, 2)  # (M, B, K, ...)
    full = upsample(maps.flatten(0, 1), x.shape[-2:]).reshape(*maps.shape[:3], *x.shape[-2:]) \
        if maps.ndim == 5 and maps.shape[-2:] != x.shape[-2:] else maps
    out = Explanations()
    for i, name in enumerate(names):
        out[name] = Explanation(
            maps=full[i], layer_maps=maps[i], targets=t, logits=y, method=m.name,
            contrast=name, layer=rec.layer, options=m.options(),
        )
    return out if many else out[names[0]]


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear upsampling of (N, K, h, w) maps to ``size`` (half-pixel centres, align_corners=False)."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def _unique_name(c: Contrast, before: list[Contrast]) -> str:
    name = c.name
    n = sum(b.name == name for b in before)
    return name if n == 0 else f"{name}_{n + 1}"
