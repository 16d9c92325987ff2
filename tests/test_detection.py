"""Detected objects as explained units, on randomly initialised detectors (offline): a DETR-style Hugging
Face model (YOLOS: ``logits`` (B, queries, C + 1) with "no object" last) and torchvision's Faster R-CNN.
Every contrast's map of an object equals autograd of that contrast on the object's own row of class logits
through the raw model; the detections are the model's own (its post-processing), and the score it
reports is the softmax of that row at the label, exactly."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.test_cli import run

CONTRASTS = ["original", "mean", "max", "weighted", "probability"]


class _Yolos(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> object:
        return self.model(pixel_values=x)


@pytest.fixture(scope="module")
def yolos() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                   image_size=[64, 64], patch_size=16, num_detection_tokens=6, num_labels=5)
    torch.manual_seed(0)
    model = transformers.YolosForObjectDetection(cfg).double().eval()
    with torch.no_grad():  # spread the queries' classes so that they differ
        model.class_labels_classifier.layers[-1].bias.copy_(torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0, -3.0]))
        model.vit.embeddings.detection_tokens.normal_(0, 1.0)  # initialised to zeros: every query the same
        model.bbox_predictor.layers[-1].weight.normal_(0, 2.0)
    return _Yolos(model)


def test_detr_style_objects_against_autograd_through_the_raw_model(yolos: nn.Module) -> None:
    transformers = pytest.importorskip("transformers")
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    no_object = 5
    contrasts = [*CONTRASTS, cc.Foil(no_object)]
    ex = cc.explain(yolos, x, "gradient", contrasts, cc.Detections(threshold=0.2), keep_channels=True)
    first = ex["weighted"]
    # the detections are the model's own post-processing's: HF's post_process_object_detection
    processor = transformers.YolosImageProcessor()
    with torch.no_grad():
        raw = yolos(x)
    post = processor.post_process_object_detection(raw, threshold=0.2, target_sizes=[(64, 64)] * 2)
    for i in range(2):
        units = [u for u in first.units[i] if u["selected"]]
        assert sorted(u["score"] for u in units) == pytest.approx(sorted(post[i]["scores"].tolist()), abs=1e-12)
        assert units and [u["score"] for u in units] == sorted((u["score"] for u in units), reverse=True)
        for u in units:  # the box, in input pixels, as the model's post-processing gives it
            j = [float(s) for s in post[i]["scores"]].index(pytest.approx(u["score"], abs=1e-12))
            np.testing.assert_allclose(u["box"], post[i]["boxes"][j].tolist(), atol=1e-9)
    leaf = x.clone().requires_grad_(True)
    logits = yolos(leaf).logits  # one forward of the raw model; one backward per object and contrast
    for key, c in zip(ex, contrasts, strict=True):
        e = ex[key]
        for i in range(2):
            for j, u in enumerate(e.units[i]):
                row = logits[i, u["index"]][None]
                assert int(e.targets[i, j]) == int(row[0, :-1].argmax())  # the detection's label
                score = cc.get_contrast(c).score(row, torch.tensor([u["target"]]))
                (g,) = torch.autograd.grad(score.sum(), leaf, retain_graph=True)
                want = g[i] * float(e.selected[i, j])  # fillers (an image with fewer objects) are zero
                torch.testing.assert_close(e.maps[i, j], want, rtol=1e-8, atol=1e-14)
                if e.selected[i, j]:
                    assert float(e.scores[i, j]) == pytest.approx(float(score.detach()), rel=1e-10)


class _Row(nn.Module):
    """One query's row of a DETR-style model as a classifier's logits (B, C + 1): the reference."""

    def __init__(self, model: nn.Module, query: int) -> None:
        super().__init__()
        self.model, self.query = model, query

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits[:, self.query]


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad", "occlusion"])
def test_sampling_methods_on_detr_style_objects(yolos: nn.Module, method: str) -> None:
    """Integrated Gradients, SmoothGrad and occlusion follow the same queries through every sampled input: each
    object's map equals the method on the classifier made of that query's row (several objects per image,
    per-image foils, one call)."""
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    opts = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3, "seed": 1},
            "occlusion": {"window": 32, "stride": 32}}[method]
    ex = cc.explain(yolos, x, method, ["weighted", cc.Foil(torch.tensor([5, 0]))], cc.Detections(top=2, threshold=0.0),
                    **opts)
    for key, contrast in (("weighted", cc.Weighted()), ("foil", None)):
        e = ex[key]
        for i in range(2):
            for j, u in enumerate(e.units[i]):
                c = contrast if contrast is not None else cc.Foil([5, 0][i])
                with warnings.catch_warnings():  # the reference may ask "t rather than t" (0 everywhere)
                    warnings.simplefilter("ignore", cc.ClassContrastWarning)
                    want = cc.explain(_Row(yolos, u["index"]), x[i : i + 1], method, c, u["target"], **opts).maps[0, 0]
                torch.testing.assert_close(e.maps[i, j], want, rtol=1e-7, atol=1e-12)


def test_explicit_detection_indices_and_errors(yolos: nn.Module, tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    ex = cc.explain(yolos, x, "gradient", "weighted", cc.Detections(indices=[4, 1]))
    assert [u["index"] for u in ex.units[0]] == [4, 1]
    with pytest.raises(cc.ClassContrastError, match="detection index 9 is out of range: image 0 has 6 detections"):
        cc.explain(yolos, x, "gradient", "weighted", cc.Detections(indices=[9]))
    with pytest.raises(cc.ClassContrastError, match=r"no detection scores at least 0\.99"):
        cc.explain(yolos, x, "gradient", "weighted", cc.Detections(threshold=0.99))
    with pytest.raises(cc.ClassContrastError, match="Detections targets need a detector"):
        cc.explain(tiny, tiny_x, "gradient", "weighted", cc.Detections())


def _faster_rcnn(num_classes: int = 5) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():  # a random head scores every class near 1/C: make class 2 detectable
        model.roi_heads.box_predictor.cls_score.bias[2] = 6.0
    return model.eval()


def test_faster_rcnn_objects_are_their_proposals_rows() -> None:
    model = _faster_rcnn()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        detections = model(x)
    rows: list[torch.Tensor] = []
    counts: list[int] = []
    hooks = [model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: rows.append(o[0])),
             model.roi_heads.register_forward_pre_hook(lambda m, a: counts.extend(len(p) for p in a[1]))]
    try:
        leaf = x.clone().requires_grad_(True)
        model(leaf)  # an independent forward: the class logits of every proposal, with their graph
    finally:
        for h in hooks:
            h.remove()
    ex = cc.explain(model, x, "gradient", ["weighted", cc.Foil(0)], cc.Detections(top=2, threshold=0.5),
                    keep_channels=True)
    start = [0, counts[0]]  # image i's proposals start there in the concatenated rows
    for key, contrast in (("weighted", cc.Weighted()), ("foil:0", cc.Foil(0))):
        e = ex[key]
        for j in range(2):  # object j of both images in one backward pass (the images are independent)
            total = 0
            for i in range(2):
                u = e.units[i][j]
                d = u["index"]
                assert u["label"] == int(detections[i]["labels"][d]) and u["score"] == float(detections[i]["scores"][d])
                np.testing.assert_array_equal(u["box"], detections[i]["boxes"][d].tolist())
                row = rows[0][start[i] + u["proposal"]]
                assert float(torch.softmax(row.detach(), -1)[u["label"]]) == u["score"]  # exactly the reported score
                total = total + contrast.score(row[None], torch.tensor([u["label"]])).sum()
            (g,) = torch.autograd.grad(total, leaf, retain_graph=True)
            for i in range(2):
                torch.testing.assert_close(e.maps[i, j], g[i], rtol=1e-4, atol=1e-6 * float(g[i].abs().max()))
    # the sampling methods follow each object to its proposal in every sampled input (on the image itself: its own)
    still = cc.explain(model, x, "smoothgrad", ["weighted", cc.Foil(0)], cc.Detections(top=2, threshold=0.5),
                       samples=2, sigma=0.0, keep_channels=True)
    for key in ("weighted", "foil:0"):
        scale = float(ex[key].maps.abs().max())
        torch.testing.assert_close(still[key].maps, ex[key].maps, rtol=1e-4, atol=1e-6 * scale)
    gradcam = cc.explain(model, x, "gradcam", "weighted", cc.Detections(top=2))
    assert gradcam.layer.startswith("backbone.") and gradcam.maps.shape == (2, 2, 96, 128)  # an FPN level


def test_figures_draw_each_objects_box() -> None:
    from matplotlib.patches import Rectangle

    model = _faster_rcnn()
    x = torch.rand(1, 3, 96, 128)
    ex = cc.explain(model, x, "gradcam", ["original", "weighted"], cc.Detections(top=2))
    fig = cc.plot_explanations(list(x), dict(ex), [f"c{i}" for i in range(5)])
    boxes = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 2 * 3  # each object's box on its image and its two maps
    x0, y0, x1, y1 = ex["weighted"].units[0][0]["box"]
    assert y1 > y0
    assert any(b.get_xy() == pytest.approx((x0, y0)) and b.get_width() == pytest.approx(x1 - x0) for b in boxes)
    assert "(object 0)" in fig.axes[0].get_title()


def test_the_command_line_explains_detections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _faster_rcnn()
    torch.save(model.state_dict(), tmp_path / "det.pt")
    cc.sample_image("chelsea").save(tmp_path / "cat.png")
    base = ["explain", str(tmp_path / "cat.png"), "--model", "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
            "--weights", str(tmp_path / "det.pt"), "--num-classes", "5"]
    assert run([*base, "--detections", "2", "--contrast", "weighted", "--foil", "0", "--out",
                str(tmp_path / "why.png"), "--save-maps", str(tmp_path / "maps.npz")]) == 0
    z = np.load(tmp_path / "maps.npz")
    assert z["boxes"].shape == (1, 2, 4) and z["maps/gradcam/foil:class 0"].shape[:2] == (1, 2)
    assert (z["scores"] >= 0.5).all() and (tmp_path / "why.png").stat().st_size > 0
    capsys.readouterr()
    assert run([*base, "--task", "segmentation", "--out", str(tmp_path / "no.png")]) == 2
    err = capsys.readouterr().err
    assert "this model is a detector: its units are the objects it detects" in err
    assert run([*base, "--detections", "2", "--html", str(tmp_path / "objects.html"), "--out",
                str(tmp_path / "o.png")]) == 0
    assert "detected objects" in (tmp_path / "objects.html").read_text()


@pytest.mark.parametrize("arch", ["retinanet_resnet50_fpn", "fcos_resnet50_fpn"])
def test_sigmoid_scored_detectors(arch: str) -> None:
    """RetinaNet and FCOS score each class with its own sigmoid: the object's row is its location's class
    logits (the reported score is sigma(y) at the label, times FCOS's centerness under a square root,
    exactly), the head is sigmoid (weighted = original), and the maps equal autograd on that row."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, arch)(weights=None, weights_backbone=None, num_classes=5,
                                                         min_size=96, max_size=128).eval()
    with torch.no_grad():  # the random head's prior (sigma = 0.01) detects nothing: make class 2 detectable
        model.head.classification_head.cls_logits.bias[2] = 3.0
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        detections = model(x)
    outputs: list[dict[str, torch.Tensor]] = []
    hook = model.head.register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        leaf = x.clone().requires_grad_(True)
        model(leaf)
    finally:
        hook.remove()
    with pytest.warns(cc.ClassContrastWarning, match="the same map as 'original'"):
        ex = cc.explain(model, x, "gradient", ["original", "weighted", cc.Foil(1)], cc.Detections(top=2),
                        keep_channels=True)
    assert ex["original"].head == "sigmoid"
    torch.testing.assert_close(ex["weighted"].maps, ex["original"].maps)
    for j, u in enumerate(ex["original"].units[0]):
        assert u["score"] == float(detections[0]["scores"][u["index"]]) and u["label"] == 2
        row = outputs[0]["cls_logits"][0, u["proposal"]]
        score = torch.sigmoid(row.detach()[2])
        if "bbox_ctrness" in outputs[0]:
            score = torch.sqrt(score * torch.sigmoid(outputs[0]["bbox_ctrness"][0, u["proposal"], 0].detach()))
        assert float(score) == u["score"]  # exactly the reported score
        for key, contrast in (("original", cc.Original()), ("foil:1", cc.Foil(1))):
            (g,) = torch.autograd.grad(contrast.score(row[None], torch.tensor([2])).sum(), leaf, retain_graph=True)
            # float32, and the objectives combined from a low-rank basis: rounding at 1e-6 of the map's range
            torch.testing.assert_close(ex[key].maps[0, j], g[0], rtol=1e-4, atol=1e-5 * float(g[0].abs().max()))


def test_hugging_face_folders_of_detectors_and_segmenters(yolos: nn.Module, tmp_path: Path) -> None:
    """`hf:FOLDER` loads the head the folder was saved with: a detector (its categories end with "no
    object", a foil by name) and a segmenter (regions by name), through the command line."""
    import copy

    transformers = pytest.importorskip("transformers")
    model = copy.deepcopy(yolos.model).float()  # the fixture's stays as it is
    model.config.id2label = {i: f"digit{i}" for i in range(5)}
    model.config.label2id = {f"digit{i}": i for i in range(5)}
    model.save_pretrained(tmp_path / "yolos")
    transformers.YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(tmp_path / "yolos")
    bundle = cc.load_model(f"hf:{tmp_path / 'yolos'}")
    assert bundle.categories[-1] == "no object" and len(bundle.categories) == 6
    cc.sample_image("chelsea").save(tmp_path / "cat.png")
    assert run(["explain", str(tmp_path / "cat.png"), "--model", f"hf:{tmp_path / 'yolos'}", "--detections", "2",
                "--min-score", "0.2", "--foil", "no object", "--method", "gradient", "--out", str(tmp_path / "y.png"),
                "--save-maps", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as z:
        assert "maps/gradient/foil:no object" in z.files and z["boxes"].shape == (1, 2, 4)
    cfg = transformers.SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                       hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
                                       num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                                       num_labels=3, id2label={0: "road", 1: "sidewalk", 2: "sky"},
                                       label2id={"road": 0, "sidewalk": 1, "sky": 2})
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path / "seg")
    transformers.SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "seg")
    assert cc.load_model(f"hf:{tmp_path / 'seg'}").categories == ["road", "sidewalk", "sky"]
    assert run(["explain", str(tmp_path / "cat.png"), "--model", f"hf:{tmp_path / 'seg'}", "--task", "segmentation",
                "--top-k", "1", "--out", str(tmp_path / "s.png"), "--save-maps", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert z["region_masks"].shape[:2] == (1, 1)


def _tile(entry: dict, method: str, j: int, contrast: str) -> np.ndarray:
    """An entry's stored map of its j-th target under ``contrast``, decoded from the page's atlas."""
    from base64 import b64decode
    from io import BytesIO

    from PIL import Image

    from classcontrast.explorer.encode import dequantise

    m = entry["methods"][method]
    codes = np.asarray(Image.open(BytesIO(b64decode(m["atlas"].split(",", 1)[1]))))
    c = m["contrasts"].index(contrast)
    tile = codes[j * m["th"] : (j + 1) * m["th"], c * m["tw"] : (c + 1) * m["tw"]]
    return dequantise(tile, np.array(m["scales"][j][c]))


def test_the_explorer_page_shows_objects_and_regions(yolos: nn.Module, tmp_path: Path) -> None:
    """Objects: one entry per detection, maps equal to `explain` on that object, its box drawn, and a click
    inside another box opens that object. Regions: one entry per region, the classes it ranks next as
    targets (explained over the same pixels), its outline drawn, the other regions one click away."""
    from tools.browser import Browser

    from classcontrast.explorer.compute import explorer_data, write_explorer
    from tests.test_regions import TinySeg

    model = yolos
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    data = explorer_data(model, x, ["gradient"], cc.Detections(top=3, threshold=0.0))
    assert [e["unit"]["kind"] for e in data["entries"]] == ["object"] * 3
    first = data["entries"][0]
    index = int(first["title"].split("(object ")[1].split(",")[0])
    want = cc.explain(model, x, "gradient", "weighted", cc.Detections(indices=[index])).layer_maps[0, 0]
    want = torch.nn.functional.avg_pool2d(want[None], 64 // first["methods"]["gradient"]["th"])[0]  # stored size
    got = _tile(first, "gradient", 0, "weighted")
    np.testing.assert_allclose(got, want.numpy(), atol=float(want.abs().max()) / 100)  # 8-bit storage
    page = write_explorer(tmp_path / "objects.html", model, x, ["gradient"], cc.Detections(top=3, threshold=0.0))
    boxes = [e["unit"]["box"] for e in data["entries"]]
    with Browser() as b:
        b.open(page.resolve().as_uri())
        before = b.settled()
        assert b.eval("document.querySelectorAll('button[data-control=\"unit\"]').length") == 3
        # a click inside another object's box, where it is the smallest box under the click (that one wins)
        grid = [(i / 40, j / 40) for i in range(1, 40) for j in range(1, 40)]
        inside = [[k for k, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= fx <= x1 and y0 <= fy <= y1]
                  for fx, fy in grid]
        area = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]
        smallest = [min(ks, key=lambda k: area[k]) if ks else None for ks in inside]
        k, (fx, fy) = next((c, p) for c, p in zip(smallest, grid, strict=True) if c not in (None, 0))
        b.eval("(() => { const c = document.querySelector('canvas.cc-main'); const r = c.getBoundingClientRect();"
               f" c.dispatchEvent(new MouseEvent('click', {{clientX: r.left + {fx} * r.width, "
               f"clientY: r.top + {fy} * r.height, bubbles: true}})); }})()")
        after = b.settled()
        title = b.eval("document.querySelector('.cc-panel b').textContent")
        assert title == data["entries"][k]["title"] and after != before
    torch.manual_seed(0)  # a random segmenter that predicts two classes on this input
    seg = TinySeg(dict_output=True).eval()
    xs = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    page = write_explorer(tmp_path / "regions.html", seg, xs, ["gradient"], cc.Region.all(2))
    data = explorer_data(seg, xs, ["gradient"], cc.Region.all(2))
    region = data["entries"][0]
    assert region["unit"]["kind"] == "region" and len(region["targets"]) == 3
    mask = cc.explain(seg, xs, "gradient", "original", cc.Region.all(2)).units[0][0]["mask"]
    other = region["targets"][1]
    want = cc.explain(seg, xs, "gradient", cc.Foil(region["targets"][0]), [cc.Region(other, mask)]).layer_maps[0, 0]
    got = _tile(region, "gradient", 1, f"foil:{region['targets'][0]}")
    np.testing.assert_allclose(got, want.numpy(), atol=float(want.abs().max()) / 100)
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        assert b.eval("document.querySelectorAll('button[data-control=\"unit\"]').length") == 2
        b.click('button[data-control="unit"][aria-pressed="false"]')
        b.settled()
        assert "region" in b.eval("document.querySelector('.cc-panel b').textContent")
        assert b.eval("document.querySelector('button[data-control=\"unit\"][aria-pressed=\"true\"]').dataset.value") \
            == data["entries"][1]["id"]


def test_a_detector_is_left_as_found() -> None:
    """Hooks only inside a call, modes and requires_grad restored, no .grad — after a call, and after a
    call that fails (an index past the detections)."""
    from tests.test_hygiene import _assert_untouched, _snapshot

    model = _faster_rcnn()
    model.roi_heads.train()  # a mixed state, as a user may leave it
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    before = _snapshot(model)
    x = torch.rand(1, 3, 96, 128)
    cc.explain(model, x, "gradcam", ["weighted", cc.Foil(0)], cc.Detections(top=2))
    _assert_untouched(model, before)
    with pytest.raises(cc.ClassContrastError, match="out of range"):
        cc.explain(model, x, "gradient", "weighted", cc.Detections(indices=[999]))
    _assert_untouched(model, before)


def test_units_record_images_regions_and_objects(yolos: nn.Module, tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """`Explanation.units`: one record per explained unit, in the order of the maps' K axis."""
    from tests.test_regions import TinySeg

    ex = cc.explain(tiny, tiny_x, "gradient", "weighted", cc.TopK(2))
    assert [[u["kind"] for u in image] for image in ex.units] == [["image", "image"]] * len(tiny_x)
    assert all(u["target"] == int(ex.targets[i, j]) and torch.equal(u["logits"], ex.logits[i])
               for i, image in enumerate(ex.units) for j, u in enumerate(image))
    torch.manual_seed(0)
    seg = cc.explain(TinySeg().eval(), torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(3)),
                     "gradient", "weighted", cc.Region.all(2))
    assert [u["kind"] for u in seg.units[0]] == ["region", "region"] and seg.units[0][0]["logits"].ndim == 2
    obj = cc.explain(yolos, torch.randn(1, 3, 64, 64, dtype=torch.float64), "gradient", "weighted",
                     cc.Detections(top=2, threshold=0.0))
    assert [u["kind"] for u in obj.units[0]] == ["object", "object"]
    assert {"box", "label", "score", "index", "logits", "target"} <= set(obj.units[0][0])
