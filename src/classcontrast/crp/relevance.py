r"""Contrastive concept relevance: which of a layer's channels make it t rather than the others, and where.

Concept Relevance Propagation (Achtibat et al. 2023; zennit-crp) treats each channel $c$ of a layer as a concept.
Here its relevance is taken under a contrast: the backward pass starts from the contrast's output gradient
$\partial O/\partial y$ (as the `lrp` method does), so every identity of the paper holds channel by channel —
the weighted relevance of a channel is its relevance for t minus the softmax-weighted relevance for the others.

- ``method="lrp"``: $R_c = \sum_{s} R_{c,s}$, the relevance reaching channel c of the layer's output through
  zennit's rules (summed over positions s); the channel's conditional heatmap is the relevance at the input when
  only channel c's relevance is kept at the layer (CRP's condition), summed over colour channels. The heatmaps of
  all channels sum to the `lrp` map.
- ``method="gradcam"``: $R_c = \sum_s w_c A_{c,s}$ with $w_c$ the spatial mean of $\partial O/\partial A_c$; the
  heatmap is $w_c A_c$ at the layer, upsampled as the maps are. The heatmaps of all channels sum to the GradCAM
  map.

Cost: the channels' relevances of every contrast and target come from one backward pass to the layer per
independent direction of their output gradients (a basis, as for the maps: top-3 targets × original, mean, max and
weighted span 5 directions; every objective on its own for LRP composites that are not linear), and (LRP) each shown
concept's heatmap from one pass from the layer to the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..explanation import upsample
from ..hooks import OutputRecorder
from ..layers import find_module, module_name
from ..methods.cam import channel_terms
from ..outputs import logits_of
from ..state import frozen_eval
from ..targets import resolve_targets
from .result import Concepts

METHODS = ("lrp", "gradcam")


def concepts(model: Any, x: Tensor, contrast: Any = "weighted", targets: Any = None, *, layer: str | nn.Module,
             method: str = "lrp", top: int = 5, channels: Sequence[int] | None = None, heatmaps: bool = True,
             composite: Any = "epsilon_plus_flat", canonizer: Any = "auto", head: str | None = None
             ) -> Concepts | dict[str, Concepts]:
    """The concepts (channels of ``layer``) that make each target win under ``contrast`` — their relevances
    (B, K, C), the ``top`` channels by relevance and their conditional heatmaps (B, K, top, *S) — see the module
    docstring. ``contrast`` as for `classcontrast.explain` (a list: a dict keyed like `Explanations`); ``targets``
    as there (class names with a ModelBundle); ``channels``: these channels' heatmaps (the same for every image and
    target) instead of the ``top`` most relevant; ``heatmaps=False``: the relevances only (no pass to the input;
    ``heatmaps`` then has no channel); ``composite`` and ``canonizer`` as for the ``lrp`` method."""
    from ..engine import asked_contrasts, call_setup

    if method not in METHODS:
        raise ClassContrastError(f"concepts: method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ClassContrastError(f"concepts: top must be a whole number of at least 1, got {top!r}")
    if channels is not None and (not len(channels) or not all(isinstance(c, int) and not isinstance(c, bool)
                                                              and c >= 0 for c in channels)):
        raise ClassContrastError(f"concepts: channels must be channel indices, got {channels!r}")
    net, x, categories, targets, head = call_setup(model, x, targets, head)
    many, asked = asked_contrasts(contrast, categories)
    name = layer if isinstance(layer, str) else module_name(net, layer)
    with frozen_eval(net):
        out = _relevances(net, x, asked, targets, name, (method, heatmaps), channels or top, (composite, canonizer),
                          head)
    result = {c.key(categories): Concepts(categories=categories, contrast=c.key(categories), **fields)
              for c, fields in zip(asked, out, strict=True)}
    return result if many else next(iter(result.values()))


def _relevances(net: nn.Module, x: Tensor, asked: Sequence[Any], targets: Any, layer: str, how: tuple[str, bool],
                top: int | Sequence[int], lrp: tuple[Any, Any], head: str) -> list[dict[str, Any]]:
    """Per contrast, the fields of its `Concepts`: one forward pass, the backward passes of the module docstring."""
    from ..methods.lrp import LRP

    method, heatmaps = how
    if x.is_inference():  # a tensor made under inference_mode: a normal copy autograd can use
        x = x.clone()
    rule = LRP(composite=lrp[0], canonizer=lrp[1]) if method == "lrp" else None
    run = rule.model_for_call(net) if rule is not None else net
    with ExitStack() as stack:
        xin = rule.record(run, x, stack).input if rule is not None else x
        name, module = find_module(run, layer, x)
        recorder = OutputRecorder(module, name, stack)  # after zennit's hooks: it records the rules' view
        y = logits_of(run(xin))
        if not isinstance(y, Tensor) or y.ndim != 2:
            raise ClassContrastError(f"concepts explain classifiers: the model's output is not (B, C) logits "
                                     f"({type(y).__name__})")
        a = recorder.single()
        if a.ndim != x.ndim or a.shape[0] != x.shape[0]:
            raise ClassContrastError(f"layer '{name}' outputs shape {tuple(a.shape)}: concepts need a feature map "
                                     "(B, C, *spatial) like the input's; choose a convolutional layer")
        t = resolve_targets(targets, y.detach(), head)
        if not isinstance(top, int) and max(top) >= a.shape[1]:
            raise ClassContrastError(f"concepts: layer '{name}' has {a.shape[1]} channels, asked for channel "
                                     f"{max(top)}")
        contrasts = [c.for_head(head) for c in asked]
        k = t.shape[1]
        # ∂O/∂y (B, C) of every contrast and target: the initial relevances, through a shared basis when linear
        cots = torch.stack([c.grad(y.detach(), t[:, j]) for c in contrasts for j in range(k)])
        g = _to_layer(y, a, cots, rule is None or rule.linear)
        return [{**_one(c, y, g[i * k:(i + 1) * k], a, xin, t, (method, heatmaps), top, name), "logits": y.detach()}
                for i, c in enumerate(contrasts)]


def _to_layer(y: Tensor, a: Tensor, cotangents: Tensor, linear: bool) -> Tensor:
    """(R, B, C, *s): each cotangent back-propagated to the layer — for a propagation linear in it (GradCAM's
    gradient, LRP's linear composites), only a basis of them (`classcontrast.backprop.low_rank`), combined."""
    from ..backprop import combine, low_rank

    reduced = low_rank(cotangents) if linear else None
    directions = cotangents if reduced is None else reduced[0]
    grads = torch.stack([torch.autograd.grad(y, a, d.to(y.dtype), retain_graph=True)[0] for d in directions])
    return grads if reduced is None else combine(reduced[1], grads)


def _one(contrast: Any, y: Tensor, grads: Tensor, a: Tensor, xin: Tensor, t: Tensor, how: tuple[str, bool],
         top: int | Sequence[int], layer: str) -> dict[str, Any]:
    """The fields of one contrast's `Concepts` from its targets' gradients at the layer ``grads`` (K, B, C, *s): the
    channels' relevances, then the heatmaps of the ``top`` most relevant channels (or of the channels ``top``
    lists)."""
    b, k = t.shape
    method, heatmaps = how
    rel, heat, chosen, scores = [], [], [], []
    for j in range(k):
        scores.append(contrast.score(y.detach(), t[:, j]))
        g = grads[j]
        # LRP: the relevance reaching each unit of the layer; GradCAM: its terms w_c A_c
        per_position = g if method == "lrp" else channel_terms(g.flatten(2).mean(-1), a.detach())
        r = per_position.flatten(2).sum(-1)  # (B, C)
        if isinstance(top, int):
            order = r.topk(min(top, r.shape[1]), dim=1).indices  # (B, top)
        else:
            order = torch.tensor(list(top), device=r.device).expand(b, len(top))
        rel.append(r)
        chosen.append(order)
        heat.append(_heatmaps(per_position, order, a, xin, method) if heatmaps else
                    xin.new_zeros((b, 0, *xin.shape[2:])))
    size = tuple(xin.shape[2:])
    maps = torch.stack(heat, 1)  # (B, K, top, *S) or at the layer's size
    if method == "gradcam" and heatmaps:
        maps = upsample(maps.flatten(1, 2), size).reshape(b, k, -1, *size)
    return {"relevance": torch.stack(rel, 1).detach(), "channels": torch.stack(chosen, 1), "heatmaps": maps.detach(),
            "targets": t, "scores": torch.stack(scores, 1).detach(), "method": method, "layer": layer}


def _heatmaps(per_position: Tensor, order: Tensor, a: Tensor, xin: Tensor, method: str) -> Tensor:
    """(B, top, *S) conditional heatmaps of the chosen channels: GradCAM's w_c A_c at the layer; LRP's input
    relevance with only channel c's relevance kept at the layer (one backward pass from the layer per channel)."""
    rows = torch.arange(order.shape[0], device=order.device)
    if method == "gradcam":
        return torch.stack([per_position[rows, order[:, i]] for i in range(order.shape[1])], 1)
    out = []
    for i in range(order.shape[1]):
        kept = torch.zeros_like(per_position)
        kept[rows, order[:, i]] = per_position[rows, order[:, i]]
        (r,) = torch.autograd.grad(a, xin, kept, retain_graph=True)
        out.append(r.sum(1))
    return torch.stack(out, 1)


__all__ = ["METHODS", "concepts"]
