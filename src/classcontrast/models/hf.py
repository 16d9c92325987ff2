"""Hugging Face ``transformers`` image models as ModelBundles (``hf:PATH_OR_ID``).

The model is ``AutoModelForImageClassification``, or ``...ForSemanticSegmentation`` /
``...ForObjectDetection`` when the folder's config says so (then the categories end with "no object");
preprocessing is the model's own ``AutoImageProcessor`` (its resize and crop, without its normalisation,
which the bundle's ``Normalize`` applies), and the class names come from ``config.id2label``. transformers
is an optional extra (``pip install 'classcontrast[hf]'``), imported only here.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..errors import ClassContrastError, did_you_mean, first_line
from . import hub
from .architectures import register_attention
from .bundle import ModelBundle, Normalize
from .registry import Family, FamilyOption, register_family

if TYPE_CHECKING:
    from ..hooks import OutputRecorder


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ClassContrastError("hf: models need transformers: pip install 'classcontrast[hf]'") from e
    return transformers


class HFPreprocess:
    """PIL image -> [0, 1] (C, H, W) tensor with the model's image processor (resize, crop, rescale)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        try:  # the processor's settings, so that cached results made with other settings are told apart
            settings = processor.to_json_string()
        except (AttributeError, TypeError, ValueError):
            settings = repr(vars(processor))
        self._settings = hashlib.sha256(settings.encode()).hexdigest()[:12]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        out = self.processor(images=image.convert("RGB"), do_normalize=False, return_tensors="pt")
        return out["pixel_values"][0].float()

    def __repr__(self) -> str:
        return f"HFPreprocess({type(self.processor).__name__}, settings {self._settings})"


def _offline(spec: str, reason: object) -> ClassContrastError:
    return ClassContrastError(
        f"could not get hf:{spec} ({reason}): there is no folder {spec!r} here, and as a hub id it needs the "
        "network (this machine may be offline). Give a local folder written with save_pretrained (--model "
        "hf:/path/to/folder, holding the model and its image processor), or --weights none for a randomly "
        "initialised model of a local config"
    )


def check_path(spec: str) -> bool:
    """Whether ``hf:spec`` names a local folder (True); a path that is not one — it starts with ``/``, ``.`` or
    ``~``, has more parts than a hub id's ``org/name``, or its first part is a folder here — is a one-line
    error naming the nearest folders, instead of being sent to the hub as an id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return True
    parent = path.parent
    looks_local = spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") >= 2 or path.exists() or (
        str(parent) not in ("", ".") and parent.is_dir())
    if not looks_local:
        return False
    if path.exists():
        raise ClassContrastError(f"hf:{spec} is a file; give the folder written with save_pretrained")
    where = parent if parent.is_dir() else Path(".")
    near = did_you_mean(path.name, [d.name for d in where.iterdir() if d.is_dir()]) if where.is_dir() else ""
    raise ClassContrastError(f"hf:{spec}: no such folder{near} (an hf: model is a folder written with save_pretrained "
                             "or a hub id such as google/vit-base-patch16-224)")


def _needs_remote_code(folder: Path) -> bool:
    """Whether a save_pretrained folder's config or processor names Python code of its own (``auto_map``)."""
    for name in ("config.json", "preprocessor_config.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            return True
    return False


def _auto_class(tf: Any, config: Any) -> Any:
    """The head the folder's model was saved with: semantic segmentation, object detection, or (default)
    image classification."""
    names = " ".join(getattr(config, "architectures", None) or [])
    if "ForSemanticSegmentation" in names:
        return tf.AutoModelForSemanticSegmentation
    if "ForObjectDetection" in names:
        return tf.AutoModelForObjectDetection
    return tf.AutoModelForImageClassification


def load_hf(spec: str, weights: Any = "DEFAULT", num_classes: int | None = None,
            trust_remote_code: bool = False) -> ModelBundle:
    """``spec``: a hub id (downloads when online) or a folder written with ``save_pretrained``.

    ``trust_remote_code`` is passed to transformers explicitly, never left to its interactive prompt:
    a model whose config names code of its own (``auto_map``) fails in one line unless it is True.
    """
    tf = _transformers()
    tf.utils.logging.disable_progress_bar()  # no download / loading bars in our output
    local = check_path(spec)
    if local and not trust_remote_code and _needs_remote_code(Path(spec)):
        raise ClassContrastError(f"hf:{spec} needs to run Python code from its folder (auto_map in its config); "
                                 "it was not run. If you trust that code, pass --trust-remote-code "
                                 "(load_model(..., trust_remote_code=True))")
    offline = not local and not hub.reachable()
    kwargs: dict[str, Any] = {"local_files_only": True} if offline else {}
    if num_classes is not None:
        kwargs |= {"num_labels": num_classes, "ignore_mismatched_sizes": True}
    try:
        config_kwargs = {k: v for k, v in kwargs.items() if k != "ignore_mismatched_sizes"}
        config = tf.AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code, **config_kwargs)
        auto = _auto_class(tf, config)
        if weights is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = auto.from_config(config, trust_remote_code=trust_remote_code)
        elif weights == "DEFAULT":
            model = auto.from_pretrained(spec, trust_remote_code=trust_remote_code, **kwargs)
        else:
            raise ClassContrastError("hf: models take their weights from the folder or hub id (use --weights "
                                     "DEFAULT or none)")
        processor = tf.AutoImageProcessor.from_pretrained(spec, trust_remote_code=trust_remote_code,
                                                          local_files_only=offline)
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, ClassContrastError):
            raise
        if local or not offline:
            raise ClassContrastError(f"hf:{spec}: {first_line(e)}") from e
        raise _offline(spec, type(e).__name__) from e
    labels = getattr(model.config, "id2label", None) or {}
    n = int(model.config.num_labels)
    categories = [str(labels.get(i, labels.get(str(i), f"class {i}"))) for i in range(n)]
    if auto is tf.AutoModelForObjectDetection:  # DETR-style logits end with the "no object" class
        categories.append("no object")
    mean = getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5)
    std = getattr(processor, "image_std", None) or (0.5, 0.5, 0.5)
    name = f"hf:{Path(spec).name if local else spec}"
    # a folder saved with problem_type="multi_label_classification" was trained with one sigmoid per class
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    return ModelBundle(model.eval(), HFPreprocess(processor), Normalize(mean, std), categories, name,
                       info={"source": os.fspath(spec), "architecture": type(model).__name__},
                       head="sigmoid" if multi else "softmax")


register_family(Family(
    order=30,
    name="hf", prefix="hf", spec="hf:<hub id or folder>", extra="hf",
    summary="Hugging Face transformers image classifiers, segmenters and detectors (a save_pretrained folder, or a "
            "hub id when online)",
    load=load_hf, options=(FamilyOption("trust_remote_code", bool, "run Python code shipped with the model "
                                        "(auto_map in its config); off: such a model is refused in one line"),)))


# attention rollout: a Hugging Face model's attention is routed through an eager function that records it
_HF_NAME = "classcontrast_capture"
_hf_recorders = threading.local()


def _hf_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                  scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Hugging Face's eager attention, with the post-softmax probabilities recorded for the calling
    thread's rollout (other threads, and calls outside rollout, just get eager attention)."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    recorder = getattr(_hf_recorders, "current", None)
    if recorder is not None and recorder.mine():
        weights = recorder.capture(weights)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


_config_locks: dict[int, threading.RLock] = {}
_config_registry = threading.Lock()


def _config_lock(config: Any) -> threading.RLock:
    """The lock of one Hugging Face config object, held while a call has switched its attention
    implementation (models built from one config share it; the model's own lock does not cover them)."""
    with _config_registry:
        lock = _config_locks.get(id(config))
        if lock is None:
            lock = _config_locks[id(config)] = threading.RLock()
            weakref.finalize(config, _config_locks.pop, id(config), None)
        return lock


def _hf_capture(model: nn.Module, recorder: OutputRecorder, stack: ExitStack) -> int:
    """Switch a Hugging Face model to `_hf_attention` for the call (1 if it could be done; 0 for other models)."""
    config = getattr(model, "config", None)
    if not hasattr(config, "_attn_implementation"):
        return 0
    try:
        from transformers import AttentionInterface
    except ImportError:  # pragma: no cover - a config with _attn_implementation comes from transformers
        return 0
    AttentionInterface.register(_HF_NAME, _hf_attention)
    lock = _config_lock(config)  # several models may share one config object: the lock covers what changes
    lock.acquire()
    stack.callback(lock.release)
    saved = config._attn_implementation
    config._attn_implementation = _HF_NAME
    stack.callback(setattr, config, "_attn_implementation", saved)
    _hf_recorders.current = recorder
    stack.callback(setattr, _hf_recorders, "current", None)
    return 1


register_attention("hf", _hf_capture)
