"""Second hostile review, what the user asked for and no blank result without a word: the page holds every foil
the user named (classifiers, regions, objects), a map that is all zero without being asked for is said in one
line, ``Region.all(k)`` returns no empty region as a region, a detection's foil equal to its target warns, and
the page, the figures and the docs say the same thing of a map that disagrees with its score."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import classcontrast as cc

from .test_regions import TinySeg


def page_data(path: Path) -> dict:
    html = path.read_text()
    start = html.index('type="application/json"')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


@pytest.fixture
def seg() -> nn.Module:
    torch.manual_seed(0)
    return TinySeg().double().eval()


# -- 9: every foil the user names is on the page ------------------------------------------------------------

def test_the_page_offers_the_foil_the_user_named(embedded: cc.ModelBundle, cat_x: torch.Tensor, tmp_path: Path) -> None:
    from tests.test_cli import run

    photo = tmp_path / "cat.png"
    cc.sample_image("chelsea").save(photo)
    page = tmp_path / "why.html"
    persian = embedded.categories.index("Persian cat")
    assert run(["explain", str(photo), "--foil", "Persian cat", "--top-k", "2", "--out", str(tmp_path / "why.png"),
                "--html", str(page)]) == 0
    entry = page_data(page)["entries"][0]
    assert persian not in entry["targets"]
    assert f"foil:{persian}" in entry["methods"]["gradcam"]["contrasts"]
    assert entry["default"]["contrast"] == f"foil:{persian}"  # the page opens on what was asked


def test_region_and_object_pages_offer_the_users_foil(seg: nn.Module, tmp_path: Path) -> None:
    from classcontrast.explorer.compute import explorer_data

    seg = TinySeg(classes=8).double().eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    data = explorer_data(seg, x, ["gradient"], cc.Region.all(1))
    offered = {int(k[5:]) for e in data["entries"] for k in e["methods"]["gradient"]["contrasts"] if k[:5] == "foil:"}
    foil = min(set(range(8)) - offered)  # a class the page does not offer by itself
    data = explorer_data(seg, x, ["gradient"], cc.Region.all(1), foils=[foil])
    for e in data["entries"]:
        assert f"foil:{foil}" in e["methods"]["gradient"]["contrasts"]


# -- 11: an all-zero map nobody asked for is said ------------------------------------------------------------

class ConstantBranch(nn.Module):
    """A spatial layer whose output does not depend on the image (like YOLOS's position-embedding
    interpolation), finishing last, beside one that does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.grid = nn.Parameter(torch.randn(1, 4, 6, 6))
        self.position = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x).mean((-2, -1))
        return self.head(features + self.position(self.grid).mean((-2, -1)))


def test_the_automatic_layer_depends_on_the_image_and_a_zero_map_is_said() -> None:
    torch.manual_seed(0)
    net = ConstantBranch().double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ex = cc.explain(net, x, "gradcam", "weighted", targets=0)
    assert ex.layer == "conv" and not torch.allclose(ex.maps[0], ex.maps[1])
    net.head.weight.data[:, :] = 0  # the logits no longer depend on the image
    with pytest.warns(cc.ClassContrastWarning, match=r"gradcam at layer 'conv' gave 2 all-zero map\(s\) of 2"):
        ex = cc.explain(net, x, "gradcam", "weighted", targets=0)
    assert (ex.maps == 0).all()
    net.head.weight.data.normal_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc.explain(net, x, "gradcam", ["weighted", "max"], targets=0)  # not zero: silent
        cc.explain(net, x, "gradcam", cc.Foil(0), targets=1)


# -- 12: Region.all(k) and detection foils ------------------------------------------------------------------

def test_region_all_never_returns_an_empty_region_as_a_region(seg: nn.Module) -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        predicted = seg(x)["out"].argmax(1)
    present = [int(torch.unique(p).numel()) for p in predicted]
    k = max(present) + 1  # more than any image has
    with pytest.warns(cc.ClassContrastWarning, match=r"Region\.all"):
        ex = cc.explain(seg, x, "gradient", "weighted", cc.Region.all(k))
    assert ex.targets.shape[1] == k
    for b in range(2):
        for j, unit in enumerate(ex.units[b]):
            assert bool(ex.selected[b, j]) == (unit["pixels"] > 0)  # an empty one is a filler, said so
            if unit["pixels"] == 0:
                assert (ex.maps[b, j] == 0).all()


def test_a_detections_foil_equal_to_its_target_warns() -> None:
    from .test_detection import yolos as yolos_fixture

    model = yolos_fixture.__wrapped__()  # type: ignore[attr-defined]
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ex = cc.explain(model, x, "gradient", "original", cc.Detections(top=1, threshold=0.0))
    label = int(ex.targets[0, 0])
    with pytest.warns(cc.ClassContrastWarning, match=r"is also the target \(object 0 of image 0\)"):
        cc.explain(model, x, "gradient", cc.Foil(label), cc.Detections(top=1, threshold=0.0))


# -- 13: one truth about a map that disagrees with its score; one probability per class -----------------------

def test_the_page_and_the_docs_say_the_same_of_a_disagreeing_map(embedded: cc.ModelBundle, cat_x: torch.Tensor,
                                                                  tmp_path: Path) -> None:
    from classcontrast.text import SIGN_NOTE

    page = cc.write_explorer(tmp_path / "p.html", embedded, cat_x, ["gradient"])
    assert page_data(page)["sign_note"] == SIGN_NOTE + "."
    docs = (Path(__file__).resolve().parents[1] / "docs" / "map-signs.md").read_text()
    assert SIGN_NOTE in " ".join(docs.split())
    source = Path(cc.__file__).parent
    for f in [*source.rglob("*.py"), *source.rglob("*.js")]:
        assert "no completeness at this layer" not in f.read_text(), f


def test_a_region_page_shows_one_probability_per_class(seg: nn.Module) -> None:
    from classcontrast.explorer.compute import explorer_data

    with torch.no_grad():
        seg.classifier.weight.mul_(20)  # confident pixels: the mean of p differs from p of the mean logits
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    data = explorer_data(seg, x, ["gradient"], cc.Region.all(2))
    for e in data["entries"]:
        top = dict((c, p) for c, p in e["top"])
        for c, p in zip(e["targets"], e["p"], strict=True):
            if c in top:
                assert abs(top[c] - p) < 1e-6, (c, top[c], p)
