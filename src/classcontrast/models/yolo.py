"""``yolo:<yaml or checkpoint>``: Ultralytics YOLO detection and segmentation models (the optional ``yolo`` extra;
Ultralytics is AGPL-3.0 and is imported only here, when such a model is asked for).

* ``yolo:yolov8n.yaml`` (any model yaml Ultralytics ships, or a path to one): the architecture with random weights
  (seeded), or with ``weights=`` a state dict loaded safely (``weights_only=True``). Ultralytics' parser
  ``eval``s a yaml's ``activation:`` and calls whatever name a layer gives (any function of its module), so a yaml
  is code unless checked: every field the parser reads is validated first (`check_yolo_config`: layers name
  module classes only, ``activation`` is ``nn.<Class>(literal arguments)``, the rest numbers and lists), anything
  else refused in one line, and the model is then built in Ultralytics' restricted mode where it has one;
* ``yolo:PATH.pt``: an Ultralytics checkpoint. It is a pickled model object — loading it can run code from the
  file — so it is loaded through Ultralytics' own loader only with ``trust_checkpoint=True``
  (``--trust-checkpoint``); otherwise a one-line error says so and how to give a state dict and its yaml.

The bundle letterboxes images as Ultralytics' predictor does (`classcontrast.models.preprocess.Letterbox`), its
head is sigmoid, its CAM layer the map every head level depends on (`classcontrast.units.yolo.yolo_layer`).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError, first_line
from .bundle import ModelBundle, Normalize
from .preprocess import Letterbox
from .registry import Family, FamilyOption, register_family
from .weights import load_into, load_state


def _ultralytics() -> Any:
    from ..units.yolo import import_ultralytics

    try:
        (tasks,) = import_ultralytics("ultralytics.nn.tasks")
    except ImportError as e:
        raise ClassContrastError("yolo: models need Ultralytics (AGPL-3.0): pip install 'classcontrast[yolo]'") from e
    return tasks


def _from_yaml(tasks: Any, spec: str, num_classes: int | None) -> Any:
    """The model a yaml describes, its fields checked before Ultralytics' parser sees them."""
    if "://" in spec:
        raise ClassContrastError(f"yolo:{spec}: give a local yaml file or one Ultralytics ships (nothing is "
                                 "downloaded)")
    try:
        config = tasks.yaml_model_load(spec)
    except FileNotFoundError as e:
        raise ClassContrastError(f"no YOLO model yaml {spec!r} (Ultralytics ships yolov8n.yaml, yolo11n.yaml, "
                                 "...; or give a path)") from e
    except Exception as e:  # a yaml that does not parse: whatever the yaml library raises, one line
        raise ClassContrastError(f"{spec} could not be read as a YOLO model yaml ({type(e).__name__})") from e
    check_yolo_config(config, tasks, spec)
    task = tasks.guess_model_task(config)
    build = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel}.get(task)
    if build is None:
        raise ClassContrastError(f"{spec} is a YOLO {task} model: classcontrast explains detection and "
                                 "segmentation models (yolov8n.yaml, yolov8n-seg.yaml, yolo11n.yaml...)")
    try:
        with _restricted(tasks):
            return build(config, nc=num_classes, verbose=False)
    except ClassContrastError:
        raise
    except Exception as e:  # a checked yaml whose layers do not fit together: Ultralytics' own message, one line
        raise ClassContrastError(f"{spec}: Ultralytics could not build this model ({type(e).__name__}: "
                                 f"{first_line(e)})") from e


@contextmanager
def _restricted(tasks: Any) -> Iterator[None]:
    """Ultralytics' restricted model construction (no ``eval``, known layers only) for this thread, where its
    version has one (8.4's ``_SafeLoad``); our own checks (`check_yolo_config`) hold in every version."""
    safe = getattr(tasks, "_SafeLoad", None)
    local = getattr(safe, "_local", None)
    if local is None or not getattr(safe, "SUPPORTED", False):
        yield
        return
    before = getattr(local, "active", False)
    local.active = True
    try:
        yield
    finally:
        local.active = before


_NUMBERS = (int, float)


def _refuse(spec: str, what: str) -> ClassContrastError:
    return ClassContrastError(f"{spec}: {what}; a YOLO yaml may name Ultralytics' and torch's layer classes only "
                              "(refused: it could run code)")


def layer_class(name: object, tasks: Any) -> type | None:
    """The module class a yaml layer's ``module`` names, resolved as Ultralytics' ``parse_model`` resolves it
    (``nn.X``: torch.nn, ``torchvision.ops.X``, otherwise a name in ``ultralytics.nn.tasks``), or None when the
    name is not an ``nn.Module`` class there (a function such as ``torch_load``, a module, a typo)."""
    import torch

    if not isinstance(name, str) or not name.isascii():
        return None
    if name.startswith("nn."):
        found = getattr(torch.nn, name[3:], None) if name[3:].isidentifier() else None
    elif name.startswith("torchvision.ops."):
        import torchvision

        found = getattr(torchvision.ops, name[16:], None) if name[16:].isidentifier() else None
    else:
        found = vars(tasks).get(name) if name.isidentifier() else None
    return found if isinstance(found, type) and issubclass(found, torch.nn.Module) else None


def safe_activation(text: object) -> bool:
    """Whether a yaml's ``activation`` is ``nn.<Class>(literal arguments)`` (or ``torch.nn.<Class>(...)``), a torch
    module class: the one form the restricted parser accepts instead of ``eval``."""
    import torch

    if not isinstance(text, str):
        return False
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call):
        return False
    names, node = [], call.func
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or [*names[1:], node.id] not in (["nn"], ["nn", "torch"]):
        return False
    found = getattr(torch.nn, names[0], None) if names else None
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        return False
    try:
        for value in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(value)
    except ValueError:
        return False
    return all(k.arg is not None for k in call.keywords)


def _plain(value: object) -> bool:
    """A yaml value made of numbers, strings, booleans, None and lists of them (what layer arguments are)."""
    if value is None or isinstance(value, (bool, str, *_NUMBERS)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def check_yolo_config(config: object, tasks: Any, spec: str) -> None:
    """Every field of a YOLO model yaml that Ultralytics' parser reads, checked before it reads them: ``nc``,
    ``depth_multiple``, ``width_multiple``, ``reg_max`` numbers; ``scales`` a mapping to three numbers;
    ``activation`` `safe_activation`; ``backbone`` and ``head`` lists of ``[from, repeats, module, args]`` with
    ``from`` an index or a list of them, ``repeats`` a whole number, ``module`` a module class (`layer_class`) and
    ``args`` plain values. Anything else is a one-line error naming the field."""
    if not isinstance(config, dict):
        raise _refuse(spec, "the file is not a mapping of fields")
    for key in ("nc", "depth_multiple", "width_multiple", "reg_max", "channels", "ch"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, _NUMBERS)):
            raise _refuse(spec, f"{key} must be a number, got {str(value)[:40]!r}")
    scales = config.get("scales")
    if scales is not None and not (isinstance(scales, dict) and all(
            isinstance(v, list) and len(v) == 3 and all(isinstance(n, _NUMBERS) for n in v) for v in scales.values())):
        raise _refuse(spec, "scales must map each scale to [depth, width, max_channels]")
    if config.get("activation") is not None and not safe_activation(config["activation"]):
        raise _refuse(spec, f"activation {str(config['activation'])[:60]!r} is not nn.<Class>(literal arguments)")
    layers = [*(config.get("backbone") or []), *(config.get("head") or [])]
    if not layers or not all(isinstance(config.get(k), list) for k in ("backbone", "head")):
        raise _refuse(spec, "backbone and head must be lists of layers")
    for i, layer in enumerate(layers):
        if not (isinstance(layer, list) and len(layer) == 4):
            raise _refuse(spec, f"layer {i} must be [from, repeats, module, args]")
        source, repeats, module, args = layer
        sources = source if isinstance(source, list) else [source]
        if not sources or not all(isinstance(s, int) and not isinstance(s, bool) for s in sources):
            raise _refuse(spec, f"layer {i}: 'from' must be a layer index or a list of them")
        if isinstance(repeats, bool) or not isinstance(repeats, int):
            raise _refuse(spec, f"layer {i}: repeats must be a whole number")
        if layer_class(module, tasks) is None:
            raise _refuse(spec, f"layer {i} names {str(module)[:40]!r}, which is not a module class")
        if not (isinstance(args, list) and _plain(args)):
            raise _refuse(spec, f"layer {i}: args must be a list of numbers, strings and lists")


def load_yolo(spec: str, weights: str | os.PathLike[str] | None, num_classes: int | None,
              trust_checkpoint: bool = False, imgsz: int | tuple[int, int] | None = None) -> ModelBundle:
    """A YOLO detection / segmentation model as a bundle (see the module docstring). ``imgsz``: the size images are
    letterboxed to; None is a checkpoint's own (its training ``imgsz``, as Ultralytics' predictor uses it) or 640."""
    from ..units.yolo import is_yolo, yolo_layer

    tasks = _ultralytics()
    path = Path(spec)
    if path.suffix in (".pt", ".pth"):
        if not path.is_file():
            raise ClassContrastError(f"YOLO checkpoint not found: {path}")
        if not trust_checkpoint:
            raise ClassContrastError(f"{path} is an Ultralytics checkpoint, a pickled model: loading it runs code from "
                                     "the file. If you trust it, pass --trust-checkpoint (trust_checkpoint=True); or "
                                     "give its yaml (checked: no code runs from it) and a state dict: --model "
                                     "yolo:MODEL.yaml --weights state.pt")
        try:
            model, _ = tasks.load_checkpoint(str(path))  # its train args (imgsz) as model.args
        except Exception as e:  # a broken or foreign pickle: whatever Ultralytics raises, one line
            raise ClassContrastError(f"{path} is not an Ultralytics checkpoint ({type(e).__name__}: {e})") from e
    elif path.suffix in (".yaml", ".yml"):
        model = _from_yaml(tasks, spec, num_classes)
        if weights not in (None, "DEFAULT"):
            load_into(model, load_state(weights), str(weights))
    else:
        raise ClassContrastError(f"yolo:{spec}: give a model yaml (yolo:yolov8n.yaml) or a checkpoint (yolo:best.pt "
                                 "--trust-checkpoint)")
    if not is_yolo(model):
        raise ClassContrastError(f"yolo:{spec} is not a YOLO detection or segmentation model")
    names = getattr(model, "names", None) or {}
    n = model.model[-1].nc
    categories = [str(names.get(i, f"class {i}")) if isinstance(names, dict) else str(names[i]) for i in range(n)]
    stride = int(max(float(s) for s in model.stride)) if hasattr(model, "stride") else 32
    size = image_size(imgsz if imgsz is not None else (getattr(model, "args", None) or {}).get("imgsz", 640), stride)
    return ModelBundle(model.float().eval(), Letterbox(size, stride), Normalize((0.0,) * 3, (1.0,) * 3), categories,
                       f"yolo:{spec}", layer=yolo_layer(model), head="sigmoid", read=read_image)


def image_size(value: object, stride: int) -> int | tuple[int, int]:
    """An ``imgsz`` (a number, or [height, width]) as Ultralytics' ``check_imgsz`` makes it: each side rounded up to
    a multiple of the model's ``stride``; anything else is a one-line error."""
    sides = value if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(sides) <= 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sides):
        raise ClassContrastError(f"imgsz must be a whole number >= 1 or [height, width], got {value!r}")
    rounded = [max(stride, -(-v // stride) * stride) for v in sides]
    return rounded[0] if len(rounded) == 1 else (rounded[0], rounded[1])


def read_image(path: str | os.PathLike[str]) -> Any:
    """An image file read exactly as Ultralytics' predictor reads it (its ``imread``: OpenCV, BGR, alpha dropped —
    a transparent PNG's stored colours, not composited —, 16-bit images by their high byte, EXIF orientation
    applied), as an RGB PIL image; the same pixel budget as every image (`classcontrast.data.images.check_pixels`)
    before it is decoded."""
    from PIL import Image

    from ..data.images import check_pixels
    from ..units.yolo import import_ultralytics

    check_pixels(path)
    (patches,) = import_ultralytics("ultralytics.utils.patches")
    bgr = patches.imread(str(path))
    if bgr is None:
        raise ClassContrastError(f"{path} could not be read as an image (OpenCV, as Ultralytics reads it)")
    rgb = bgr[..., ::-1] if bgr.shape[2] == 3 else bgr[..., :1].repeat(3, axis=2)
    return Image.fromarray(rgb.copy(), "RGB")


register_family(Family(
    order=60,
    name="yolo", prefix="yolo", spec="yolo:<yaml or .pt>", extra="yolo",
    summary="Ultralytics YOLO detection and segmentation models (AGPL-3.0, never imported unless used)",
    load=load_yolo, options=(
        FamilyOption("trust_checkpoint", bool, "load an Ultralytics .pt checkpoint, a pickled model: loading it can "
                     "run code from the file"),
        FamilyOption("imgsz", int, "the size images are letterboxed to (default: a checkpoint's own training size, "
                     "as Ultralytics' predictor uses, else 640)"))))

__all__ = ["check_yolo_config", "image_size", "layer_class", "load_yolo", "read_image", "safe_activation"]
