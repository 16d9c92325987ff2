"""``timm:<arch>``: timm's image classifiers."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ..errors import ClassContrastError, did_you_mean
from . import hub
from .architectures import register_attention
from .bundle import ModelBundle, Normalize
from .preprocess import Preprocess
from .registry import Family, register_family
from .weights import load_into as _load_into
from .weights import load_state
from .zoo import _offline_help, imagenet_categories

if TYPE_CHECKING:
    from torch import nn

    from ..hooks import OutputRecorder


def _timm(arch: str, weights: Any, num_classes: int | None) -> ModelBundle:
    import timm
    from timm.data import resolve_data_config

    if not timm.is_model(arch):
        raise ClassContrastError(f"unknown timm architecture {arch!r}{did_you_mean(arch, timm.list_models())}")
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if weights == "DEFAULT":
        with hub.offline_unless_reachable():
            try:
                model = timm.create_model(arch, pretrained=True, **kwargs)
            except Exception as e:
                raise _offline_help(f"timm:{arch}", type(e).__name__) from e
    else:
        model = timm.create_model(arch, pretrained=False, **kwargs)
        if weights is not None:
            _load_into(model, load_state(weights), str(weights))
    cfg = resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    resize = round(size / cfg.get("crop_pct", 0.875))
    n = model.num_classes
    categories = imagenet_categories() if n == 1000 else [f"class {i}" for i in range(n)]
    return ModelBundle(
        model.eval(), Preprocess(resize, size, cfg.get("interpolation", "bicubic")),
        Normalize(cfg["mean"], cfg["std"]), categories, f"timm:{arch}",
    )


register_family(Family(
    order=20,
    name="timm", prefix="timm", spec="timm:<arch>", summary="timm's image classifiers (weights download when online)",
    load=_timm))


def _timm_attention(model: nn.Module, recorder: OutputRecorder, stack: ExitStack) -> int:
    """timm's ``Attention`` layers (ViT, DeiT, ...): the fused kernel is switched off for the call and ``attn_drop``
    (the identity in eval) records its input, the post-softmax probabilities; how many layers were switched."""
    from torch import nn

    found = 0
    for module in model.modules():
        if hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module):
            saved = module.fused_attn
            module.fused_attn = False
            stack.callback(setattr, module, "fused_attn", saved)
            recorder.attach(module.attn_drop, stack)
            found += 1
    return found


register_attention("timm", _timm_attention)
