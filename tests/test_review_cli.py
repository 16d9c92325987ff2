"""Second hostile review, through the command line: the classes explained are the model's own (the
``--threshold`` pre-pass normalised the images twice), what the user asked for is on the page, outputs
never replace or become inputs, and messages say what is true."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import classcontrast as cc
from tests.test_cli import run


def page_data(path: Path) -> dict:
    html = path.read_text()
    start = html.index('type="application/json"')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        cc.sample_image(name).save(d / f"{name}.png")
    return d


def _reference_probabilities(bundle: cc.ModelBundle, files: list[Path], head: str = "softmax") -> torch.Tensor:
    """The model's own probabilities of each image, as a user computes them from the bundle."""
    x = torch.stack([bundle.transform(cc.load_image(f)) for f in files])
    with torch.no_grad():
        y = bundle.model(x)
    return torch.sigmoid(y) if head == "sigmoid" else torch.softmax(y, 1)


def test_threshold_explains_the_classes_the_model_gives(embedded: cc.ModelBundle, photos: Path,
                                                        tmp_path: Path) -> None:
    """On the espresso photo the model gives 0.951; the pre-pass, normalising twice, saw 0.654 and refused
    0.8. With --batch-size 1 the two photos have different numbers of classes above 0.3: one K for all, the
    filler flagged."""
    files = [photos / "chelsea.png", photos / "coffee.png"]
    p = _reference_probabilities(embedded, files)
    npz = tmp_path / "t.npz"
    assert run(["explain", str(files[1]), "--threshold", "0.8", "--out", str(tmp_path / "a.png"),
                "--save-maps", str(npz)]) == 0
    saved = np.load(npz)
    assert saved["targets"].tolist() == [[int(p[1].argmax())]] and saved["selected"].tolist() == [[True]]
    assert run(["explain", *map(str, files), "--threshold", "0.3", "--batch-size", "1", "--out",
                str(tmp_path / "b.png"), "--save-maps", str(npz)]) == 0
    saved = np.load(npz)
    for i in range(2):
        want = sorted(int(c) for c in (p[i] >= 0.3).nonzero()[:, 0])
        chosen = sorted(int(c) for c, s in zip(saved["targets"][i], saved["selected"][i], strict=True) if s)
        assert chosen == want
    assert saved["targets"].shape == (2, 2)


def test_sigmoid_threshold_writes_the_page_with_the_sigmoid_classes(embedded: cc.ModelBundle, photos: Path,
                                                                    tmp_path: Path) -> None:
    page = tmp_path / "why.html"
    assert run(["explain", str(photos / "coffee.png"), "--head", "sigmoid", "--threshold", "0.9", "--out",
                str(tmp_path / "why.png"), "--html", str(page)]) == 0
    p = _reference_probabilities(embedded, [photos / "coffee.png"], "sigmoid")[0]
    want = sorted(int(c) for c in (p >= 0.9).nonzero()[:, 0])
    entry = page_data(page)["entries"][0]
    assert sorted(entry["targets"]) == want
    for c, shown in zip(entry["targets"], entry["p"], strict=True):
        assert abs(shown - float(p[c])) < 1e-5  # sigma(y), not the softmax
    assert "independent" in page_data(page)["subtitle"]


def test_a_multi_label_hugging_face_folder_loads_with_the_sigmoid_head(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3,
                                    problem_type="multi_label_classification")
    torch.manual_seed(0)
    transformers.ResNetForImageClassification(cfg).save_pretrained(tmp_path)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(tmp_path)
    assert cc.load_model(f"hf:{tmp_path}").head == "sigmoid"


# -- 14: no output replaces an input or becomes one ---------------------------------------------------------

def test_per_image_figures_never_overwrite_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Five photos and a sixth named as the first one's figure would be: more images than one figure holds,
    so the run writes why_000_a.png — which is an input."""
    d = tmp_path / "photos"
    d.mkdir()
    for i, name in enumerate("abcde"):
        cc.sample_image(["chelsea", "coffee", "rocket", "astronaut", "chelsea"][i]).save(d / f"{name}.png")
    cc.sample_image("coffee").save(d / "why_000_a.png")
    before = (d / "why_000_a.png").read_bytes()
    files = sorted(str(f) for f in d.iterdir())
    assert run(["explain", *files, "--out", str(d / "why.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "would overwrite the input image" in err and len(err.splitlines()) == 1
    assert (d / "why_000_a.png").read_bytes() == before
    assert sorted(str(f) for f in d.iterdir()) == files  # nothing written


def test_figures_inside_an_input_folder_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "photos"
    d.mkdir()
    cc.sample_image("coffee").save(d / "a.png")
    assert run(["explain", str(d), "--out", str(d / "out" / "why.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lies inside the input folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in d.rglob("*")) == ["a.png"]
    assert run(["explain", str(d), "--out", str(d / "why.pdf")]) == 0  # a format no run reads as an image
