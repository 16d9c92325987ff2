"""One typed result that travels: `Explanation` is immutable (replace, index, cat), its units are typed records, and
`rows()` turns it into plain records whose maps are the result's maps and whose scores are its scores — for a
classifier, a segmenter's regions, a detector's objects and a vision-language model's candidate answers — and that
a pyarrow table and a JSON document carry unchanged (issue 39, "One typed result")."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from classcontrast.units.records import ImageUnit, ObjectUnit, RegionUnit

CONTRASTS = ["original", "weighted", cc.Foil(1)]


def _check(ex: cc.Explanations, kind: type, categories: list[str] | None = None) -> list[dict]:
    """Every row against the result it came from: map, layer map, score, probability, target, unit."""
    rows = ex.rows()
    wanted = 0
    for key, e in ex.items():
        mine = [r for r in rows if r["contrast"] == key]
        keep = [(i, j) for i in range(e.targets.shape[0]) for j in range(e.targets.shape[1])
                if e.units[i][j].wanted and (e.selected is None or bool(e.selected[i, j]))]
        wanted += len(keep)
        assert len(mine) == len(keep)
        for r, (i, j) in zip(mine, keep, strict=True):
            assert r["input"] == i and r["method"] == e.method and r["target"] == int(e.targets[i, j])
            assert r["target_name"] == (categories[r["target"]] if categories else None)
            np.testing.assert_array_equal(r["map"], e.shown()[i, j].float().numpy())
            np.testing.assert_array_equal(r["layer_map"], e.shown(layer=True)[i, j].float().numpy())
            assert r["score"] == pytest.approx(float(e.scores[i, j]), rel=1e-12, abs=0)
            assert r["probability"] == pytest.approx(float(e.target_probabilities[i, j]), rel=1e-12)
            assert 0.0 <= r["probability"] <= 1.0
            unit = e.units[i][j]
            assert isinstance(unit, kind) and r["unit"]["kind"] == unit.kind and r["unit"]["target"] == r["target"]
    assert len(rows) == wanted
    _travels(ex)
    return rows


def _travels(ex: cc.Explanations) -> None:
    """The rows as lists go through JSON and a pyarrow table unchanged (maps as nested lists)."""
    listed = ex.rows(arrays="list")
    assert json.loads(json.dumps(listed)) == listed
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow as pa

        table = pa.Table.from_pylist(listed)
        assert table.num_rows == len(listed) and table.to_pylist() == listed


def test_a_classifiers_rows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5)).double().eval()
    x = torch.rand(3, 3, 10, 12, dtype=torch.float64)
    names = ["ant", "bee", "cat", "dog", "eel"]
    bundle = cc.ModelBundle(model, lambda v: v, cc.models.Normalize((0.0,) * 3, (1.0,) * 3), names, "tiny")
    ex = cc.explain(bundle, x, "gradcam", CONTRASTS, cc.TopK(2), layer="0")
    rows = _check(ex, ImageUnit, names)
    assert len(rows) == 3 * 2 * 3 and rows[0]["map"].shape == (10, 12) and rows[0]["layer_map"].shape == (10, 12)
    assert set(rows[0]) == {"input", "place", "unit", "target", "target_name", "contrast", "method", "score",
                            "probability", "map", "layer_map"}
    assert set(ex["weighted"].rows(maps="none")[0]) == set(rows[0]) - {"map", "layer_map"}
    assert "layer_map" not in ex["weighted"].rows(maps="input")[0]
    assert [r["input"] for r in ex["weighted"].rows(maps="none", first=10)][:2] == [10, 10]
    with pytest.raises(cc.ClassContrastError, match="rows"):
        ex["weighted"].rows(maps="all")


def test_a_segmenters_regions_rows() -> None:
    torch.manual_seed(1)
    seg = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1)).double().eval()
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    ex = cc.explain(seg, x, "gradient", CONTRASTS, cc.Region.all(2))
    rows = _check(ex, RegionUnit)
    for r in rows:
        unit = ex[r["contrast"]].units[r["input"]][[u.target for u in ex[r["contrast"]].units[r["input"]]].index(
            r["target"])]
        np.testing.assert_array_equal(r["unit"]["mask"], unit.mask.numpy())
        assert r["unit"]["pixels"] == int(unit.mask.sum()) > 0


def test_a_detectors_object_rows() -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("Ultralytics is not installed")
    from classcontrast.units.yolo import import_ultralytics
    from tests.test_yolo import X, _spread

    (tasks,) = import_ultralytics("ultralytics.nn.tasks")
    model = _spread(tasks.DetectionModel("yolov8n.yaml", nc=5, verbose=False), 0)
    ex = cc.explain(model, X, "gradient", ["original", "max", cc.Foil(1)], cc.Detections(top=2))
    rows = _check(ex, ObjectUnit)
    for r in rows:
        unit = ex[r["contrast"]].units[r["input"]][[u.index for u in ex[r["contrast"]].units[r["input"]]].index(
            r["unit"]["index"])]
        assert r["unit"]["box"] == unit.box and r["unit"]["score"] == unit.score and r["unit"]["anchor"] == unit.anchor
        assert r["unit"]["label"] == unit.label and "proposal" not in r["unit"]


def test_a_vision_language_models_answer_rows() -> None:
    from tests.vlm import llava

    model, processor = llava(dtype=torch.float64)
    bundle = cc.answers(model, processor, "is there a dog ?", ["yes", "no", "a wolf"])
    x = bundle.transform(cc.sample_image("astronaut").resize((40, 40)))[None].double()
    ex = cc.explain(bundle, x, "gradient", ["original", "weighted", cc.Foil("no")], "yes")
    rows = _check(ex, ImageUnit, ["yes", "no", "a wolf"])
    assert {r["target_name"] for r in rows} == {"yes"}


def test_fillers_are_left_out() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6)).double().eval()
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64) * 3
    with torch.no_grad():
        level = float(torch.sigmoid(model(x)).flatten().sort().values[-6])
    ex = cc.explain(model, x, "gradient", ["original", "probability"], cc.Threshold(level), head="sigmoid")
    rows = _check(ex, ImageUnit)
    assert len(rows) == 2 * int(ex["original"].selected.sum()) < 2 * ex["original"].targets.numel()


def test_a_result_is_immutable_and_indexes() -> None:
    """replace, ex[i], Explanation.cat: new results, the old one unchanged; records are frozen and read as dicts."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double().eval()
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    ex = cc.explain(model, x, "gradient", cc.Foil(torch.tensor([1, 2, 3])), cc.TopK(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.method = "other"  # type: ignore[misc]
    one = ex[1]
    assert one.targets.shape == (1, 2) and torch.equal(one.maps, ex.maps[1:2]) and int(one.foils[0]) == 2
    torch.testing.assert_close(one.scores, ex.scores[1:2])
    again = cc.Explanation.cat([ex[0], ex[1:]])
    assert torch.equal(again.maps, ex.maps) and torch.equal(again.scores, ex.scores)
    assert [[u.target for u in row] for row in again.units] == ex.targets.tolist()
    changed = ex.replace(contrast="renamed")
    assert changed.contrast == "renamed" and ex.contrast != "renamed" and torch.equal(changed.maps, ex.maps)
    unit = ex.units[0][0]
    assert unit["kind"] == "image" and unit["target"] == unit.target and dict(unit)["target"] == unit.target
    with pytest.raises(dataclasses.FrozenInstanceError):
        unit.target = 0  # type: ignore[misc]
