"""Finding the layer an explanation reads: by name, by module, or automatically."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from torch import Tensor, nn

from .errors import ClassContrastError, did_you_mean
from .state import frozen_eval

_POOLING = (
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
)
_PASS_THROUGH = (nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_FEATURE_PARTS = ("backbone", "encoder")  # where a segmenter's or detector's features are
_HEAD_PARTS = {"decode_head", "auxiliary_head", "segmentation_head", "aux_classifier"}  # class scores, not features
# model -> {(input shape, dtype, device type, module structure): layer name}, a few input shapes per model
_default_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], str]] = weakref.WeakKeyDictionary()
_CACHE_SIZES = 8
_cache_lock = threading.Lock()


class PiecewiseModel(nn.Module):
    """A model that runs its network once per piece of its input and blends the outputs (a sliding window over a
    volume): its layers give no one output per input, so the methods that read a layer refuse it (a method's
    ``windows``). A model that runs so derives from this class."""


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``model`` ('' for the model itself)."""
    for name, m in model.named_modules():
        if m is module:
            return str(name)
    raise ClassContrastError(f"the given layer {type(module).__name__} is not a module of this model")


def find_module(model: nn.Module, layer: str | nn.Module, x: Tensor | None = None) -> tuple[str, nn.Module]:
    """Resolve ``layer`` (a dotted module name such as ``"features.40"`` or a module) to (name, module).

    An unknown name is a one-line error with the nearest names and, given an input ``x``, the model's
    last spatial layers (the candidates for a CAM method).
    """
    if isinstance(layer, nn.Module):
        return module_name(model, layer), layer
    if not isinstance(layer, str):
        raise ClassContrastError(f"layer must be a module name or a module, got {layer!r}")
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return layer, modules[layer]
    for prefix in _WRAPPER_PREFIXES:  # a name written for the wrapped model (DataParallel, torch.compile)
        if layer.startswith(prefix) and layer.removeprefix(prefix) in modules:
            return find_module(model, layer.removeprefix(prefix))
    hint = did_you_mean(layer, [n for n in modules if n])
    if x is not None:
        try:
            last = spatial_layers(model, x)[-4:]
        except (ClassContrastError, RuntimeError):
            last = []
        if last:
            hint += f" (the last spatial layers: {', '.join(last)})"
    raise ClassContrastError(f"unknown layer {layer!r} for {type(model).__name__}{hint}")


def _is_pooling(module: nn.Module) -> bool:
    return isinstance(module, _POOLING) or "pool" in type(module).__name__.lower()


def default_feature_layer(model: nn.Module, x: Tensor) -> str:
    """The last spatial feature map of a CNN: the module that finishes last in the forward pass with an
    output of the input's number of dimensions — (B, C, H, W) for images, (B, C, T, H, W) for clips and
    volumes — of more than one position, **that depends on the input**, and that is not a pooling, dropout, identity
    or flatten output (nor a module returning a pooling's output, nor the model's own output: a segmenter's class
    scores, e.g. a U-Net whose last block returns them).

    For a VGG-16 this is the last ReLU (``features.29``, ``features.42`` with batch norm at 224²), for ResNets
    ``layer4``, for EfficientNets ``bn2``. A model with a ``backbone`` or ``encoder`` (segmenters, detectors: FCN,
    DeepLabV3) gets the last one inside it — for a feature pyramid (``backbone.body`` and ``backbone.fpn``) the
    body's last map, which
    every pyramid level depends on (a detection pooled from another level has no gradient at one level) —
    and a segmentation head's modules (``decode_head``, as a Segformer's) are left out — their
    outputs are class scores, not features. A module whose output does not depend on the image (a vision
    transformer detector's position-embedding ``interpolation``) is never chosen.

    Found with one forward pass of the first image. The answer depends on the input's size (a small image
    makes the deepest maps 1×1) and on the model's modules, so it is remembered per model for each input
    shape, dtype and device and each module structure: a call's layer never depends on the calls before it.
    """
    from .units.base import feature_layer

    own = feature_layer(model)  # a kind of unit whose models the rule would miss (a map inside a detection head)
    if own is not None:
        return own
    key = (tuple(x.shape[1:]), x.dtype, x.device.type, _structure(model))
    with _cache_lock:
        known = _default_cache.get(model, {})
        if key in known:
            return known[key]
    names = spatial_layers(model, x)
    for part in _FEATURE_PARTS:
        inside = [n for n in names if n == part or n.startswith(part + ".") or f".{part}." in f".{n}."]
        if inside:
            names = inside
            body = [n for n in names if n.startswith(part + ".body.")]
            if body:  # an FPN: the body's last map feeds every level (one level's map misses other boxes)
                names = body
            break
    else:  # no backbone: leave out a segmentation head's modules (Segformer's decode_head), if others exist
        features = [n for n in names if not set(n.split(".")) & _HEAD_PARTS]
        names = features or names
    if not names:
        raise ClassContrastError(
            f"{type(model).__name__} has no spatial feature map like its input's that depends on the input at this "
            f"input size {tuple(x.shape[2:])} for a CAM method; pass layer=..., use method='gradient' "
            "(or, for a Vision Transformer, 'vit_gradcam')"
        )
    with _cache_lock:
        known = _default_cache.setdefault(model, {})
        if len(known) >= _CACHE_SIZES:
            known.pop(next(iter(known)))
        known[key] = names[-1]
    return names[-1]


def _structure(model: nn.Module) -> tuple[tuple[str, int, str], ...]:
    """What the automatic layer depends on in the model besides the input: its modules, their types and
    settings (a replaced block or a changed stride makes another answer)."""
    return tuple((name, id(m), m.extra_repr()) for name, m in model.named_modules())


def spatial_layers(model: nn.Module, x: Tensor) -> list[str]:
    """The modules whose output is a spatial feature map like the input's — (B, C, H, W) for images,
    (B, C, T, H, W) for clips and volumes: the input's batch, no spatial side larger than the input's (a
    transformer's channels-last tokens (B, T, H, W, C) are not one, nor the tensors inside an attention
    module) — of more than one position that depends on the input, in the
    order they finish in one forward pass of ``x[:1]``, without pooling, dropout, identity and flatten
    outputs (nor modules returning a pooling's output, nor the modules whose output is the model's own output:
    a segmenter's last modules return its class scores, which are not features).

    The pass runs with the parameters frozen and the image requiring gradients, so an output depends on the
    image exactly when it requires gradients. Every output is held until the pass ends, so outputs are
    told apart by identity (a freed tensor's ``id`` is reused by later tensors)."""
    order: list[tuple[str, Tensor]] = []
    pooled: list[Tensor] = []
    handles = []
    owner = threading.get_ident()

    def hook(name: str) -> Callable[[nn.Module, object, object], None]:
        def fn(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, Tensor) and threading.get_ident() == owner:
                if _is_pooling(module):
                    pooled.append(output)
                elif (not isinstance(module, _PASS_THROUGH) and output.ndim == x.ndim and output.shape[0] == 1
                      and output[0, 0].numel() > 1
                      and all(o <= i for o, i in zip(output.shape[2:], x.shape[2:], strict=True))):
                    order.append((name, output))

        return fn

    attention = [n for n, m in model.named_modules() if n and (isinstance(m, nn.MultiheadAttention)
                                                               or "attention" in type(m).__name__.lower())]
    try:
        for name, m in model.named_modules():
            if name and not any(name.startswith(a + ".") for a in attention):  # attention's inner tensors: no maps
                handles.append(m.register_forward_hook(hook(name)))
        with frozen_eval(model):
            probe = x[:1].detach().requires_grad_(True)
            final = _outputs(model(probe))
    finally:
        for h in handles:
            h.remove()
    return [name for name, out in order if out.requires_grad and not any(out is p for p in pooled)
            and not any(out is f for f in final)]


def _outputs(raw: object) -> list[Tensor]:
    """The tensors a model returns (its logits: a segmenter's last modules return them, and class scores are
    not features)."""
    if isinstance(raw, Tensor):
        return [raw]
    if isinstance(raw, dict):
        return [v for v in raw.values() if isinstance(v, Tensor)]
    if isinstance(raw, (list, tuple)):
        return [v for v in raw if isinstance(v, Tensor)]
    return [v for v in vars(raw).values() if isinstance(v, Tensor)] if hasattr(raw, "__dict__") else []
