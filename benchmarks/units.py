"""Regions and detected objects: many maps from one call, against their floor and one call per map.

* Segmentation: torchvision's LR-ASPP MobileNetV3 (random weights), K = 5 regions × 4 contrasts (original,
  mean, max, weighted) = 20 GradCAM maps at the automatic layer, from one `cc.explain` call. The floor is
  plain torch: one forward pass with the layer kept, then one `torch.autograd.grad` per objective from the
  logits to the layer (20: regions' objectives share no low-rank basis). The peer is pytorch-grad-cam
  making the same 20 maps, one call per map (`SemanticSegmentationTarget` for original, the region's
  contrast as a callable target for the others).
* Detection: torchvision's Faster R-CNN MobileNetV3-320 (random weights, its box head made to detect), 5
  objects × 4 contrasts; the floor is one forward and 20 gradients from the objects' rows to the layer;
  "one call per map" is `cc.explain` called 20 times, once per (object, contrast), as a per-map library does.

* YOLO: Ultralytics YOLOv8n from its yaml (random weights), 5 objects × 4 contrasts, the same three timings.

    python benchmarks/units.py --repeats 3
    python benchmarks/units.py --only yolo
Target (issue): the 20 maps from one call ≤ 1.3× the floor.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

import classcontrast as cc
from classcontrast.layers import find_module

FOUR = ["original", "mean", "max", "weighted"]
TARGET = 1.3


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired(floor: Callable[[], Any], fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median seconds of ``fn``, median ratio to the floor; the two run alternately)."""
    floor()
    fn()
    pairs = [(_time(floor), _time(fn)) for _ in range(repeats)]
    return statistics.median(b for _, b in pairs), statistics.median(b / a for a, b in pairs)


def _kept(layer: torch.nn.Module, store: list[torch.Tensor]) -> Any:
    def hook(_m: Any, _i: Any, o: torch.Tensor) -> torch.Tensor:
        store.append(o.detach().requires_grad_())  # the graph starts at the layer
        return store[-1]

    return layer.register_forward_hook(hook)


def segmentation(repeats: int, size: int) -> None:
    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, size, size)
    probe = cc.explain(model, x, "gradcam", "original", cc.Region.all(5))
    layer_name, t = probe.layer, probe.targets[0]
    layer = find_module(model, layer_name)[1]
    masks = torch.stack([u["mask"] for u in probe.units[0]])  # the 5 regions' pixels
    contrasts = [cc.get_contrast(c) for c in FOUR]

    def objective(out: torch.Tensor, c: cc.Contrast, cls: int, mask: torch.Tensor) -> torch.Tensor:
        pixels = out.permute(1, 2, 0).reshape(-1, out.shape[0])
        score = c.score(pixels, torch.full((len(pixels),), cls))
        return (score.reshape(mask.shape) * mask).sum()

    def floor() -> None:
        store: list[torch.Tensor] = []
        h = _kept(layer, store)
        try:
            with torch.enable_grad():
                out = model(x)["out"][0]
                for c in contrasts:
                    for k in range(5):
                        torch.autograd.grad(objective(out, c, int(t[k]), masks[k]), store[0], retain_graph=True)
        finally:
            h.remove()

    def ours() -> None:
        cc.explain(model, x, "gradcam", FOUR, cc.Region.all(5))

    seconds, ratio = paired(floor, ours, repeats)
    print(f"segmentation, LR-ASPP MobileNetV3 {size}×{size}, 5 regions × 4 contrasts = 20 GradCAM maps at "
          f"{layer_name}:")
    print(f"  classcontrast, one call: {seconds:.3f} s = {ratio:.2f}× the floor (target ≤ {TARGET}×)")
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        print("  pytorch-grad-cam: not installed")
        return
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    class Plain(torch.nn.Module):  # pytorch-grad-cam needs a tensor output
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["out"]

    plain = Plain().eval()

    def peer() -> None:  # pytorch-grad-cam as its users run it: parameters requiring grad
        for p in model.parameters():
            p.requires_grad_(True)
        for c in contrasts:
            for k in range(5):
                target: Any = SemanticSegmentationTarget(int(t[k]), masks[k].float().numpy()) if c.name == "original" \
                    else (lambda out, c=c, k=k: objective(out, c, int(t[k]), masks[k]))
                with GradCAM(plain, [layer]) as cam:
                    cam(x, targets=[target])
        for p in model.parameters():
            p.requires_grad_(False)

    peer_s, peer_ratio = paired(floor, peer, repeats)
    print(f"  pytorch-grad-cam, 20 calls: {peer_s:.3f} s = {peer_ratio:.2f}× the floor; classcontrast is "
          f"{peer_s / seconds:.1f}× faster")


def detection(repeats: int) -> None:
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[2] = 6.0  # a random head detects nothing
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, 240, 320)
    probe = cc.explain(model, x, "gradcam", "original", cc.Detections(top=5))
    layer_name = probe.layer
    layer = find_module(model, layer_name)[1]
    proposals = [u["proposal"] for u in probe.units[0]]
    labels = [u["label"] for u in probe.units[0]]
    contrasts = [cc.get_contrast(c) for c in FOUR]

    def floor() -> None:
        store: list[torch.Tensor] = []
        rows: list[torch.Tensor] = []
        h = _kept(layer, store)
        h2 = model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: rows.append(o[0]))
        try:
            with torch.enable_grad():
                model(x)
                for c in contrasts:
                    for p, label in zip(proposals, labels, strict=True):
                        score = c.score(rows[0][p][None], torch.tensor([label])).sum()
                        torch.autograd.grad(score, store[0], retain_graph=True)
        finally:
            h.remove()
            h2.remove()

    def ours() -> None:
        cc.explain(model, x, "gradcam", FOUR, cc.Detections(top=5))

    def per_map() -> None:
        for c in FOUR:
            for j in range(5):
                cc.explain(model, x, "gradcam", c, cc.Detections(indices=[probe.units[0][j]["index"]]))

    _objects(f"Faster R-CNN MobileNetV3-320, 5 objects × 4 contrasts = 20 GradCAM maps at {layer_name}", floor,
             ours, per_map, repeats)


def _objects(title: str, floor: Callable[[], Any], ours: Callable[[], Any], per_map: Callable[[], Any],
             repeats: int) -> None:
    """Print one call and one call per map against the floor (detected objects)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)  # weighted = original under a sigmoid head
        seconds, ratio = paired(floor, ours, repeats)
        per_s, per_ratio = paired(floor, per_map, repeats)
    print(f"detection, {title}:")
    print(f"  classcontrast, one call: {seconds:.3f} s = {ratio:.2f}× the floor (target ≤ {TARGET}×)")
    print(f"  one call per map (20): {per_s:.3f} s = {per_ratio:.2f}× the floor; one call is "
          f"{per_s / seconds:.1f}× faster")


def yolo(repeats: int) -> None:
    """Ultralytics YOLOv8n built from its yaml (random weights; the objects are its 5 best anchors), 5 objects ×
    4 contrasts at its default layer (SPPF); the floor is one forward and 20 gradients from the anchors' rows to it."""
    if importlib.util.find_spec("ultralytics") is None:
        print("YOLO: Ultralytics is not installed (pip install 'classcontrast[yolo]'): skipped")
        return
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, 480, 640)
    objects = cc.Detections(top=5, threshold=0.0)  # random weights: every score is near the prior
    probe = cc.explain(model, x, "gradcam", "original", objects)
    layer_name = probe.layer
    layer = find_module(model, layer_name)[1]
    anchors = [u["anchor"] for u in probe.units[0]]
    labels = [u["label"] for u in probe.units[0]]
    contrasts = [cc.get_contrast(c).for_head("sigmoid") for c in FOUR]

    def floor() -> None:
        store: list[torch.Tensor] = []
        h = _kept(layer, store)
        try:
            with torch.enable_grad():
                scores = model(x)[1]["scores"]  # (1, C, anchors) class logits
                for c in contrasts:
                    for a, label in zip(anchors, labels, strict=True):
                        score = c.score(scores[:, :, a], torch.tensor([label])).sum()
                        torch.autograd.grad(score, store[0], retain_graph=True)
        finally:
            h.remove()

    def ours() -> None:
        cc.explain(model, x, "gradcam", FOUR, objects)

    def per_map() -> None:
        for c in FOUR:
            for j in range(5):
                cc.explain(model, x, "gradcam", c, cc.Detections(indices=[probe.units[0][j]["index"]], threshold=0.0))

    _objects(f"Ultralytics YOLOv8n 480×640, 5 objects × 4 contrasts = 20 GradCAM maps at {layer_name}", floor, ours,
             per_map, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--only", choices=["segmentation", "detection", "yolo"], default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    ap_only = args.only
    if ap_only in (None, "segmentation"):
        segmentation(args.repeats, args.size)
    if ap_only in (None, "detection"):
        detection(args.repeats)
    if ap_only in (None, "yolo"):
        yolo(args.repeats)


if __name__ == "__main__":
    main()
