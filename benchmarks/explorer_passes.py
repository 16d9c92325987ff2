"""How many inputs the model runs on to draw an explorer page, against one explanation of the same units.

A page offers every named contrast and foils among the classes each unit ranks next; it is explained once per
method by one call (after a probe: the gradient, one forward and one backward pass), not once per unit. Counted on
Ultralytics' yolov8 (scale n, random weights, 3 classes) with occlusion, the method whose cost is its forward passes:

    python benchmarks/explorer_passes.py            # inputs run: one explanation, the page, explain --html

``explain --html`` draws its figure from the page's calls when they explain the same units (a classifier's classes,
a detector's objects, a segmenter's regions among the classes the page offers for them), so the whole run costs the
page's. The segmenter: torchvision's LR-ASPP (random weights, 64 × 64), its default region.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from unittest.mock import patch

import torch
from PIL import Image

import classcontrast as cc
from classcontrast.cli.main import main as command_line


def yolo(folder: Path) -> cc.ModelBundle:
    from ultralytics.nn import tasks

    shipped = Path(tasks.__file__).parent.parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    path = folder / "yolov8n.yaml"
    path.write_text(shipped.read_text().replace("nc: 80", "nc: 3"))
    return cc.load_model(f"yolo:{path}", weights=None, imgsz=64)


def counted(model: torch.nn.Module) -> list[int]:
    """A counter of the inputs ``model`` runs on (its forward pre-hook stays: a benchmark's model)."""
    seen = [0]
    model.register_forward_pre_hook(lambda _m, args: seen.__setitem__(0, seen[0] + len(args[0])))
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = yolo(Path(tmp))
        x = torch.rand(1, 3, 64, 64)
        warnings.simplefilter("ignore")  # a random network's maps may be all zero: only the passes are counted
        spec = cc.Detections(top=args.objects, threshold=0.0)
        options = {"window": 16, "stride": 16}
        seen = counted(bundle.model)
        cc.explain(bundle, x, "occlusion", ["original", "weighted"], spec, **options)
        one = seen[0]
        seen[0] = 0
        cc.write_explorer(Path(tmp) / "page.html", bundle, x, ["occlusion"], spec, **options)
        print(f"occlusion, {args.objects} objects: one explanation runs the model on {one} inputs; the page on "
              f"{seen[0]} ({seen[0] / one:.2f}x)")
        seen[0] = 0
        image = Path(tmp) / "photo.png"
        Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(image)
        with patch("classcontrast.models.load_model", lambda *_, **__: bundle):
            try:
                command_line(["explain", str(image), "--model", "yolo:yolov8n.yaml", "--method", "occlusion",
                              "--window", "16", "--stride", "16", "--detections", str(args.objects), "--min-score",
                              "0", "--quiet", "--out", str(Path(tmp) / "why.png"), "--html",
                              str(Path(tmp) / "why.html")])
            except SystemExit as e:
                if e.code:
                    raise
        print(f"explain --html (figure and page): {seen[0]} inputs ({seen[0] / one:.2f}x one explanation)")
        segmenter(Path(tmp), image, {"window": 128, "stride": 128})


def segmenter(tmp: Path, image: Path, options: dict[str, int]) -> None:
    """A segmenter's explain --html with occlusion: its figure's default region from the page's calls."""
    bundle = cc.load_model("torchvision:lraspp_mobilenet_v3_large", weights="none")
    seen = counted(bundle.model)
    with Image.open(image) as im:
        x = bundle.transform(im.convert("RGB"))[None]
    cc.explain(bundle, x, "occlusion", ["original", "weighted"], **options)
    one, seen[0] = seen[0], 0
    with patch("classcontrast.models.load_model", lambda *_, **__: bundle):
        try:
            command_line(["explain", str(image), "--model", "torchvision:lraspp_mobilenet_v3_large", "--method",
                          "occlusion", "--window", "128", "--stride", "128", "--quiet", "--out", str(tmp / "seg.png"),
                          "--html", str(tmp / "seg.html")])
        except SystemExit as e:
            if e.code:
                raise
    print(f"segmenter, occlusion, its default region: one explanation runs the model on {one} inputs; explain --html "
          f"(figure and page) on {seen[0]} ({seen[0] / one:.2f}x)")


if __name__ == "__main__":
    main()
