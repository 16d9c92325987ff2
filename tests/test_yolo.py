"""Ultralytics YOLO detection and segmentation models as detectors: the objects are Ultralytics' own NMS output
(scores, boxes, classes, masks), each object's row is its anchor's class logits (sigmoid at the label = the score,
exactly), and every method x contrast equals the same method on the classifier made of that anchor's row (and,
for the gradient, plain autograd) in float64."""

from __future__ import annotations

import importlib.util
import types
import warnings

import pytest
import torch
from torch import nn

import classcontrast as cc
from classcontrast.units.yolo import import_ultralytics

if importlib.util.find_spec("ultralytics") is None:  # not importorskip: its import would change the process
    pytest.skip("Ultralytics is not installed", allow_module_level=True)
# imported so that the rest of the test session is left as it was (Ultralytics' import changes the process)
tasks, nms, ops, augment, package = import_ultralytics("ultralytics.nn.tasks", "ultralytics.utils.nms",
                                                       "ultralytics.utils.ops", "ultralytics.data.augment",
                                                       "ultralytics")
DetectionModel, SegmentationModel = tasks.DetectionModel, tasks.SegmentationModel
non_max_suppression, process_mask = nms.non_max_suppression, ops.process_mask

NC = 5


def _spread(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise the random model so that its class scores spread (the yaml's prior makes every score ~0.003)."""
    g = torch.Generator().manual_seed(seed)
    fixed = set(model.model[-1].dfl.modules())  # the DFL's fixed bin weights decode distances: kept
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m not in fixed:
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
        for branch in model.model[-1].cv3:
            branch[-1].weight.mul_(8.0)
            branch[-1].bias.zero_()
    return model.double().eval()


@pytest.fixture(scope="module")
def yolo() -> nn.Module:
    return _spread(DetectionModel("yolov8n.yaml", nc=NC, verbose=False), 0)


@pytest.fixture(scope="module")
def yolo_seg() -> nn.Module:
    return _spread(SegmentationModel("yolov8n-seg.yaml", nc=NC, verbose=False), 1)


X = torch.rand(2, 3, 96, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(4))


class _Anchor(nn.Module):
    """The reference classifier: one anchor's row of class logits (B, C)."""

    def __init__(self, model: nn.Module, anchor: int) -> None:
        super().__init__()
        self.detector, self.anchor = model, anchor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector(x)[1]["scores"][:, :, self.anchor]


@pytest.mark.parametrize("fixture", ["yolo", "yolo_seg"])
def test_the_objects_are_ultralytics_own_detections(fixture: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture)
    with torch.no_grad():
        raw = model(X)
    decoded, preds = raw
    proto = None
    if isinstance(decoded, tuple):
        decoded, proto = decoded
    found, keep = non_max_suppression(decoded, 0.25, 0.7, max_det=300, nc=NC, return_idxs=True)
    assert all(len(f) >= 3 for f in found), "the re-initialised model should detect several objects"
    # every detection scoring at least Ultralytics' 0.25 (occlusion by one window: a single extra forward)
    ex = cc.explain(model, X, "occlusion", "original", cc.Detections(), window=(3, 96, 128))
    assert ex.head == "sigmoid" and ex.maps.shape[1] == max(len(f) for f in found)
    for i in range(2):
        mine = [u for u in ex.units[i] if u["selected"]]
        assert len(mine) == len(found[i])
        for j, u in enumerate(mine):
            assert u["score"] == float(found[i][j, 4]) and u["label"] == int(found[i][j, 5]) == u["target"]
            assert u["box"] == found[i][j, :4].tolist() and u["anchor"] == int(keep[i][j])
            row = preds["scores"][i, :, u["anchor"]]
            # exactly the reported score (sigmoid of the whole tensor, as the head computes it)
            assert float(torch.sigmoid(preds["scores"])[i, u["label"], u["anchor"]]) == u["score"]
            torch.testing.assert_close(u["logits"], row, rtol=0, atol=0)
            if proto is not None:
                want = process_mask(proto[i], found[i][j : j + 1, 6:].float(), found[i][j : j + 1, :4].float(),
                                    (96, 128), upsample=True)[0].bool()
                assert torch.equal(u["mask"], want)
    fewer = cc.explain(model, X, "occlusion", "original", cc.Detections(top=2, threshold=0.3, iou=0.5, max_det=10),
                       window=(3, 96, 128))
    strict, _ = non_max_suppression(decoded, 0.3, 0.5, max_det=10, nc=NC, return_idxs=True)
    assert [u["score"] for u in fewer.units[0]] == strict[0][:2, 4].tolist()


METHODS = {"gradient": {}, "gradient_x_input": {}, "gradcam": {}, "gradcam_plus_plus": {},
           "integrated_gradients": {"steps": 3}, "occlusion": {"window": 32, "stride": 32}}
CONTRASTS = ["original", "mean", "max", "weighted", "probability", cc.Foil(0)]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_and_contrast_is_the_anchors_row(yolo: nn.Module, method: str) -> None:
    """Two objects of each of two images, six contrasts, one call: each map equals the method on the classifier
    made of the object's anchor row (sigmoid head), and the gradient equals autograd on that row."""
    opts = METHODS[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)  # weighted = original under a sigmoid head
        ex = cc.explain(yolo, X, method, CONTRASTS, cc.Detections(top=2), **opts)
    assert ex["weighted"].layer in (None, "model.9") and ex["original"].maps.shape == (2, 2, 96, 128)
    for key, contrast in zip(ex, CONTRASTS, strict=True):
        for i in range(2):
            for j, u in enumerate(ex[key].units[i]):
                reference = _Anchor(yolo, u["anchor"])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", cc.ClassContrastWarning)
                    want = cc.explain(reference, X[i : i + 1], method, contrast, u["target"], head="sigmoid",
                                      layer="detector.model.9" if "cam" in method else None, **opts).maps[0, 0]
                torch.testing.assert_close(ex[key].maps[i, j], want, rtol=1e-7, atol=1e-10)
                if method == "gradient":
                    leaf = X[i : i + 1].clone().requires_grad_(True)
                    spec = cc.get_contrast(contrast).for_head("sigmoid")
                    (g,) = torch.autograd.grad(spec.score(reference(leaf), torch.tensor([u["target"]])).sum(), leaf)
                    torch.testing.assert_close(ex[key].maps[i, j], g[0].sum(0), rtol=1e-7, atol=1e-10)


def test_segmentation_objects_and_the_wrapper(yolo_seg: nn.Module) -> None:
    """A segmentation model's objects are explained as a detection model's (their rows); Ultralytics' ``YOLO``
    wrapper is looked through."""
    ex = cc.explain(yolo_seg, X, "gradcam", ["max", cc.Foil(1)], cc.Detections(top=2))
    for i in range(2):
        for j, u in enumerate(ex["max"].units[i]):
            want = cc.explain(_Anchor(yolo_seg, u["anchor"]), X[i : i + 1], "gradcam", "max", u["target"],
                              head="sigmoid", layer="detector.model.9").maps[0, 0]
            torch.testing.assert_close(ex["max"].maps[i, j], want, rtol=1e-7, atol=1e-10)
            assert u["mask"].shape == (96, 128) and u["mask"].dtype == torch.bool
    wrapper = package.YOLO("yolov8n.yaml")
    assert cc.engine.unwrap_model(wrapper) is wrapper.model


def test_letterbox_is_ultralytics_and_undoes() -> None:
    """The bundle's letterbox is Ultralytics' predictor's (within one grey level: OpenCV's fixed-point bilinear), and
    `undo` takes a map on the letterboxed input back onto the image."""
    import numpy as np
    from PIL import Image

    from classcontrast.models.preprocess import Letterbox

    LetterBox = augment.LetterBox

    for h, w in [(300, 451), (640, 200), (33, 47)]:
        a = (np.random.default_rng(h).random((h, w, 3)) * 255).astype(np.uint8)
        theirs = LetterBox((640, 640), auto=True, stride=32)(image=a[..., ::-1].copy())[..., ::-1].astype(int)
        mine = Letterbox()(Image.fromarray(a))
        assert mine.shape[1:] == theirs.shape[:2]
        assert np.abs((mine * 255).round().permute(1, 2, 0).numpy().astype(int) - theirs).max() <= 1
        ramp = torch.arange(w, dtype=torch.float64).expand(h, w)  # a map that is the image's own x coordinate
        box = Letterbox()
        nh, nw, top, _, left, _ = box.geometry(h, w)
        on_input = torch.full(mine.shape[1:], -1.0, dtype=torch.float64)
        on_input[top : top + nh, left : left + nw] = torch.nn.functional.interpolate(
            ramp[None, None], size=(nh, nw), mode="bilinear", align_corners=False)[0, 0]
        back = box.undo(on_input, h, w)
        assert back.shape == (h, w) and (back >= -1e-9).all()  # none of the padding comes back
        assert box.undo_box([left, top, left + nw, top + nh], h, w) == pytest.approx([0, 0, w, h])


def test_the_command_line_explains_a_yolo_model(yolo: nn.Module, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--model yolo:yolov8n.yaml --weights state.pt` (a state dict, loaded safely): maps, boxes on the user's image;
    an Ultralytics checkpoint needs --trust-checkpoint."""
    import numpy as np

    from tests.test_cli import run

    state = tmp_path / "state.pt"
    torch.save({k: v.float() for k, v in yolo.state_dict().items()}, state)
    image = cc.sample_image("astronaut").resize((256, 192))
    image.save(tmp_path / "a.png")
    base = ["explain", str(tmp_path / "a.png"), "--model", "yolo:yolov8n.yaml", "--num-classes", str(NC)]
    assert run([*base, "--weights", str(state), "--detections", "2", "--method", "gradcam", "--contrast", "max",
                "--out", str(tmp_path / "why.png"), "--save-maps", str(tmp_path / "m.npz")]) == 0
    z = np.load(tmp_path / "m.npz")
    assert z["maps/gradcam/max"].shape == (1, 2, 192, 256)  # the user's image, not the letterboxed 256 x 256 input
    bundle = cc.load_model("yolo:yolov8n.yaml", weights=str(state), num_classes=NC)
    x = bundle.transform(image)[None]
    assert x.shape == (1, 3, 192, 256) or x.shape[-1] % 32 == 0
    ex = cc.explain(bundle, x, "gradcam", "max", cc.Detections(top=2))
    for j, u in enumerate(ex.units[0]):
        assert z["boxes"][0, j].tolist() == pytest.approx(bundle.preprocess.undo_box(u["box"], 192, 256))
        assert (z["boxes"][0, j] >= 0).all() and (z["boxes"][0, j] <= [256, 192, 256, 192]).all()
    np.testing.assert_allclose(z["maps/gradcam/max"][0], bundle.preprocess.undo(ex.maps, 192, 256)[0].numpy(),
                               rtol=1e-4, atol=1e-6)
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=NC, verbose=False)}, checkpoint)
    capsys.readouterr()
    assert run(["explain", str(tmp_path / "a.png"), "--model", f"yolo:{checkpoint}", "--out",
                str(tmp_path / "c.png")]) == 2
    assert "pass --trust-checkpoint" in capsys.readouterr().err
    assert run(["explain", str(tmp_path / "a.png"), "--model", f"yolo:{checkpoint}", "--trust-checkpoint",
                "--min-score", "0", "--detections", "1", "--out", str(tmp_path / "c.png")]) == 0


def test_classcontrast_never_imports_ultralytics_and_undoes_its_import() -> None:
    """No Ultralytics import unless a YOLO model is explained; when one is, the process is left as it was (its
    import sets OMP_NUM_THREADS=1 for every later subprocess and patches PIL.Image.open and torch.save)."""
    import os
    import subprocess
    import sys

    code = ("import os, sys, torch, PIL.Image, classcontrast as cc; "
            "net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)); "
            "cc.explain(net, torch.rand(1, 3, 2, 2), 'gradient'); assert 'ultralytics' not in sys.modules; "
            "before = (dict(os.environ), PIL.Image.open, torch.save); "
            "bundle = cc.load_model('yolo:yolov8n.yaml', weights=None); "
            "objects = cc.Detections(threshold=0.0, top=1); "
            "cc.explain(bundle, torch.rand(1, 3, 64, 64), 'gradient', 'original', objects); "
            "assert 'ultralytics' in sys.modules and (dict(os.environ), PIL.Image.open, torch.save) == before")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_the_explorer_shows_yolo_objects_and_their_masks(yolo_seg: nn.Module) -> None:
    """One entry per object with its box and instance mask, its classes' probabilities under the sigmoid head."""
    from classcontrast.explorer.compute import explorer_data

    data = explorer_data(yolo_seg, X[:1], ["gradient"], cc.Detections(top=2))
    ex = cc.explain(yolo_seg, X[:1], "gradient", "original", cc.Detections(top=2))
    entries = [e for e in data["entries"] if e.get("unit")]
    assert [e["unit"]["kind"] for e in entries] == ["object", "object"]
    for e, u in zip(entries, ex.units[0], strict=True):
        assert e["unit"]["mask"]["rows"] and len(e["unit"]["mask"]["rows"]) == int(e["unit"]["mask"]["h"])
        assert e["top"][0][1] == pytest.approx(float(torch.sigmoid(u["logits"]).max()))  # sigma, not a softmax


def test_a_page_and_a_figure_share_one_call_per_method(yolo: nn.Module) -> None:
    """explain --html draws its figure from the page's calls: the page explains the objects the figure asks for
    (the same Detections, fillers included) under the figure's contrasts and its own, so the figure's maps from the
    page's results equal a call of their own (a method that costs a sweep, occlusion, runs once)."""
    from classcontrast.cli.explain_run import _asked
    from classcontrast.explorer.offers import PageRequest, offered_groups

    spec = cc.Detections(top=3, threshold=0.0)
    asked = (cc.get_contrast("original"), cc.Foil(2))
    req = PageRequest(("gradient", "occlusion"), asked=asked, options={"window": 8, "stride": 8})
    groups = offered_groups(yolo, X[:2], req, spec, ["a", "b"])
    assert len(groups) == 2 and all(g.asked is not None for g in groups)
    bundle = types.SimpleNamespace(categories=None)
    for (method, key), ex in _asked(groups, list(req.methods), list(asked), bundle):
        own = cc.explain(yolo, X[:2], method, list(asked), spec, **({"window": 8, "stride": 8}
                                                                  if method == "occlusion" else {}))[key]
        torch.testing.assert_close(ex.maps, own.maps)
        assert torch.equal(ex.targets, own.targets) and [u.index for u in ex.units[0]] == \
            [u.index for u in own.units[0]]
    assert set(groups[0].results["gradient"]) > {"original", "foil:2", "weighted", "max"}  # the page's own too


def test_instance_masks_ask_why_these_pixels_are_this_instance(yolo_seg: nn.Module) -> None:
    """The pixel-level question of a segmentation model: cc.InstanceMasks' logits are Ultralytics' mask logits
    (positive exactly on the instance's mask), and a region's map over them equals autograd of the summed contrast
    over the instance's pixels, against background and the other instances."""
    x = X[:1]
    ex = cc.explain(yolo_seg, x, "gradient", "original", cc.Detections(top=3))
    objects = ex.units[0]
    masks = cc.InstanceMasks(yolo_seg, objects)
    with torch.no_grad():
        logits = masks(x)
        (_, proto), preds = yolo_seg(x)
    assert logits.shape == (1, 4, 96, 128) and (logits[:, 0] == 0).all()
    for k, u in enumerate(objects):
        coefficients = preds["mask_coefficient"][0, :, u["anchor"]]
        raw = torch.nn.functional.interpolate((coefficients @ proto[0].flatten(1)).view(1, 1, *proto.shape[-2:]),
                                              size=(96, 128), mode="bilinear", align_corners=False)[0, 0]
        inside = logits[0, k + 1] > -1e4
        torch.testing.assert_close(logits[0, k + 1][inside], raw[inside])
        assert ((logits[0, k + 1] > 0) == u["mask"]).float().mean() > 0.999  # float32 vs float64 at the zero crossing
    sizes = [int(u["mask"].sum()) for u in objects]
    k = min((j for j in range(len(objects)) if sizes[j] > 50), key=lambda j: sizes[j])  # the smallest real one
    region = logits[0, k + 1] > 0
    assert 50 < int(region.sum()) < region.numel()  # a real instance, not the whole image
    for contrast in ("original", "weighted", cc.Foil(0)):
        mine = cc.explain(masks, x, "gradient", contrast, cc.Region(k + 1, region)).maps[0, 0]
        leaf = x.clone().requires_grad_(True)
        pixels = masks(leaf)[0].flatten(1).T[region.flatten()]  # (N, 1 + K)
        spec = cc.get_contrast(contrast)
        (g,) = torch.autograd.grad(spec.score(pixels, torch.full((len(pixels),), k + 1)).sum(), leaf)
        torch.testing.assert_close(mine, g[0].sum(0), rtol=1e-7, atol=1e-10)
    with pytest.raises(cc.ClassContrastError, match="needs a YOLO segmentation model's objects"):
        cc.InstanceMasks(yolo_seg, [])


def test_the_explorer_keeps_the_threshold_it_was_given() -> None:
    """Each object's entry is explained again by its index in the detections made with the call's threshold (a YOLO
    model's list depends on it): a threshold below Ultralytics' default keeps its objects on the page (a random
    model's scores are all below 0.25)."""
    from classcontrast.explorer.compute import explorer_data

    bundle = cc.load_model("yolo:yolov8n.yaml", weights=None, num_classes=NC)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    low = cc.Detections(top=2, threshold=0.0)
    ex = cc.explain(bundle, x, "gradient", "original", low)
    data = explorer_data(bundle, x, ["gradient"], low)
    assert [e["unit"]["score"] for e in data["entries"]] == [u["score"] for u in ex.units[0]]
