"""Regions of a segmenter and objects of a detector trained on real digit scenes (scikit-learn's
handwritten digits pasted on a canvas, so each digit's pixels and box are known), checked on held-out
scenes on one seed (two others passed as well; dropped for the suite's time): a region's or object's weighted
map concentrates on its digit, and "t rather than s" — s the digit it is most confusable with — removes its margin
y_t − y_s faster than the original map (deletion)."""

from __future__ import annotations

import pytest
import torch

import classcontrast as cc
from tests.scenes import Scenes, box_share, deletion_area, make_scenes, train_detector, train_segmenter, train_yolo


def _margin(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
            masks: torch.Tensor) -> torch.Tensor:
    """Each scene's mean of y_t − y_s over its region's pixels (a separate re-implementation)."""
    y = model(x)["out"]
    n = torch.arange(len(t))
    return ((y[n, t] - y[n, s]) * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)


def _deletion(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
              masks: torch.Tensor) -> float:
    return deletion_area(lambda xx: _margin(model, xx, t, s, masks), x, maps)


def _maps(bundle: cc.ModelBundle, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
          masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient × input maps of each scene's region (original, weighted, rather than s): one call per
    region class, every scene of that class in it."""
    out = {k: torch.zeros(len(x), *x.shape[-2:], dtype=x.dtype) for k in ("original", "weighted", "foil")}
    for cls in t.unique().tolist():
        idx = (t == cls).nonzero()[:, 0]
        ex = cc.explain(bundle, x[idx], "gradient_x_input", ["original", "weighted", cc.Foil(s[idx])],
                        cc.Region(cls, masks[idx]))
        for k in out:
            out[k][idx] = ex[k].maps[:, 0]
    return out


@pytest.mark.parametrize("seed", [0])
def test_region_maps_on_digit_scenes(seed: int) -> None:
    bundle = train_segmenter(seed)
    scenes = make_scenes(60, seed=3000 + seed, split="test")
    x = bundle.normalize(scenes.images)
    with torch.no_grad():
        y = bundle.model(x)["out"]
    fg = scenes.segmentation > 0
    assert float((y.argmax(1)[fg] == scenes.segmentation[fg]).float().mean()) > 0.8  # it segments the digits
    digits = [sorted(b)[0] for b in scenes.boxes]
    t = torch.tensor(digits) + 1  # class 0 is the background
    masks = scenes.segmentation == t[:, None, None]  # the digit's ink
    mean = (y * masks[:, None]).flatten(2).sum(-1) / masks.flatten(1).sum(1)[:, None]
    mean[torch.arange(len(t)), t] = mean[:, 0] = -torch.inf
    s = mean.argmax(1)  # the digit class the region is most confusable with
    maps = _maps(bundle, x, t, s, masks)
    assert box_share(maps["weighted"], scenes, digits) > 0.3  # the digit's box is 3.5% of the canvas
    random = torch.rand(maps["original"].shape, generator=torch.Generator().manual_seed(seed))
    deletion = {k: _deletion(bundle.model, x, m, t, s, masks.double()) for k, m in {**maps, "random": random}.items()}
    assert deletion["foil"] < deletion["original"] - 0.15, deletion
    assert max(deletion["foil"], deletion["original"], deletion["weighted"]) < deletion["random"] - 1.0, deletion


def _in_their_boxes(maps: torch.Tensor, scenes: Scenes, t: torch.Tensor) -> None:
    """At least 80 % of the scenes' detections are of a digit present (83-97 % with two threads on the machines
    seen; 87 % when the detector is trained with one thread, whose sums round differently: the trained detector's
    last bits follow the thread count and the CPU), and their maps put more than 25 % of their positive mass in that
    digit's box (3.5 % of the canvas)."""
    found = [i for i in range(len(t)) if int(t[i]) in scenes.boxes[i]]
    assert len(found) >= 0.8 * len(t)
    assert box_share(maps[found], Scenes(scenes.images[found], scenes.labels[found], [scenes.boxes[i] for i in found],
                                         scenes.segmentation[found]), [int(t[i]) for i in found]) > 0.25


def _object_deletion(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, q: torch.Tensor,
                     t: torch.Tensor, s: torch.Tensor) -> float:
    """Deletion of each scene's object margin y_t − y_s on its query's row."""
    n = torch.arange(len(t))
    return deletion_area(lambda xx: model(xx)["logits"][n, q, t] - model(xx)["logits"][n, q, s], x, maps)


@pytest.mark.parametrize("seed", [0])
def test_object_maps_on_digit_scenes(seed: int) -> None:
    """A one-stage detector in the DETR output convention (each of the 4×4 cells a query, "no object" its
    last class): each scene's best detection."""
    bundle = train_detector(seed)
    scenes = make_scenes(60, seed=4000 + seed, split="test")
    x = bundle.normalize(scenes.images)
    spec = cc.Detections(top=1, threshold=0.5)
    ex = cc.explain(bundle, x, "gradient_x_input", ["original", "weighted"], spec)
    q = torch.tensor([u[0]["index"] for u in ex["weighted"].units])
    t = ex["weighted"].targets[:, 0]
    with torch.no_grad():
        rows = bundle.model(x)["logits"][torch.arange(len(x)), q]
    rows[torch.arange(len(x)), t] = rows[:, 10] = -torch.inf
    s = rows.argmax(1)  # the digit the object is most confusable with
    foil = cc.explain(bundle, x, "gradient_x_input", cc.Foil(s), spec).maps[:, 0]
    weighted = ex["weighted"].maps[:, 0]
    _in_their_boxes(weighted, scenes, t)
    random = torch.rand(foil.shape, generator=torch.Generator().manual_seed(seed))
    deletion = {k: _object_deletion(bundle.model, x, m, q, t, s)
                for k, m in {"original": ex["original"].maps[:, 0], "weighted": weighted, "foil": foil,
                             "random": random}.items()}
    assert deletion["foil"] < deletion["original"] - 0.3, deletion
    assert max(deletion["foil"], deletion["original"], deletion["weighted"]) < deletion["random"] - 2.0, deletion


def _anchor_deletion(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, a: torch.Tensor,
                     t: torch.Tensor, s: torch.Tensor) -> float:
    """Deletion of each scene's object margin y_t − y_s on its anchor's row."""
    n = torch.arange(len(t))

    def margin(xx: torch.Tensor) -> torch.Tensor:
        scores = model(xx)[1]["scores"]  # (N, C, anchors)
        return scores[n, t, a] - scores[n, s, a]

    return deletion_area(margin, x, maps)


@pytest.mark.parametrize("seed", [0])
def test_yolo_objects_on_digit_scenes(seed: int) -> None:
    """The digit-scene detector recast as an Ultralytics-style YOLO model (its objects chosen by Ultralytics' own
    NMS, each its anchor's row, sigmoid head): each scene's best detection's map lies in its box, and "t rather than
    s" (s the class its row ranks next) removes the margin y_t − y_s faster than the original map."""
    import importlib.util
    import warnings

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("Ultralytics is not installed")
    bundle = train_yolo(seed)
    scenes = make_scenes(60, seed=4000 + seed, split="test")
    x = bundle.normalize(scenes.images)
    spec = cc.Detections(top=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)  # weighted = original under the sigmoid head
        ex = cc.explain(bundle, x, "gradient_x_input", ["original", "weighted"], spec)
    assert all(u[0]["selected"] for u in ex["weighted"].units)  # every scene has a detection above 0.25
    a = torch.tensor([u[0]["anchor"] for u in ex["weighted"].units])
    t = ex["weighted"].targets[:, 0]
    n = torch.arange(len(x))
    with torch.no_grad():
        rows = bundle.model(x)[1]["scores"][n, :, a]
    rows[n, t] = -torch.inf
    s = rows.argmax(1)  # the digit the object is most confusable with
    foil = cc.explain(bundle, x, "gradient_x_input", cc.Foil(s), spec).maps[:, 0]
    weighted = ex["weighted"].maps[:, 0]
    _in_their_boxes(weighted, scenes, t)
    random = torch.rand(foil.shape, generator=torch.Generator().manual_seed(seed))
    deletion = {k: _anchor_deletion(bundle.model, x, m, a, t, s)
                for k, m in {"original": ex["original"].maps[:, 0], "foil": foil, "random": random}.items()}
    assert deletion["foil"] < deletion["original"] - 0.3, deletion
    assert max(deletion["foil"], deletion["original"]) < deletion["random"] - 1.0, deletion
