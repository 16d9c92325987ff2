r"""Detected objects as the explained units.

Every object a detector reports was classified by one row of class logits: the row of the proposal that
produced the box (torchvision's Faster R-CNN, found through the model's own post-processing: the proposal
whose softmax at the label is the reported score and whose decoded box is the reported box), the row of the
location (RetinaNet, FCOS: sigmoid-scored), or the row of the query (DETR-style models: ``logits``
(B, queries, C + 1) whose last class is "no object"). An object's objective is its contrast on that row,

$$O_{\text{object}} = O\big(y^{(\text{row})},\ t\big),$$

so "why a dog rather than a cat for box 3" is ``Foil("cat")`` on that object, and ``weighted`` compares
its class with all the other classes of its own row (for DETR "no object" included, a class a foil may
name). The maps of K objects × M contrasts come from one forward pass. The sampling and gradient-free methods
follow each object to its own row in every other input (`ObjectUnits._follow`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..contrast_base import Contrast, head_probabilities
from ..errors import ClassContrastError
from ..outputs import finite
from .base import Selection, Units, register_units
from .records import ObjectUnit
from .selectors import Detections


class NoDetections(ClassContrastError):
    """The detector reported no object scoring the threshold asked: nothing to explain (a one-line error; an audit
    counts such an image as detecting nothing)."""


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
    """A detector's output this kind reads: torchvision's list of {boxes, labels, scores}, or a DETR-style object /
    dict with 3-dimensional ``logits`` (B, queries, C + 1) and ``pred_boxes``."""
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict) and "boxes" in output[0]:
        return True
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    boxes = output.get("pred_boxes") if isinstance(output, dict) else getattr(output, "pred_boxes", None)
    return isinstance(logits, Tensor) and logits.ndim == 3 and isinstance(boxes, Tensor)


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


def capture(net: Any, stack: ExitStack) -> _Capture:
    """Hooks (removed when ``stack`` closes) recording what `classcontrast.units.objects.ObjectUnits` needs from a
    torchvision detector's forward pass."""
    got = _Capture()
    if is_single_stage_detector(net):
        def head_out(_m: nn.Module, _i: Any, out: Any) -> None:
            got.head_outputs = dict(out)

        def anchors_io(_m: nn.Module, args: Any, out: Any) -> None:
            got.image_shapes, got.anchors = list(args[0].image_sizes), list(out)

        stack.callback(net.head.register_forward_hook(head_out).remove)
        stack.callback(net.anchor_generator.register_forward_hook(anchors_io).remove)
        return got
    heads = net.roi_heads

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


@dataclass(frozen=True, kw_only=True, eq=False)
class ObjectSelection(Selection):
    """A call's objects (the targets are their labels): ``index`` (B, K) each one's place in the model's own list of
    detections, ``rows`` (B, K) the row of logits that made it (a DETR query, a torchvision proposal or location, a
    YOLO anchor), ``boxes`` (B, K, 4) x0, y0, x1, y1 in input pixels, ``reported`` (B, K) the model's score,
    ``proposal`` whether ``rows`` are proposals (torchvision) or queries (DETR), and a segmentation model's
    instance ``masks`` (B, K, H, W)."""

    index: Tensor
    rows: Tensor
    boxes: Tensor
    reported: Tensor
    proposal: bool = True
    masks: Tensor | None = None


@register_units
class ObjectUnits(Units):
    """Detected objects as the explained units: which detections, their class-logit rows, cotangents."""

    kind = "object"
    record = ObjectUnit  # its units' record
    order = 10
    default_threshold = 0.5  # cc.Detections(threshold=None): the score torchvision's and DETR's users keep

    @classmethod
    def claims(cls, net: nn.Module) -> bool:
        return is_torchvision_detector(net)

    @classmethod
    def natural_head(cls, net: nn.Module) -> str | None:
        return "sigmoid" if is_single_stage_detector(net) else None  # RetinaNet, FCOS score each class alone

    @classmethod
    def accepts(cls, raw: Any, x: Tensor) -> bool:
        return is_detection_output(raw)

    def __init__(self, spec: object, net: nn.Module, categories: Sequence[str] | None = None,
                 head: str = "softmax") -> None:
        super().__init__(spec, net, categories, head)
        self.torchvision = is_torchvision_detector(net)
        self.net: Any = net  # a torchvision or DETR detector: its own submodules are read

    # -- which objects ------------------------------------------------------------------------------

    def _choose(self, scores: list[Tensor]) -> list[list[int]]:
        """Per image, the chosen places in its own detection list (``scores``: the model's, in order)."""
        spec = self.spec
        if not isinstance(spec, Detections):
            raise ClassContrastError("this model is a detector: its units are the objects it detects "
                                     "(cc.Detections(top=..., threshold=...) or cc.Detections(indices=[...]); "
                                     "--detections N), not regions or classes")
        threshold = self.default_threshold if spec.threshold is None else spec.threshold
        chosen = []
        for i, s in enumerate(scores):
            if spec.indices is not None:
                bad = [j for j in spec.indices if not 0 <= int(j) < len(s)]
                if bad:
                    raise ClassContrastError(f"detection index {bad[0]} is out of range: image {i} has {len(s)} "
                                             f"detections (0..{len(s) - 1})")
                chosen.append([int(j) for j in spec.indices])
                continue
            s = s.detach()
            keep = [j for j in torch.argsort(s, descending=True, stable=True).tolist() if float(s[j]) >= threshold]
            chosen.append(keep[: spec.top] if spec.top is not None else keep)
        if not any(chosen):
            best = max((float(s.max()) for s in scores if len(s)), default=None)
            if best is None:
                where = "this image" if len(scores) == 1 else "these images"
                raise NoDetections(f"the model detected no object in {where}: nothing to explain (a "
                                         "detector with random or unsuited weights detects nothing; check its "
                                         "weights and the image)")
            raise NoDetections(f"no detection scores at least {threshold} (the best scores {best:.3g}): "
                                     "lower the threshold (cc.Detections(threshold=...), --min-score on the command "
                                     "line) or name detections by index (cc.Detections(indices=[...]))")
        return chosen

    @staticmethod
    def _layout(chosen: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
        """(selected, index): (B, K) False for fillers, and each image's chosen places padded with 0 as fillers (K:
        the most objects of any image)."""
        k = max(len(c) for c in chosen)
        selected = torch.zeros(len(chosen), k, dtype=torch.bool, device=device)
        for i, c in enumerate(chosen):
            selected[i, : len(c)] = True
        return selected, torch.tensor([c + [0] * (k - len(c)) for c in chosen], device=device)

    def _from_rows(self, output: Any, chosen: list[list[int]], match: Any, x: Tensor) -> ObjectSelection:
        """A torchvision detector's objects: ``match(i, d, label)`` is the row (proposal or location) of image i's
        detection d; which, the labels, the model's scores and boxes."""
        selected, index = self._layout(chosen, x.device)
        b, k = index.shape
        labels = torch.zeros(b, k, dtype=torch.long, device=x.device)
        row = torch.zeros(b, k, dtype=torch.long, device=x.device)
        for i, places in enumerate(chosen):
            for j, d in enumerate(places):
                label = int(output[i]["labels"][d])
                row[i, j], labels[i, j] = match(i, d, label), label
        reported = torch.stack([output[i]["scores"][index[i]] for i in range(b)]).detach()
        boxes = torch.stack([output[i]["boxes"][index[i]] for i in range(b)]).detach()
        return ObjectSelection(targets=labels, head=self.head, selected=selected, index=index, rows=row, boxes=boxes,
                               reported=reported)

    # -- the rows ------------------------------------------------------------------------------------

    def watch(self, net: nn.Module, stack: ExitStack) -> _Capture | None:
        return capture(net, stack) if self.torchvision else None

    def choose(self, raw: Any, x: Tensor, seen: Any) -> ObjectSelection:
        """The objects the detector reports on the images themselves (`Detections`): their rows, labels, boxes."""
        if seen is None:
            return self._detr(raw, x)
        if seen.head_outputs:
            return self._single_stage(raw, seen, x)
        return self._torchvision(raw, seen, x)

    def logits(self, raw: Any, x: Tensor, rows: Tensor, seen: Any, chosen: Selection | None, own: bool) -> Tensor:
        """(B', K, C') each chosen object's class-logit row (with its graph): on the images themselves its own row
        (a filler's a row of zeros for torchvision's detectors), on the sampled or perturbed inputs of Integrated
        Gradients, SmoothGrad, occlusion... (``rows``: the image of each) the object followed (`_follow`)."""
        assert isinstance(chosen, ObjectSelection)
        if seen is None:
            logits = raw["logits"] if isinstance(raw, dict) else raw.logits  # (B, Q, C + 1)
            return finite(rows_at(logits, chosen.rows[rows]))
        if own:
            if seen.head_outputs:
                y = rows_at(seen.head_outputs["cls_logits"], chosen.rows)
            else:
                per_image = self._class_rows(seen)
                y = torch.stack([p[chosen.rows[i]] if len(p) else p.new_zeros(chosen.rows.shape[1], p.shape[-1])
                                 for i, p in enumerate(per_image)])
            assert chosen.selected is not None
            return finite(y * chosen.selected[..., None].to(y.dtype))  # fillers: no object, no gradient
        return finite(self._follow(seen, x, rows, chosen))

    def resolve(self, y: Tensor, head: str, chosen: Selection | None) -> Selection:
        assert isinstance(chosen, ObjectSelection)
        return dataclasses.replace(chosen, head=head)

    def _detr(self, output: Any, x: Tensor) -> ObjectSelection:
        logits = output["logits"] if isinstance(output, dict) else output.logits  # (B, Q, C + 1)
        boxes = output["pred_boxes"] if isinstance(output, dict) else output.pred_boxes  # (B, Q, 4) cx cy w h
        p = torch.softmax(logits.detach().double(), -1)[..., :-1]
        score, label = p.max(-1)  # as the model's own post-processing: the best real class
        selected, query = self._layout(self._choose(list(score)), logits.device)
        h, w = x.shape[-2:]
        cx, cy, bw, bh = rows_at(boxes.detach(), query).unbind(-1)
        scale = torch.tensor([w, h, w, h], device=boxes.device, dtype=boxes.dtype)
        corners = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * scale
        return ObjectSelection(targets=label.gather(1, query), head=self.head, selected=selected, index=query,
                               rows=query, boxes=corners, reported=score.gather(1, query).to(logits.dtype),
                               proposal=False)

    def _single_stage(self, output: Any, got: _Capture, x: Tensor) -> ObjectSelection:
        """RetinaNet / FCOS: each detection's row is the class logits of the anchor (location) it came
        from: the one whose score at the label is the reported score (RetinaNet: sigma(y); FCOS:
        sqrt(sigma(y) sigma(centerness))), nearest the reported box when several tie."""
        from torchvision.models.detection.transform import resize_boxes
        from torchvision.ops import boxes as box_ops

        logits = got.head_outputs["cls_logits"]  # (B, anchors, C)
        ctr = got.head_outputs.get("bbox_ctrness")
        coder = self.net.box_coder

        def match(i: int, d: int, label: int) -> int:
            y = torch.sigmoid(logits[i, :, label].detach())
            scores = y if ctr is None else torch.sqrt(y * torch.sigmoid(ctr[i, :, 0].detach()))
            found = (scores == output[i]["scores"][d].detach()).nonzero()[:, 0]
            if len(found) == 0:
                raise ClassContrastError(f"{type(self.net).__name__}: detection {d} of image {i} matches no "
                                         "location's class logits (a changed post-processing?)")
            if len(found) > 1:  # ties: the location whose decoded box is the reported box
                reg = got.head_outputs["bbox_regression"][i].detach()[found]
                decode = getattr(coder, "decode_single", None) or coder.decode
                boxes = box_ops.clip_boxes_to_image(decode(reg, got.anchors[i][found]), got.image_shapes[i])
                boxes = resize_boxes(boxes, got.image_shapes[i], tuple(x.shape[-2:]))
                found = found[(boxes - output[i]["boxes"][d].detach()).abs().sum(-1).argmin()][None]
            return int(found[0])

        return self._from_rows(output, self._choose([d["scores"] for d in output]), match, x)

    def _torchvision(self, output: Any, got: _Capture, x: Tensor) -> ObjectSelection:
        if not got.heads_output:
            raise ClassContrastError(f"{type(self.net).__name__}: its ROI heads did not run (no proposals)")
        logits, decoded = self._proposals(got)

        per_image: dict[int, tuple[Tensor, Tensor]] = {}  # each image's probabilities and clipped boxes, once

        def match(i: int, d: int, label: int) -> int:
            if i not in per_image:
                per_image[i] = torch.softmax(logits[i].detach(), -1), _clip(decoded[i], got.image_shapes[i])
            p, clipped = per_image[i]
            score, box = got.heads_output[i]["scores"][d], got.heads_output[i]["boxes"][d]
            found = ((p[:, label] == score) & (clipped[:, label] == box).all(-1)).nonzero()[:, 0]
            if len(found) == 0:
                raise ClassContrastError(f"{type(self.net).__name__}: detection {d} of image {i} matches no "
                                         "proposal's class logits (a changed post-processing?)")
            return int(found[0])

        return self._from_rows(output, self._choose([d["scores"] for d in output]), match, x)

    def _class_rows(self, got: _Capture) -> Sequence[Tensor]:
        """A two-stage detector's proposals' class logits per input (with their graph)."""
        if got.class_logits is None or got.box_regression is None:
            raise ClassContrastError(f"{type(self.net).__name__}: its ROI heads did not run (no proposals)")
        return torch.split(got.class_logits, [len(p) for p in got.proposals])

    def _proposals(self, got: _Capture) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """A two-stage detector's proposals, per input: their class logits (with their graph) and their boxes
        decoded for every class (detached, (N, C·4) in the resized input's pixels)."""
        rows = self._class_rows(got)
        assert got.box_regression is not None  # (checked with the class logits)
        decoded = self.net.roi_heads.box_coder.decode(got.box_regression.detach(), got.proposals)
        return rows, torch.split(decoded, [len(r) for r in rows])

    def _follow(self, got: _Capture, x: Tensor, rows: Tensor, sel: ObjectSelection) -> Tensor:
        r"""(B', K, C) each object's row in another forward pass (a sampled or perturbed input of image
        ``rows[b]``). A single-stage detector's locations (anchors) are fixed by the input's size: the object
        keeps its location's row, as a DETR object keeps its query. A two-stage detector's proposals move with
        the input: the object is followed to the proposal whose box, decoded for the object's label, overlaps
        the object's own box best (highest IoU; the first of equals), the proposal its box regression makes
        the same object — on the unperturbed image, its own proposal."""
        if got.head_outputs:
            return rows_at(got.head_outputs["cls_logits"], sel.rows[rows])  # (B', anchors, C) -> its location's
        from torchvision.models.detection.transform import resize_boxes
        from torchvision.ops import box_iou

        logits, decoded = self._proposals(got)
        out = []
        for b, i in enumerate(rows.tolist()):
            if len(logits[b]) == 0:
                raise ClassContrastError(f"{type(self.net).__name__}: input {b} of a sampled or perturbed batch has "
                                         "no proposal to follow its objects to")
            clipped = _clip(decoded[b], got.image_shapes[b])  # (N, C, 4) in the resized input's pixels
            boxes = resize_boxes(clipped.reshape(-1, 4), got.image_shapes[b], tuple(x.shape[-2:])).view_as(clipped)
            mine = []
            for j in range(sel.rows.shape[1]):
                at = boxes[:, int(sel.targets[i, j])]  # every proposal's box for the object's label, input pixels
                mine.append(logits[b][box_iou(sel.boxes[i, j, None].to(at.dtype), at)[0].argmax()])
            out.append(torch.stack(mine))
        return torch.stack(out)

    # -- objectives ----------------------------------------------------------------------------------

    def cotangents(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, B', K, C'): for contrast m and object k, the contrast's gradient on object k's row (0 on
        the other rows and on fillers); ``rows``: the image of each of the B' inputs (sampling methods)."""
        assert sel.selected is not None
        t, k = sel.targets, y.shape[1]
        out = []
        for contrast in contrasts:
            here = contrast.select(rows, n_images)  # a per-image foil follows its image's inputs
            for j in range(k):
                g = torch.zeros_like(y)
                g[:, j] = here.grad(y[:, j], t[rows, j]) * sel.selected[rows, j, None].to(y.dtype)
                out.append(g)
        return torch.stack(out)

    def objectives(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, B'): each object's contrast on its own row of each input (a DETR query keeps its index: the object
        is followed as the query that reported it); 0 for fillers."""
        assert sel.selected is not None
        keep, t = sel.selected[rows].to(y.dtype), sel.targets
        return torch.stack([c.select(rows, n_images).score(y[:, j], t[rows, j]) * keep[:, j]
                            for c in contrasts for j in range(y.shape[1])])

    def image_logits(self, y: Tensor) -> Tensor:
        return y[:, 0]  # the Explanation's logits: the first object's row

    def fields(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> list[dict[str, Any]]:
        assert isinstance(sel, ObjectSelection)
        records, probabilities = self.records(y, sel), self.probabilities(y, sel.targets, sel.head)
        return [{"units": records, "scores": self.object_scores(c, y, sel.targets),
                 "target_probabilities": probabilities} for c in contrasts]

    @staticmethod
    def object_scores(contrast: Contrast, rows: Tensor, t: Tensor) -> Tensor:
        """(B, K) each object's objective: the contrast on its row."""
        return torch.stack([contrast.score(rows[:, j], t[:, j]) for j in range(rows.shape[1])], 1)

    @staticmethod
    def probabilities(rows: Tensor, t: Tensor, head: str) -> Tensor:
        """(B, K) each object's probability of its target (softmax over its row; sigmoid heads: sigma)."""
        y = rows.double()
        p = head_probabilities(y, head)
        return p.gather(2, t[..., None])[..., 0].to(rows.dtype)

    def records(self, rows: Tensor, sel: ObjectSelection) -> list[list[ObjectUnit]]:
        """`Explanation.units`: per image, one `ObjectUnit` per object (target, its row of logits, box, label,
        score, index in the model's detections, whether it was asked for, and the proposal whose row made it)."""
        assert sel.selected is not None
        t = sel.targets
        return [[ObjectUnit(target=int(t[i, j]), logits=rows[i, j].detach(), box=[float(v) for v in sel.boxes[i, j]],
                            label=int(t[i, j]), score=float(sel.reported[i, j]), index=int(sel.index[i, j]),
                            selected=bool(sel.selected[i, j]),
                            proposal=int(sel.rows[i, j]) if sel.proposal else None)
                 for j in range(t.shape[1])] for i in range(t.shape[0])]


def rows_at(logits: Tensor, index: Tensor) -> Tensor:
    """(B', K, C) the rows ``index`` (B', K) of ``logits`` (B', N, C): each object's query, location or anchor."""
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))


def _clip(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Decoded boxes (N, C·4) clipped to the image as torchvision's post-processing does, as (N, C, 4)."""
    from torchvision.ops import boxes as box_ops

    clipped: Tensor = box_ops.clip_boxes_to_image(boxes.reshape(len(boxes), -1, 4), size)
    return clipped



__all__ = ["ObjectSelection", "ObjectUnits"]
