"""Each ``targets=`` selector declares the kind of unit it asks for, and one default number of targets serves the API,
the command line and the page: ``TopK`` and ``Threshold`` ask for a classifier's classes (on a segmenter or a detector a
one-line error naming that kind's own selector), ``Region.all(k)`` for a segmenter's largest regions,
``Detections(top=k)`` for a detector's best objects; ``targets=None`` is the kind's ``top(DEFAULT_TOP)``, the same
maps as naming it, and the command line's ``--top-k k`` is read per kind (`top_units`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from classcontrast.targets import DEFAULT_TOP
from classcontrast.units import top_units
from tests.test_cli import run
from tests.test_detection import _faster_rcnn, yolos  # noqa: F401  (a fixture)
from tests.test_regions import TinySeg


def _seg() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TinySeg().double().eval(), torch.randn(2, 3, 12, 12, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(4))


def test_the_default_is_the_kinds_top_default_number(tiny: nn.Module, tiny_x: torch.Tensor,
                                                      yolos: nn.Module) -> None:  # noqa: F811
    assert DEFAULT_TOP == 1
    seg, sx = _seg()
    detr_x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for model, x, named in ((tiny, tiny_x, cc.TopK(DEFAULT_TOP)), (seg, sx, cc.Region.all(DEFAULT_TOP)),
                            (yolos, detr_x, cc.Detections(top=DEFAULT_TOP))):
        assert top_units(model, x) == named and top_units(model, x, 3) == type(named)(**{
            "k" if hasattr(named, "k") else "top": 3})
        default = cc.explain(model, x, "gradient", ["weighted", "original"])
        asked = cc.explain(model, x, "gradient", ["weighted", "original"], named)
        for key in default:
            assert default[key].maps.shape[1] == DEFAULT_TOP
            torch.testing.assert_close(default[key].maps, asked[key].maps, rtol=0, atol=0)
            torch.testing.assert_close(default[key].targets, asked[key].targets)
    # the largest region, the best object: against the model's own output
    with torch.no_grad():
        predicted = seg(sx)["out"].argmax(1)
    largest = [int(torch.bincount(p.flatten(), minlength=4).argmax()) for p in predicted]
    assert cc.explain(seg, sx, "gradient").targets[:, 0].tolist() == largest
    every = cc.explain(yolos, detr_x, "gradient", "weighted", cc.Detections())
    best = cc.explain(yolos, detr_x, "gradient")
    assert best.units[0][0]["score"] == max(u["score"] for u in every.units[0] if u["selected"])


def test_a_detector_claimed_before_its_forward_reads_its_top_without_running() -> None:
    model = _faster_rcnn()
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        assert top_units(model, torch.rand(1, 3, 64, 64), 2) == cc.Detections(top=2) and not calls
    finally:
        handle.remove()


def test_topk_and_threshold_ask_for_a_classifiers_classes(yolos: nn.Module) -> None:  # noqa: F811
    seg, sx = _seg()
    detr_x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    for model, x, named in ((seg, sx, "cc.Region.all(k)"), (yolos, detr_x, "cc.Detections(top=k)")):
        for spec in (cc.TopK(2), cc.Threshold(0.3)):
            with pytest.raises(cc.ClassContrastError) as e:
                cc.explain(model, x, "gradient", "weighted", spec)
            message = str(e.value)
            assert "asks for a classifier's classes" in message and named in message and "\n" not in message


def test_the_command_line_reads_top_k_per_kind(tmp_path: Path) -> None:
    """--top-k k: a segmenter's k largest regions (no --task needed); without it, the default number."""
    cc.sample_image("coffee").save(tmp_path / "cup.png")
    base = ["explain", str(tmp_path / "cup.png"), "--model", "torchvision:lraspp_mobilenet_v3_large", "--weights",
            "none", "--method", "gradient", "--contrast", "weighted"]
    for extra, k in (([], DEFAULT_TOP), (["--top-k", "2"], 2)):
        npz = tmp_path / f"k{k}.npz"
        assert run([*base, *extra, "--out", str(tmp_path / f"k{k}.png"), "--save-maps", str(npz)]) == 0
        with np.load(npz) as z:
            assert z["maps/gradient/weighted"].shape[:2] == (1, k)
            assert z["region_masks"].shape[:2] == (1, k)


@pytest.mark.parametrize("figure", [None, cc.Region.all(2)], ids=["default", "two"])
def test_a_segmenters_page_and_figure_share_one_call_per_method(figure: object) -> None:
    """A segmenter's page explains each region's class and runners-up over its pixels; the figure's regions (the
    default largest one, or the two largest) are among them: the figure is drawn from the page's calls, equal to a
    call of its own."""
    from types import SimpleNamespace

    from classcontrast.cli.explain_run import _asked
    from classcontrast.explorer.offers import PageRequest, offered_groups

    seg, sx = _seg()
    asked = (cc.get_contrast("weighted"), cc.Foil(0))
    req = PageRequest(("gradient", "occlusion"), asked=asked, options={"window": 4, "stride": 4})
    groups = offered_groups(seg, sx, req, figure, ["a", "b"])
    assert len(groups) == 2 and all(g.asked is not None for g in groups)
    drawn = dict(_asked(groups, list(req.methods), list(asked), SimpleNamespace(categories=None)))
    for method in req.methods:
        opts = {"window": 4, "stride": 4} if method == "occlusion" else {}
        own = cc.explain(seg, sx, method, list(asked), figure, **opts)
        for key in own:
            scale = float(own[key].maps.abs().max())
            torch.testing.assert_close(drawn[(method, key)].maps, own[key].maps, rtol=1e-6, atol=1e-9 * scale)
            assert drawn[(method, key)].targets.tolist() == own[key].targets.tolist()
            assert [[int(u["pixels"]) for u in image] for image in drawn[(method, key)].units] == \
                [[int(u["pixels"]) for u in image] for image in own[key].units]
