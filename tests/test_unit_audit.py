"""Audits below the image: a segmenter on a mask folder, a detector on a COCO json
(`classcontrast.confusion.units_audit`), each against counts made here independently, its shown maps against
`cc.explain` on the unit and contrast the audit says it explained, and the files a new user reads (DuckDB counts the
confusions from the Parquet file alone)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import classcontrast as cc
from classcontrast.confusion.units_audit import unit_audit
from classcontrast.data.annotated import coco_source, mask_source
from classcontrast.explorer.encode import fit
from classcontrast.models.bundle import ModelBundle, Normalize
from classcontrast.models.preprocess import Preprocess
from classcontrast.scale.table import unrle
from tests.test_cli import run

CLASSES = ["sky", "road", "car"]


def _segmenter() -> ModelBundle:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    # images 24 × 32 shown at 12 × 16 (nearest for the masks): the geometry the masks must follow
    return ModelBundle(net, Preprocess(12), Normalize((0.5,) * 3, (0.25,) * 3), CLASSES, "tiny segmenter")


def _mask_folder(root: Path, n: int = 3) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / f"im{i}.png")
        m = np.zeros((24, 32), np.uint8)
        m[:, 16:] = 1
        m[: 8 + 4 * i, :8] = 2
        m[:2, :2] = 255  # ignored
        Image.fromarray(m, "L").save(root / "masks" / f"im{i}.png")
    (root / "images" / "no_mask.png").write_bytes((root / "images" / "im0.png").read_bytes())
    return root


def test_a_segmenter_audited_on_a_mask_folder(tmp_path: Path) -> None:
    """The pixel confusion matrix = a count over each image's model-view mask and the model's argmax made here;
    pairs ranked by pixels; each shown region is exactly the pixels of class b labelled a, explained with original,
    weighted and Foil(b) = cc.explain on that region (at the page's resolution); DuckDB counts the same confusions
    from audit.parquet; the page links the shown pairs."""
    duckdb = pytest.importorskip("duckdb")
    bundle, data = _segmenter(), _mask_folder(tmp_path / "seg")
    result = unit_audit(bundle, mask_source(data), tmp_path / "out", ["gradient", "gradcam"], pairs=2, examples=2)
    expected, shown = np.zeros((3, 3), np.int64), {}
    for i in range(3):
        x = bundle.transform(cc.load_image(data / "images" / f"im{i}.png"))[None]
        with torch.no_grad():
            pred = bundle.model(x)[0].argmax(0).numpy()
        truth = np.asarray(Image.open(data / "masks" / f"im{i}.png").resize((16, 12), Image.Resampling.NEAREST))
        for b in range(3):
            for a in range(3):
                expected[b, a] += int(((truth == b) & (pred == a)).sum())
                shown[(i, b, a)] = (x, (truth == b) & (pred == a))
    assert result.n == 3 and np.array_equal(result.confusion, expected)
    off = sorted(((expected[b, a], b, a) for b in range(3) for a in range(3) if a != b and expected[b, a]),
                 key=lambda t: (-t[0], t[1], t[2]))
    assert [(p.true, p.predicted, p.count) for p in result.pairs] == [(b, a, n) for n, b, a in off[:2]]
    assert result.metrics["pixel_accuracy"] == pytest.approx(np.trace(expected) / expected.sum())

    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "audit.parquet").to_pylist()
    for r in (r for r in rows if r["method"] is not None):
        fields = json.loads(r["unit_fields"])
        pair = result.pairs[fields["pair"]]
        x, mask = shown[(int(r["id"][2]), pair.true, pair.predicted)]
        assert np.array_equal(unrle(fields["mask"]), mask) and r["target"] == pair.predicted
        foil = r["contrast"].startswith("foil:")
        want = cc.explain(bundle, x, r["method"], cc.Foil(pair.true) if foil else r["contrast"],
                          cc.Region(pair.predicted, torch.from_numpy(mask)))
        ref = fit(want.shown()[0, 0]).numpy().reshape(-1)
        assert np.allclose(r["map"], ref, atol=1e-6 * float(np.abs(ref).max()))
    foils = {f"foil:{CLASSES[p.true]}" for p in result.pairs}
    assert {r["contrast"] for r in rows if r["method"]} == {"original", "weighted", *foils}
    got = duckdb.sql(f"SELECT label, predicted, sum(json_extract(unit_fields, '$.pixels')::BIGINT) FROM "
                     f"'{tmp_path / 'out' / 'audit.parquet'}' WHERE method IS NULL GROUP BY ALL").fetchall()
    assert {(b, a): n for b, a, n in got} == {(b, a): expected[b, a] for b in range(3) for a in range(3)
                                              if expected[b, a]}
    page = (tmp_path / "out" / "audit.html").read_text()
    assert page.count('<section id="pair-') == 2 and page.count('href="#pair-') == 2
    assert len(off) <= 2 or f"<td>{CLASSES[off[2][1]]}</td><td>{CLASSES[off[2][2]]}</td>" in page  # listed, unlinked


def _detector() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5)
    with torch.no_grad():  # a random head scores every class near 1/C: make class 2 detectable
        model.roi_heads.box_predictor.cls_score.bias[2] = 6.0
    return model.eval()


def _coco(root: Path, model: nn.Module) -> tuple[Path, np.ndarray]:
    """Three images; per image, true boxes made from the detector's own three best detections shifted by a pixel
    (IoU > 0.5) with classes 1, 2, 4, and one box far from every detection (missed); the expected matrix."""
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns, expected = [], [], np.zeros((6, 6), np.int64)
    for i in range(3):
        arr = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "val" / f"im{i}.png")
        with torch.no_grad():
            d = model(torch.from_numpy(arr).permute(2, 0, 1).float()[None] / 255)[0]
        keep = (d["scores"] >= 0.5).nonzero()[:, 0]
        images.append({"id": 10 + i, "file_name": f"im{i}.png", "width": 128, "height": 96})
        boxes = d["boxes"][keep].tolist()
        for j, b in enumerate(boxes[:3]):
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": [1, 2, 4][j], "iscrowd": 0,
                         "bbox": [b[0] + 1, b[1], b[2] - b[0], b[3] - b[1]], "area": 1.0})
        anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 3, "iscrowd": 0,
                     "bbox": [500, 500, 10, 10], "area": 100.0})
        expected[[1, 2, 4], 2] += 1  # (the detector labels every box 2)
        expected[3, 5] += 1
        expected[5, 2] += len(keep) - 3
    cats = [{"id": k, "name": f"class {k}"} for k in range(1, 5)]
    path = root / "annotations" / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, expected


def test_a_detector_audited_on_coco_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """From the command line, as a new user: a torchvision detector (random weights) on a COCO json whose images
    lie in a folder beside annotations/. The matrix = the one the boxes were made for (IoU >= 0.5 whatever the
    class; unmatched detections and missed boxes in "background"); each shown object is the detection itself,
    explained with Foil(true class) as cc.explain on Detections(indices=[d])."""
    model = _detector()
    torch.save(model.state_dict(), tmp_path / "det.pt")
    path, expected = _coco(tmp_path / "coco", model)
    out = tmp_path / "out"
    argv = ["audit", str(path), "--model", "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "--weights",
            str(tmp_path / "det.pt"), "--num-classes", "5", "--out", str(out), "--pairs", "2", "--examples", "1"]
    assert run(argv) == 0
    said = capsys.readouterr().out
    assert "3 images with 12 boxes" in said and "index created" not in said
    with open(out / "confusion.csv") as fh:
        matrix = np.array([[int(v) for v in line.split(",")[1:]] for line in fh.read().splitlines()[1:]])
    assert np.array_equal(matrix, expected)
    audit = json.loads((out / "audit.json").read_text())
    assert audit["metrics"]["missed"] == 3 and audit["metrics"]["matched"] == 9
    assert [(p["true_index"], p["predicted_index"], p["count"]) for p in audit["pairs"]] == [(1, 2, 3), (4, 2, 3)]
    import pyarrow.parquet as pq

    bundle = cc.load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", weights=str(tmp_path / "det.pt"),
                           num_classes=5)
    rows = [r for r in pq.read_table(out / "audit.parquet").to_pylist() if r["method"] is not None]
    assert len(rows) == 2 * 3
    for r in rows:
        fields = json.loads(r["unit_fields"])
        assert fields["iou"] >= 0.5 and r["predicted"] == 2 and r["label"] in (1, 4)
        x = bundle.transform(cc.load_image(r["path"]))[None]
        contrast = cc.Foil(r["label"]) if r["contrast"].startswith("foil:") else r["contrast"]
        want = cc.explain(bundle, x, "gradcam", contrast, cc.Detections(indices=[fields["index"]]))
        ref = fit(want.shown()[0, 0]).numpy().reshape(-1)
        assert np.allclose(r["map"], ref, atol=1e-6 * float(np.abs(ref).max()))
    lines = (out / "counts.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3  # the settings, then each image's count
    assert run([*argv[:-4], "--pairs", "1", "--examples", "1"]) == 0  # resumed: no image counted again
    assert (out / "counts.jsonl").read_text().splitlines() == lines
    with open(out / "confusion.csv") as fh:
        again = np.array([[int(v) for v in line.split(",")[1:]] for line in fh.read().splitlines()[1:]])
    assert np.array_equal(again, expected)
    assert run([*argv[:-4], "--iou", "0.6"]) == 2  # another audit's counts: one line
    assert "holds the counts of another audit" in capsys.readouterr().err


def test_bad_annotations_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mask of another size, a class id the model lacks, an RGB mask, a COCO category the model lacks: one line
    naming the file, no traceback."""
    bundle, data = _segmenter(), _mask_folder(tmp_path / "seg", n=1)
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(data / "masks" / "im0.png")
    with pytest.raises(cc.ClassContrastError, match=r"im0\.png.*the mask must have its image's size"):
        unit_audit(bundle, mask_source(data), tmp_path / "o1")
    Image.fromarray(np.full((24, 32), 7, np.uint8), "L").save(data / "masks" / "im0.png")
    with pytest.raises(cc.ClassContrastError, match=r"im0\.png: class id 7, the model has 3 classes"):
        unit_audit(bundle, mask_source(data), tmp_path / "o2")
    Image.new("RGB", (32, 24)).save(data / "masks" / "im0.png")
    with pytest.raises(cc.ClassContrastError, match="class ids"):
        unit_audit(bundle, mask_source(data), tmp_path / "o3")
    (tmp_path / "c.json").write_text(json.dumps({"images": [], "annotations": [],
                                                 "categories": [{"id": 1, "name": "zebra"}]}))
    with pytest.raises(cc.ClassContrastError, match="zebra"):
        coco_source(tmp_path / "c.json", CLASSES)
    assert run(["audit", str(tmp_path / "c.json"), "--model", "torchvision:lraspp_mobilenet_v3_large", "--weights",
                "none", "--out", str(tmp_path / "o4")]) == 2
    err = capsys.readouterr().err
    assert "zebra" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_units_of_reads_what_explain_explains() -> None:
    """`units_of` (one forward pass, no gradient): a detector's objects = those cc.explain explains (box, label,
    score, index), a classifier's top-2 classes = the top-2 of its logits; the model left as found."""
    from classcontrast.engine import units_of

    model = _detector()
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    got = units_of(model, x, cc.Detections(top=3))[0]
    want = cc.explain(model, x, "gradient", "original", cc.Detections(top=3)).units[0]
    assert [(u["box"], u["label"], u["score"], u["index"]) for u in got] == \
        [(u["box"], u["label"], u["score"], u["index"]) for u in want]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).train()
    x = torch.randn(2, 3, 2, 2)
    top = units_of(net, x, cc.TopK(2))
    assert [[u.target for u in row] for row in top] == net(x).topk(2).indices.tolist() and net.training


def test_the_mask_audit_on_ray_equals_the_local_one_and_resumes(tmp_path: Path, local_ray: object) -> None:
    """Counted by Ray workers, the mask folder's matrix and pairs are the local engine's; a folder counted halfway (a
    run killed after one image: its other lines removed) is completed, not recounted."""
    from classcontrast.scale.workers import Workers

    bundle, data = _segmenter(), _mask_folder(tmp_path / "seg")
    local = unit_audit(bundle, mask_source(data), tmp_path / "local", ["gradient"], pairs=2, examples=1)
    ray = unit_audit(bundle, mask_source(data), tmp_path / "ray", ["gradient"], pairs=2, examples=1,
                     workers=Workers("ray", None, 2, 0.0))
    assert np.array_equal(ray.confusion, local.confusion)
    assert [(p.true, p.predicted, p.count) for p in ray.pairs] == [(p.true, p.predicted, p.count) for p in local.pairs]
    counts = tmp_path / "local" / "counts.jsonl"
    lines = counts.read_text().splitlines()
    counts.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # one image, a cut line
    again = unit_audit(bundle, mask_source(data), tmp_path / "local", ["gradient"], pairs=2, examples=1)
    assert np.array_equal(again.confusion, local.confusion)
    assert [json.loads(line).get("key") is not None for line in counts.read_text().splitlines()] == [False] + [True] * 3
