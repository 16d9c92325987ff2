r"""Detected objects as the explained units.

Every object a detector reports was classified by one row of class logits: the row of the proposal that
produced the box (torchvision's Faster R-CNN, found through the model's own post-processing: the proposal
whose softmax at the label is the reported score and whose decoded box is the reported box), or the row
of the query (DETR-style models: ``logits`` (B, queries, C + 1) whose last class is "no object"). An
object's objective is its contrast on that row,

$$O_{\text{object}} = O\big(y^{(\text{row})},\ t\big),$$

so "why a dog rather than a cat for box 3" is ``Foil("cat")`` on that object, and ``weighted`` compares
its class with all the other classes of its own row (for DETR "no object" included, a class a foil may
name). The maps of K objects × M contrasts come from one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .errors import ClassContrastError


@dataclass(frozen=True)
class Detections:
    """The objects a detector itself reports, in its own order: those scoring at least ``threshold``,
    the ``top`` best of them when given; or the detections at ``indices`` (their places in the model's
    own list of detections, whatever their score).

    ``threshold`` None is the detector's usual one: 0.5 (torchvision, DETR-style models), 0.25 (Ultralytics
    YOLO, its predictor's default). ``iou`` and ``max_det`` are the non-maximum suppression an Ultralytics
    YOLO model's detections are made with (its predictor's 0.7 and 300); other detectors run their own."""

    top: int | None = None
    threshold: float | None = None
    indices: Sequence[int] | None = None
    iou: float = 0.7
    max_det: int = 300

    def __post_init__(self) -> None:
        from .targets import fraction, whole

        if self.top is not None:
            object.__setattr__(self, "top", whole(self.top, "Detections(top=...)"))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", fraction(self.threshold, "Detections", 0.0, 1.0, closed=True,
                                                           name="threshold"))
        object.__setattr__(self, "iou", fraction(self.iou, "Detections", 0.0, 1.0, closed=True, name="iou"))
        object.__setattr__(self, "max_det", whole(self.max_det, "Detections(max_det=...)"))
        if self.indices is not None:
            if isinstance(self.indices, (str, bytes)) or not isinstance(self.indices, (Sequence, Tensor)):
                raise ClassContrastError(f"Detections(indices=...) needs a list of detection indices, got "
                                         f"{self.indices!r}")
            for i in self.indices:
                whole(i, "Detections(indices=...)", minimum=0)


def is_torchvision_detector(net: nn.Module) -> bool:
    """A torchvision detector whose rows `capture` finds: two-stage (Faster R-CNN family: ``roi_heads``
    with a box predictor) or single-stage (RetinaNet, FCOS)."""
    heads = getattr(net, "roi_heads", None)
    two_stage = heads is not None and hasattr(heads, "box_predictor") and hasattr(net, "transform")
    return two_stage or is_single_stage_detector(net)


def is_single_stage_detector(net: nn.Module) -> bool:
    """A torchvision single-stage, sigmoid-scored detector (RetinaNet, FCOS): a ``head`` with a
    classification head, and an anchor generator."""
    head = getattr(net, "head", None)
    return head is not None and hasattr(head, "classification_head") and hasattr(net, "anchor_generator") \
        and hasattr(net, "transform")


def is_detection_output(output: Any) -> bool:
    """A detector's output: torchvision's list of {boxes, labels, scores}, or a DETR-style object / dict
    with 3-dimensional ``logits`` (B, queries, C + 1) and ``pred_boxes``, or an Ultralytics YOLO head's."""
    if is_yolo_output(output):
        return True
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict) and "boxes" in output[0]:
        return True
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    boxes = output.get("pred_boxes") if isinstance(output, dict) else getattr(output, "pred_boxes", None)
    return isinstance(logits, Tensor) and logits.ndim == 3 and isinstance(boxes, Tensor)


def is_yolo_output(raw: Any) -> bool:
    """The eval-mode output of an Ultralytics head: (decoded predictions, the raw predictions' dict with
    ``scores`` (B, C, anchors) class logits, ``boxes`` and ``feats``)."""
    if not (isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], dict)):
        return False
    return (isinstance(raw[1].get("scores"), Tensor) and "feats" in raw[1]) or "one2one" in raw[1]


class _Capture:
    """Inside one call: the class logits and box regression of every proposal (with their graph), and
    the proposals and image sizes the ROI heads received."""

    def __init__(self) -> None:
        self.class_logits: Tensor | None = None
        self.box_regression: Tensor | None = None
        self.proposals: list[Tensor] = []
        self.image_shapes: list[tuple[int, int]] = []
        self.heads_output: list[dict[str, Tensor]] = []
        self.head_outputs: dict[str, Tensor] = {}  # single-stage: cls_logits (B, anchors, C), ...
        self.anchors: list[Tensor] = []


def capture(net: nn.Module, stack: ExitStack) -> _Capture:
    """Hooks (removed when ``stack`` closes) recording what `classcontrast.units.objects.ObjectUnits` needs from a
    torchvision detector's forward pass."""
    got = _Capture()
    if is_single_stage_detector(net):
        def head_out(_m: nn.Module, _i: Any, out: Any) -> None:
            got.head_outputs = dict(out)

        def anchors_io(_m: nn.Module, args: Any, out: Any) -> None:
            got.image_shapes, got.anchors = list(args[0].image_sizes), list(out)

        stack.callback(net.head.register_forward_hook(head_out).remove)  # type: ignore[union-attr]
        stack.callback(net.anchor_generator.register_forward_hook(anchors_io).remove)  # type: ignore[union-attr]
        return got
    heads = net.roi_heads  # type: ignore[union-attr]

    def predictor(_m: nn.Module, _i: Any, out: Any) -> None:
        got.class_logits, got.box_regression = out[0], out[1]

    def heads_in(_m: nn.Module, args: Any, kwargs: Any) -> None:
        proposals = args[1] if len(args) > 1 else kwargs["proposals"]
        shapes = args[2] if len(args) > 2 else kwargs["image_shapes"]
        got.proposals, got.image_shapes = list(proposals), list(shapes)

    def heads_out(_m: nn.Module, _i: Any, out: Any) -> None:
        got.heads_output = [dict(d) for d in out[0]]  # the model rescales the boxes in these dicts later

    stack.callback(heads.box_predictor.register_forward_hook(predictor).remove)
    stack.callback(heads.register_forward_pre_hook(heads_in, with_kwargs=True).remove)
    stack.callback(heads.register_forward_hook(heads_out).remove)
    return got


__all__ = ["Detections", "capture", "is_detection_output", "is_single_stage_detector", "is_torchvision_detector",
           "is_yolo_output"]
