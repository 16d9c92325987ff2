"""``torchvision:<arch>``: torchvision's classifiers, segmenters, detectors and video classifiers."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ClassContrastError, did_you_mean
from .architectures import register_canonizers
from .bundle import ModelBundle, Normalize
from .preprocess import Preprocess
from .registry import Family, register_family
from .weights import load_into as _load_into
from .weights import load_state
from .zoo import _IMAGENET_MEAN, _IMAGENET_STD, _offline_help


def _torchvision(arch: str, weights: Any, num_classes: int | None) -> ModelBundle:
    from torchvision import models as tvm

    try:
        builder = tvm.get_model_builder(arch)
    except ValueError as e:
        raise ClassContrastError(f"unknown torchvision architecture {arch!r}"
                                 f"{did_you_mean(arch, tvm.list_models())}") from e
    default = tvm.get_model_weights(arch).DEFAULT if arch in tvm.list_models() else None
    dense = arch in tvm.list_models(module=tvm.segmentation)  # a segmenter: per-pixel logits, no crop
    detector = arch in tvm.list_models(module=tvm.detection)  # resizes and normalises the images itself
    video = arch in tvm.list_models(module=tvm.video)  # clips (B, C, T, H, W)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if weights == "DEFAULT" and default is not None and num_classes in (None, len(default.meta["categories"])):
        try:
            model = builder(weights=default)
        except (OSError, RuntimeError) as e:  # URLError is an OSError
            raise _offline_help(f"torchvision:{arch}", getattr(e, "reason", e)) from e
    else:
        if arch in {"googlenet", "inception_v3"}:
            kwargs["aux_logits"] = False
            kwargs["init_weights"] = True
        if dense or detector:  # no download of the backbone's ImageNet weights either
            kwargs["weights_backbone"] = None
        model = builder(weights=None, **kwargs)
        if weights not in (None, "DEFAULT"):
            _load_into(model, load_state(weights), str(weights))
    if video:
        return _video_bundle(model, arch, default, num_classes)
    if detector:  # the model's own transform resizes and normalises: give it the image, in [0, 1]
        categories = list(default.meta.get("categories", [])) if default is not None else []
        n = num_classes or len(categories) or 91
        if len(categories) != n:
            categories = [f"class {i}" for i in range(n)]
        return ModelBundle(model.eval(), Preprocess(0), Normalize((0.0,) * 3, (1.0,) * 3), categories,
                           f"torchvision:{arch}")
    if default is not None:
        tf = default.transforms()
        crop = None if dense else tf.crop_size[0]
        resize = tf.resize_size[0]
        preprocess = Preprocess(resize, crop, tf.interpolation.value)
        mean, std = tf.mean, tf.std
        categories = list(default.meta.get("categories", []))
    else:
        preprocess, mean, std, categories = Preprocess(256, 224, "bilinear"), _IMAGENET_MEAN, _IMAGENET_STD, []
    n = num_classes or getattr(model, "num_classes", None) or len(categories) or 1000
    if len(categories) != n:
        categories = [f"class {i}" for i in range(n)]
    return ModelBundle(model.eval(), preprocess, Normalize(mean, std), categories, f"torchvision:{arch}")


VIDEO_FRAMES = 16  # the clip length torchvision's Kinetics-400 video models were trained on


def _video_bundle(model: nn.Module, arch: str, default: Any, num_classes: int | None) -> ModelBundle:
    """A torchvision video classifier: clips of 16 frames, each frame resized and centre-cropped as its
    weights' ``VideoClassification`` transform says, normalised; the Kinetics-400 class names."""
    from .preprocess import ClipPreprocess

    tf = default.transforms()
    resize = tf.resize_size[0] if len(tf.resize_size) == 1 else tuple(tf.resize_size)
    categories = list(default.meta.get("categories", []))
    n = num_classes or len(categories)
    if len(categories) != n:
        categories = [f"class {i}" for i in range(n)]
    return ModelBundle(model.eval(), ClipPreprocess(resize, tuple(tf.crop_size)), Normalize(tf.mean, tf.std, spatial=3),
                       categories, f"torchvision:{arch}", frames=VIDEO_FRAMES)


register_family(Family(
    order=10,
    name="torchvision", prefix="torchvision", spec="torchvision:<arch>",
    summary="torchvision's classifiers, segmenters, detectors and video classifiers (weights download when online)",
    load=_torchvision))

__all__ = ["VIDEO_FRAMES"]


def _canonizers(model: nn.Module) -> list[Any] | None:
    """zennit's canonizers for torchvision's VGG and ResNet (its BatchNorm merged and its residual sums split as
    LRP needs them); None for any other network."""
    kind = type(model)
    if not kind.__module__.startswith("torchvision.models") or kind.__name__ not in ("VGG", "ResNet"):
        return None
    import zennit.torchvision

    return [zennit.torchvision.VGGCanonizer() if kind.__name__ == "VGG" else zennit.torchvision.ResNetCanonizer()]


register_canonizers("torchvision", _canonizers)
