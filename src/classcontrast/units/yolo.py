r"""Ultralytics YOLO's detected objects as the explained units.

An Ultralytics detection model (``YOLO(...).model``: a ``DetectionModel`` or ``SegmentationModel``, YOLOv8 /
YOLO11-style anchor-free heads) scores every anchor point with its own row of class logits ``scores``
(B, C, anchors), each class its own sigmoid decision. Its detections are Ultralytics' own
``non_max_suppression`` of the decoded output (confidence ``threshold``, IoU ``iou``, at most ``max_det`` per
image: the predictor's 0.25, 0.7 and 300 unless `classcontrast.units.selectors.Detections` says otherwise), and each
detection is the anchor it came from: its row $y^{(a)}$, the reported score $\sigma(y^{(a)}_{\text{label}})$
exactly, its box in the input's pixels. An object's objective is its contrast on that row,

$$O_{\text{object}} = O\big(y^{(a)},\ t\big),$$

under the sigmoid head (``probability`` is $\sigma(y_t)$, ``weighted`` equals ``original``; ``mean``, ``max``
and ``Foil`` are logit differences: "why a dog rather than a cat for this box"). The anchors are fixed by the
input's size, so the sampling and perturbation methods follow each object as its anchor. For a segmentation
model each object also records its instance mask (Ultralytics' ``process_mask``, at the input's size).

Ultralytics is never imported by classcontrast itself: the module is recognised by its structure
(`is_yolo`), and its non-maximum suppression is imported only when such a model is explained.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..outputs import finite
from .base import Selection, register_units
from .objects import ObjectSelection, ObjectUnits, rows_at
from .records import ObjectUnit

_IMPORTING = threading.Lock()  # one import at a time: the recording patches below are process-wide


def import_ultralytics(*names: str) -> list[ModuleType]:
    """Import Ultralytics modules and leave the rest of the process as it was: whatever the import changes from the
    importing thread is recorded as it happens and undone afterwards — and only that, so what other threads set
    meanwhile stays (`_left_as_found`). Importing Ultralytics sets ``OMP_NUM_THREADS=1`` and four other variables for
    every later subprocess, replaces ``PIL.Image.open`` (by an opener that answers an unreadable image by trying to
    pip-install a HEIF plugin) and ``torch.save``, adds warning filters, changes torch's and NumPy's print options,
    OpenCV's thread count (``cv2.setNumThreads(0)``) and other libraries' loggers' levels, and writes a settings file
    under the user's home with a banner on stdout: here its settings go to a private temporary folder (removed at
    exit) unless ``YOLO_CONFIG_DIR`` is set, and the banner is dropped. What remains: Ultralytics' modules in
    ``sys.modules`` with their own logger ("ultralytics"), and — for later uses of Ultralytics in this process — its
    settings in that temporary folder (its defaults) unless ``YOLO_CONFIG_DIR`` was set."""
    import importlib

    with _IMPORTING, _left_as_found():
        return [importlib.import_module(n) for n in names]


@contextmanager
def _left_as_found() -> Iterator[None]:
    """Record what the current thread changes (environment variables, warning filters, loggers' levels, OpenCV's
    threads, print options, ``PIL.Image.open``, ``torch.save``) and undo exactly that on leaving."""
    import logging
    import os
    import warnings

    import torch
    from PIL import Image

    me = threading.get_ident()
    undo: list[Callable[[], None]] = []
    with ExitStack() as patches:
        _record_environ(me, undo, patches)
        for module, name in ((warnings, "filterwarnings"), (warnings, "simplefilter")):
            _record_filters(module, name, me, undo, patches)
        _record_levels(me, undo, patches)
        _record_calls(me, undo, patches)
        opener, save = Image.open, torch.save
        quiet = _Banner()
        logging.getLogger("ultralytics").addFilter(quiet)
        settings = None
        if not os.environ.get("YOLO_CONFIG_DIR"):
            settings = _private_settings()
            os.environ["YOLO_CONFIG_DIR"] = settings  # recorded: removed again on leaving
        try:
            yield
        finally:
            logging.getLogger("ultralytics").removeFilter(quiet)
            if Image.open is not opener:
                Image.open = opener
            if torch.save is not save:
                torch.save = save
    for step in reversed(undo):
        step()


def _private_settings() -> str:
    """A private folder for Ultralytics' settings file (instead of the user's home), removed at exit."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="classcontrast-ultralytics-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


class _Banner(logging.Filter):
    """Drops Ultralytics' "Creating new Ultralytics Settings ... file" banner (printed when its settings file is
    made: here, in a private folder)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Ultralytics Settings" not in record.getMessage()


def _record_environ(me: int, undo: list[Callable[[], None]], patches: ExitStack) -> None:
    """Environment variables this thread sets or deletes, restored to their values before."""
    import os

    environ = type(os.environ)
    setitem, delitem = environ.__setitem__, environ.__delitem__
    before: dict[str, str | None] = {}

    def remember(key: str) -> None:
        if threading.get_ident() == me and key not in before:
            before[key] = os.environ.get(key)

    def recording_set(self: Any, key: str, value: str) -> None:
        remember(key)
        setitem(self, key, value)

    def recording_del(self: Any, key: str) -> None:
        remember(key)
        delitem(self, key)

    environ.__setitem__, environ.__delitem__ = recording_set, recording_del  # type: ignore[method-assign]
    patches.callback(setattr, environ, "__setitem__", setitem)
    patches.callback(setattr, environ, "__delitem__", delitem)

    def restore() -> None:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    undo.append(restore)


def _record_filters(module: Any, name: str, me: int, undo: list[Callable[[], None]], patches: ExitStack) -> None:
    """Warning filters this thread adds through ``module.name``, removed again (a filter that was there before
    is left)."""
    import warnings

    original = getattr(module, name)
    added: list[tuple[Any, ...]] = []

    def recording(*args: Any, **kwargs: Any) -> None:
        if threading.get_ident() != me:
            original(*args, **kwargs)
            return
        had = list(warnings.filters)
        original(*args, **kwargs)
        added.extend(f for f in warnings.filters if f not in had)

    setattr(module, name, recording)
    patches.callback(setattr, module, name, original)

    def restore() -> None:
        for item in added:
            if item in warnings.filters:
                cast(list[Any], warnings.filters).remove(item)
        mutated = getattr(warnings, "_filters_mutated", None)  # the warnings module's cache of the filters
        if mutated is not None:
            mutated()

    undo.append(restore)


def _record_levels(me: int, undo: list[Callable[[], None]], patches: ExitStack) -> None:
    """Other libraries' loggers whose level this thread sets, given back their levels (Ultralytics' own logger,
    "ultralytics", is its own)."""
    set_level = logging.Logger.setLevel
    before: dict[logging.Logger, int] = {}

    def recording(self: logging.Logger, level: Any) -> None:
        if threading.get_ident() == me and not self.name.startswith("ultralytics") and self not in before:
            before[self] = self.level
        set_level(self, level)

    logging.Logger.setLevel = recording  # type: ignore[method-assign]
    patches.callback(setattr, logging.Logger, "setLevel", set_level)

    def restore() -> None:
        for logger, level in before.items():
            set_level(logger, level)

    undo.append(restore)


def _record_calls(me: int, undo: list[Callable[[], None]], patches: ExitStack) -> None:
    """Process-wide settings this thread changes by a call — OpenCV's thread count, torch's and NumPy's print
    options — given back their values before the first such call."""
    import copy

    import numpy as np
    import torch
    import torch._tensor_str as tensor_str

    settings: list[tuple[Any, str, Callable[[], Any], Callable[[Any], None]]] = [
        (torch, "set_printoptions", lambda: copy.copy(tensor_str.PRINT_OPTS),
         lambda v: setattr(tensor_str, "PRINT_OPTS", v)),
        (np, "set_printoptions", np.get_printoptions, lambda v: np.set_printoptions(**v)),
    ]
    try:
        import cv2

        settings.append((cv2, "setNumThreads", cv2.getNumThreads, cv2.setNumThreads))
    except ImportError:  # pragma: no cover - Ultralytics installs OpenCV
        pass
    for module, name, read, write in settings:
        original = getattr(module, name)
        before: list[Any] = []

        def recording(*args: Any, _original: Any = original, _read: Any = read, _before: Any = before,
                      **kwargs: Any) -> Any:
            if threading.get_ident() == me and not _before:
                _before.append(_read())
            return _original(*args, **kwargs)

        setattr(module, name, recording)
        patches.callback(setattr, module, name, original)

        def restore(_before: list[Any] = before, _write: Callable[[Any], None] = write) -> None:
            if _before:
                _write(_before[0])

        undo.append(restore)


def is_yolo_output(raw: Any) -> bool:
    """The eval-mode output of an Ultralytics head: (decoded predictions, the raw predictions' dict with
    ``scores`` (B, C, anchors) class logits, ``boxes`` and ``feats``)."""
    if not (isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], dict)):
        return False
    return (isinstance(raw[1].get("scores"), Tensor) and "feats" in raw[1]) or "one2one" in raw[1]


def is_yolo(net: object) -> bool:
    """An Ultralytics detection / segmentation model (``YOLO(...).model``): its ``model`` a sequence of layers
    ending in a head with ``nc``, ``reg_max``, ``stride`` and the class branch ``cv3``."""
    layers = getattr(net, "model", None)
    if not isinstance(layers, nn.Sequential) or len(layers) == 0:
        return False
    head = layers[-1]
    return all(hasattr(head, a) for a in ("nc", "reg_max", "stride", "cv3"))


def yolo_layer(net: nn.Module) -> str:
    """The default CAM layer of a YOLO model: the map every head level depends on — the last layer before the
    neck's first upsampling (YOLOv8's SPPF, ``model.9``; YOLO11's C2PSA, ``model.10``)."""
    layers: Any = net.model
    for i, m in enumerate(layers):
        if isinstance(m, nn.Upsample):
            source = getattr(m, "f", -1)
            return f"model.{i - 1 if source == -1 else source}"
    return f"model.{len(layers) - 2}"


class InstanceMasks(nn.Module):
    r"""One image's instances of a YOLO segmentation model as a segmenter, for the pixel-level question: per pixel
    $p$ the logits of background (0) and of each instance $k$'s mask,

    $$m_k(p) = \sum_j c_{kj} P_j(p),$$

    its anchor's mask coefficients $c_k$ on the model's prototypes $P$, upsampled bilinearly to the input's size
    (Ultralytics' ``process_mask``) and, outside the instance's box, −10⁴ (Ultralytics crops each mask to its box).
    A pixel belongs to instance $k$ where $m_k(p) > 0$: `cc.Region(k + 1, mask)` over the instance's own mask
    then asks **why these pixels are instance k** (whose row made it class A) rather than background or another
    instance (``weighted``: against all of them, ``Foil(0)``: against background). YOLO's masks are class-agnostic,
    so the class itself is the row's question (`YoloUnits`).

    ``objects``: the image's object records (``Explanation.units[i]``: their ``anchor`` and ``box``), for any batch
    of inputs the size of that image (sampled and perturbed ones included)."""

    model: nn.Module
    anchors: Tensor  # (K,) each instance's anchor
    boxes: Tensor  # (K, 4) each instance's box

    def __init__(self, model: nn.Module, objects: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        if not objects or "anchor" not in objects[0]:
            raise ClassContrastError("InstanceMasks needs a YOLO segmentation model's objects: "
                                     "cc.explain(...).units[image]")
        self.model = model
        self.register_buffer("anchors", torch.tensor([int(u["anchor"]) for u in objects]), persistent=False)
        self.register_buffer("boxes", torch.tensor([list(u["box"]) for u in objects], dtype=torch.float64),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1 + K, H, W): background, then each instance's mask logits."""
        (_, proto), preds = self.model(x)
        coefficients = preds.get("mask_coefficient")
        if coefficients is None:
            raise ClassContrastError("InstanceMasks needs a YOLO segmentation model (mask coefficients)")
        c = coefficients[:, :, self.anchors]  # (B, nm, K)
        m = torch.einsum("bnk,bnhw->bkhw", c, proto)
        m = nn.functional.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        cols = torch.arange(w, device=x.device, dtype=self.boxes.dtype)
        rows = torch.arange(h, device=x.device, dtype=self.boxes.dtype)
        x0, y0, x1, y1 = (v[:, None] for v in self.boxes.unbind(-1))
        inside = ((rows >= y0) & (rows < y1))[:, :, None] & ((cols >= x0) & (cols < x1))[:, None, :]  # (K, H, W)
        m = m.masked_fill(~inside[None], -1e4)
        return torch.cat([m.new_zeros(m.shape[0], 1, h, w), m], 1)


@register_units
class YoloUnits(ObjectUnits):
    """An Ultralytics YOLO model's detections as the explained units: each object the anchor it came from."""

    order = 9
    default_threshold = 0.25  # Ultralytics' predictor

    @classmethod
    def claims(cls, net: nn.Module) -> bool:
        return False

    @classmethod
    def unwrap(cls, obj: object) -> nn.Module | None:
        """Ultralytics' ``YOLO(...)`` wrapper: its model."""
        inner = getattr(obj, "model", None)
        if type(obj).__module__.startswith("ultralytics.") and not is_yolo(obj) and is_yolo(inner):
            return inner
        return None

    @classmethod
    def natural_head(cls, net: nn.Module) -> str | None:
        return "sigmoid" if is_yolo(net) else None

    @classmethod
    def feature_layer(cls, net: nn.Module) -> str | None:
        return yolo_layer(net) if is_yolo(net) else None  # the map every head level depends on

    @classmethod
    def accepts(cls, raw: Any, x: Tensor) -> bool:
        return is_yolo_output(raw)

    def __init__(self, spec: object, net: nn.Module, categories: Sequence[str] | None = None,
                 head: str = "sigmoid") -> None:
        super().__init__(spec, net, categories, head)

    def choose(self, raw: Any, x: Tensor, seen: Any) -> ObjectSelection:
        """Ultralytics' own detections of the images (its non-maximum suppression): which objects, their anchors,
        labels, scores, boxes and, for a segmentation model, instance masks."""
        decoded, preds = raw
        if "one2one" in preds:
            raise ClassContrastError("end-to-end (NMS-free) YOLO heads (YOLOv10, YOLO26) are not supported yet: "
                                     "explain a YOLOv8 / YOLO11-style model")
        return self._detect(decoded, preds, x)

    def logits(self, raw: Any, x: Tensor, rows: Tensor, seen: Any, chosen: Selection | None, own: bool) -> Tensor:
        """(B', K, C) each object's anchor row (with its graph): the anchors `choose` found on the images; the
        anchors are fixed by the input's size, so sampled and perturbed inputs read the same ones."""
        assert isinstance(chosen, ObjectSelection)
        _, preds = raw
        scores = preds["scores"]  # (B', C, anchors) class logits
        return finite(rows_at(scores.transpose(1, 2), chosen.rows[rows]))

    def _detect(self, decoded: Any, preds: dict[str, Tensor], x: Tensor) -> ObjectSelection:
        """Ultralytics' own detections of the images: which objects, their anchors, labels, scores, boxes."""
        import torchvision  # noqa: F401  (imported, Ultralytics runs torchvision's NMS, not its slow Python loop)

        nms, ops = import_ultralytics("ultralytics.utils.nms", "ultralytics.utils.ops")

        from .selectors import Detections

        spec = self.spec
        if not isinstance(spec, Detections):
            self._choose([])  # the one-line error: a detector's units are its objects
        assert isinstance(spec, Detections)
        proto = None
        if isinstance(decoded, (tuple, list)):  # a segmentation model: (predictions, mask prototypes)
            decoded, proto = decoded
        nc = preds["scores"].shape[1]
        threshold = self.default_threshold if spec.threshold is None else spec.threshold
        found, keep = nms.non_max_suppression(decoded.detach(), threshold, spec.iou, max_det=spec.max_det, nc=nc,
                                              return_idxs=True)
        if not any(len(f) for f in found) and spec.indices is None:  # NMS kept none: say how close the best came
            best = float(torch.sigmoid(preds["scores"].detach().max()))
            raise ClassContrastError(f"no detection scores at least {threshold} (the best scores {best:.3g}): lower "
                                     "the threshold (cc.Detections(threshold=...), --min-score on the command line)")
        chosen = self._choose([f[:, 4] for f in found])
        selected, index = self._layout(chosen, x.device)
        k = index.shape[1]
        rows, anchors = [], []
        for f, kept, at in zip(found, keep, index, strict=True):
            kept = kept.reshape(-1).long().to(x.device)
            rows.append(f[at] if len(f) else f.new_zeros(k, f.shape[1]))  # an image without objects: fillers
            anchors.append(kept[at] if len(kept) else at)
        picked = torch.stack(rows)  # (B, K, 6 + masks) x0 y0 x1 y1 score label coefficients
        masks = None
        if proto is not None:
            # in float32, as Ultralytics computes masks whatever the model's dtype
            masks = torch.stack([ops.process_mask(proto[i].detach(), picked[i, :, 6:].float(),
                                                  picked[i, :, :4].float(), tuple(x.shape[-2:]), upsample=True).bool()
                                 for i in range(len(picked))])
        return ObjectSelection(targets=picked[..., 5].long(), head=self.head, selected=selected, index=index,
                               rows=torch.stack(anchors), boxes=picked[..., :4], reported=picked[..., 4], masks=masks)

    def records(self, rows: Tensor, sel: ObjectSelection) -> list[list[ObjectUnit]]:
        """`ObjectUnits.records`, each with its ``anchor`` and, for a segmentation model, its instance ``mask``."""
        return [[dataclasses.replace(u, anchor=u.proposal, proposal=None,
                                     mask=None if sel.masks is None else sel.masks[i, j])
                 for j, u in enumerate(objects)] for i, objects in enumerate(super().records(rows, sel))]


__all__ = ["InstanceMasks", "YoloUnits", "import_ultralytics", "is_yolo", "is_yolo_output", "yolo_layer"]
