"""Vision Transformer methods: GradCAM on patch tokens and gradient-weighted attention rollout.

Supported out of the box: torchvision's ``VisionTransformer`` (``vit_b_16`` family; blocks
``encoder.layers``) and timm's ViT/DeiT families (blocks ``blocks``), at any input size the model
accepts. Prefix tokens (class, distillation, register) are dropped; patch tokens are laid out on the
patch grid (14×14 for 224/16).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..hooks import OutputRecorder
from ..layers import find_module
from ..text import count
from .base import GradientMethod, Recording
from .cam import gradcam_map


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()


def _is_block_list(container: Any) -> bool:
    return isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) > 0 \
        and any(_is_attention(m) for m in container[0].modules())


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformer blocks in order, as (name, module): timm ``blocks``, torchvision ``encoder.layers``,
    or the first list of modules holding attention (Hugging Face ``vit.layers``, ``deit.layers``, ...)."""
    for path in ("blocks", "encoder.layers", "transformer.blocks", "layers"):
        container: Any = model
        for part in path.split("."):
            container = getattr(container, part, None)
        if _is_block_list(container):
            return [(f"{path}.{n}", m) for n, m in container.named_children()]
    for name, container in model.named_modules():
        if name and _is_block_list(container):
            return [(f"{name}.{n}", m) for n, m in container.named_children()]
    raise ClassContrastError(
        f"{type(model).__name__} has no transformer blocks (no list of modules holding attention); "
        "vit methods need a Vision Transformer"
    )


def resolve_block(model: nn.Module, layer: int | str | nn.Module) -> tuple[str, nn.Module]:
    """A block by 0-based index (negative counts from the end) or a module name / module."""
    if isinstance(layer, int) and not isinstance(layer, bool):
        blocks = transformer_blocks(model)
        if not -len(blocks) <= layer < len(blocks):
            raise ClassContrastError(
                f"block index {layer} is out of range for a transformer with {count(len(blocks), 'block')} "
                f"(use 0..{len(blocks) - 1}, or negative indices from the end)"
            )
        return blocks[layer]
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        return resolve_block(model, int(layer))
    if isinstance(layer, bool):
        raise ClassContrastError(f"a transformer block is an index or a module name, not {layer!r}")
    return find_module(model, layer)


def _images_only(x: Tensor) -> None:
    """The Vision Transformer methods lay tokens out on a 2-D patch grid: other inputs are one line."""
    if x.ndim != 4:
        raise ClassContrastError(f"the Vision Transformer methods explain images (B, C, H, W) on a 2-D patch grid; "
                                 f"this input has shape {tuple(x.shape)}: use gradient, integrated_gradients or "
                                 "smoothgrad")


def _sequence_layout(model: nn.Module, x: Tensor) -> tuple[Callable[[Tensor], Tensor], int, int] | None:
    """For a model whose image tower works on the images' patches as one sequence in its own order (it offers
    ``tokens_on_grid``): (a function laying tokens (..., B·N, D) out as (..., B, N, D) in raster order, grid
    height, grid width); None for every other model."""
    layout = getattr(model, "tokens_on_grid", None)
    return layout(x) if layout is not None else None


def patch_grid(model: nn.Module, x: Tensor, n_tokens: int) -> tuple[int, int, int]:
    """(prefix tokens, grid height, grid width) for a token sequence of length ``n_tokens``."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None) or getattr(model, "patch_size", None) \
        or getattr(getattr(model, "config", None), "patch_size", None)  # timm, torchvision, Hugging Face
    _images_only(x)
    h, w = x.shape[-2:]
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        gh, gw = h // ph, w // pw
    else:  # fall back on the aspect ratio of the input
        n = n_tokens - int(getattr(model, "num_prefix_tokens", 1))
        gh = round(math.sqrt(n * h / w))
        gw = n // max(gh, 1)
    prefix = n_tokens - gh * gw
    if prefix < 0:
        raise ClassContrastError(f"{count(n_tokens, 'token')} do not fit a {gh}×{gw} patch grid")
    return prefix, gh, gw


class VitGradCAM(GradientMethod):
    r"""GradCAM on the patch tokens of a transformer block: tokens (B, T, D) minus the prefix
    tokens, reshaped to (B, D, h, w); $w_d = \frac{1}{hw}\sum_{ij}\partial O/\partial A^d_{ij}$,
    $M = \sum_d w_d A^d$. Signed by default (``relu=True`` gives the standard version).

    ``layer``: block index (0-based; negative from the end), module name or module; the default
    ``-2`` is the output of the second-to-last block, i.e. the input of the last one. (The last
    block's patch tokens reach a class-token head only through the final norm, so their gradient is
    zero there.) Linear in the gradient: every contrast identity holds.
    """

    option_help: ClassVar[dict[str, str]] = {"layer": "the ViT block (an index or a module name)",
                                             "relu": "the textbook ReLU on the map"}

    name = "vit_gradcam"

    def __init__(self, layer: int | str | nn.Module | None = None, relu: bool = False) -> None:
        self.layer = -2 if layer is None else layer
        self.relu = relu

    @property
    def linear(self) -> bool:
        return not self.relu

    def options(self) -> dict[str, object]:
        layer = self.layer if not isinstance(self.layer, nn.Module) else type(self.layer).__name__
        return {"layer": layer, "relu": self.relu}

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        _images_only(x)
        name, module = resolve_block(model, self.layer)
        return Recording(input=x, layer=name, state={"recorder": OutputRecorder(module, name, stack), "model": model})

    def after_forward(self, rec: Recording) -> None:
        tokens = rec.state["recorder"].single()
        layout = _sequence_layout(rec.state["model"], rec.input)
        if layout is not None:  # a tower on one patch sequence of all images (Qwen2-VL) or on tiles (Idefics3)
            arrange, gh, gw = layout
            rec.state.pop("model")
            rec.state.update(arrange=arrange, grid=(0, gh, gw))
            rec.tensors = [tokens]
            return
        if tokens.ndim != 3:
            raise ClassContrastError(
                f"layer '{rec.layer}' outputs shape {tuple(tokens.shape)}, not (B, tokens, dim)"
            )
        rec.state["grid"] = patch_grid(rec.state.pop("model"), rec.input, tokens.shape[1])
        rec.tensors = [tokens]

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        prefix, gh, gw = rec.state["grid"]

        def grid(t: Tensor) -> Tensor:  # (..., T, D) -> (..., D, gh, gw)
            patches = rec.state["arrange"](t) if "arrange" in rec.state else t[..., prefix:, :]
            return patches.reshape(*patches.shape[:-2], gh, gw, patches.shape[-1]).movedim(-1, -3)

        m = gradcam_map(grid(rec.tensors[0].detach()), grid(grads[0]))
        return m.clamp_min(0) if self.relu else m


def _explicit_self_attention(mha: nn.MultiheadAttention, capture: OutputRecorder, query: Tensor, key: Tensor,
                             value: Tensor, key_padding_mask: Tensor | None = None, need_weights: bool = True,
                             attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                             is_causal: bool = False) -> tuple[Tensor, None]:
    """``nn.MultiheadAttention`` self-attention written out, with the post-softmax probabilities
    recorded (torchvision calls it with ``need_weights=False`` and a fused kernel)."""
    if key_padding_mask is not None or attn_mask is not None or is_causal or not mha._qkv_same_embed_dim \
            or mha.bias_k is not None or not (query is key is value):
        raise ClassContrastError("attention capture supports plain self-attention without masks")
    x = query if mha.batch_first else query.transpose(0, 1)
    b, n, e = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, h, e // h).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax((q * (e // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)
    attn = capture.capture(attn)
    out = (attn @ v).transpose(1, 2).reshape(b, n, e)
    out = F.linear(out, mha.out_proj.weight, mha.out_proj.bias)
    return (out if mha.batch_first else out.transpose(0, 1)), None


def _restore_attribute(obj: object, name: str, _missing: object = object()) -> Any:
    """A callback putting back ``obj.__dict__[name]`` as it is now (or removing it if absent)."""
    saved = obj.__dict__.get(name, _missing)

    def restore() -> None:
        if saved is _missing:
            obj.__dict__.pop(name, None)
        else:
            obj.__dict__[name] = saved

    return restore


def _capture_multihead(model: nn.Module, recorder: OutputRecorder, stack: ExitStack) -> int:
    """Each ``nn.MultiheadAttention`` of ``model`` runs `_explicit_self_attention` for the calling thread until the
    stack closes (other threads get the module's own forward); how many there are."""
    found = 0
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            original = module.forward

            def forward(*a: Any, _m: nn.MultiheadAttention = module, _orig: Any = original, **k: Any) -> Any:
                return _explicit_self_attention(_m, recorder, *a, **k) if recorder.mine() else _orig(*a, **k)

            stack.callback(_restore_attribute(module, "forward"))
            module.forward = forward  # type: ignore[method-assign]
            found += 1
    return found


def capture_attention(model: nn.Module, stack: ExitStack) -> OutputRecorder:
    """Record every block's post-softmax attention (B, heads, T, T) during the next forward pass,
    without changing the model's outputs (up to floating-point rounding of the unfused kernel).

    ``nn.MultiheadAttention`` runs an explicit implementation for the call; the attention layers of the model
    families whose adapters register how (`classcontrast.models.architectures`: timm's ``Attention``, whose fused
    kernel is switched off and whose ``attn_drop`` records its input; Hugging Face's ViT, DeiT, BEiT, DINOv2...,
    switched to an eager implementation that records the probabilities) are switched by their adapter.
    Everything is undone when ``stack`` closes.
    """
    from ..models.architectures import capture_attention_layers

    recorder = OutputRecorder(None, "attention", None)
    found = capture_attention_layers(model, recorder, stack) + _capture_multihead(model, recorder, stack)
    if not found:
        raise ClassContrastError(
            f"{type(model).__name__} has no attention modules to capture (nn.MultiheadAttention, or the attention "
            "layers of a family whose adapter records them); attention_rollout needs a Vision Transformer"
        )
    return recorder


class AttentionRollout(GradientMethod):
    r"""Gradient-weighted attention rollout (Gildenblat 2020; Chefer et al.), with the reference code's
    bugs fixed (each attention paired with its own gradient, true row normalisation).

    Per block $l$: $F_l = \operatorname{mean}_{heads}(A_l \odot \partial O/\partial A_l)$
    (ReLU'd with ``relu=True``, the standard variant; signed otherwise), the lowest ``discard_ratio``
    fraction of entries set to 0, $\hat A_l = (F_l + I)/2$ with rows normalised to sum 1,
    $R = \hat A_L\cdots\hat A_1$; the map is the class-token row of $R$ over the patches.

    Not linear in the gradient (rollout multiplies gradient-weighted matrices), so its contrastive
    version is "back-propagate the contrast's scalar"; the weighted/probability identities of the
    linear methods do not hold for it.
    """

    option_help: ClassVar[dict[str, str]] = {"discard_ratio": "drop this fraction of the weakest links",
                                             "relu": "the textbook ReLU on the map"}

    name = "attention_rollout"

    @property
    def linear(self) -> bool:
        return False

    def __init__(self, relu: bool = False, discard_ratio: float = 0.0) -> None:
        if not 0.0 <= discard_ratio < 1.0:
            raise ClassContrastError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
        self.relu = relu
        self.discard_ratio = discard_ratio

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        _images_only(x)
        return Recording(input=x, layer="attention", state={"recorder": capture_attention(model, stack),
                                                             "model": model})

    def after_forward(self, rec: Recording) -> None:
        if _sequence_layout(rec.state["model"], rec.input) is not None:
            raise ClassContrastError("attention rollout needs a tower whose tokens are one image's patches behind a "
                                     "class token; this model's tower has none (use method='vit_gradcam')")
        attns = rec.state["recorder"].outputs
        if not attns:
            raise ClassContrastError("no attention was recorded during the forward pass")
        rec.state["grid"] = patch_grid(rec.state.pop("model"), rec.input, attns[0].shape[-1])
        rec.tensors = list(attns)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        prefix, gh, gw = rec.state["grid"]
        n = rec.tensors[0].shape[-1]
        eye = torch.eye(n, dtype=grads[0].dtype, device=grads[0].device)
        rollout = eye.expand(*grads[0].shape[:2], n, n)
        for a, g in zip(rec.tensors, grads, strict=True):
            f = (a.detach() * g).mean(2)  # (R, B, T, T)
            if self.relu:
                f = f.clamp_min(0)
            if self.discard_ratio > 0:
                flat = f.flatten(2)
                k = int(flat.shape[-1] * self.discard_ratio)
                idx = flat.topk(k, dim=-1, largest=False).indices
                f = flat.scatter(-1, idx, 0.0).reshape(f.shape)
            step = (f + eye) / 2
            step = step / step.sum(-1, keepdim=True)
            rollout = step @ rollout
        return rollout[..., 0, prefix:].reshape(*rollout.shape[:2], gh, gw)
