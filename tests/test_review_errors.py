"""Second hostile review: one line, never a traceback, and messages that say what is true (items 17 and 18)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc

from .conftest import TinyCNN
from .test_regions import TinySeg


def one_line(call: object, match: str) -> str:
    with pytest.raises(cc.ClassContrastError, match=match) as e:
        call()  # type: ignore[operator]
    assert "\n" not in str(e.value)
    return str(e.value)


# -- 17 ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("targets", [1, "cat", [1], [[1]], torch.tensor([1]), cc.Threshold(0.5), []],
                         ids=["class", "name", "list", "nested", "tensor", "threshold", "empty"])
def test_a_segmenter_told_classes_says_what_it_takes(targets: object) -> None:
    torch.manual_seed(0)
    seg = TinySeg().double().eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    one_line(lambda: cc.explain(seg, x, "gradient", "weighted", targets), r"Region|class names")


def test_smoothgrad_in_bfloat16() -> None:
    torch.manual_seed(0)
    net = TinyCNN().bfloat16().eval()
    ex = cc.explain(net, torch.randn(2, 3, 12, 12).bfloat16(), "smoothgrad", "weighted", samples=3)
    assert ex.maps.dtype == torch.bfloat16 and torch.isfinite(ex.maps.float()).all()


def test_logits_that_overflow_are_one_line() -> None:
    torch.manual_seed(0)
    net = TinyCNN().eval()
    with torch.no_grad():
        net.fc.weight.mul_(1e39)  # float32 overflows: inf - inf = NaN in the logits
    for method in ("gradcam", "gradient", "integrated_gradients"):
        one_line(lambda m=method: cc.explain(net, torch.randn(1, 3, 12, 12), m, ["weighted", "max"], cc.TopK(2)),
                 r"logits contain (NaN|an infinite value) for image 0 .*float32")


@pytest.mark.parametrize("make", [lambda: cc.TopK(1.5), lambda: cc.Detections(top=1.5), lambda: cc.TopK("2"),
                                  lambda: cc.Detections(threshold="a"), lambda: cc.Threshold(0.5, k=0.5),
                                  lambda: cc.Detections(indices=[0, 1.5])],
                         ids=["topk", "detections-top", "topk-text", "threshold-text", "threshold-k", "indices"])
def test_counts_must_be_whole_numbers(make: object) -> None:
    one_line(make, r"needs a (whole )?number")


def test_zero_shot_templates_prompts_and_folders(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from classcontrast.models.zero_shot import load_zero_shot

    from .test_zero_shot import _clip

    model, processor = _clip(tmp_path)
    bundle = cc.zero_shot(model, processor, ["cat", "dog"], template="a photo of a {} {x}")  # other braces: text
    assert bundle.info["prompts"] == ["a photo of a cat {x}", "a photo of a dog {x}"]
    one_line(lambda: cc.zero_shot(model, processor, ["cat", "dog " * 40]), r"more than the text model's context of 32")
    folder = tmp_path / "no-processor"
    model.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    one_line(lambda: load_zero_shot(f"hf:{folder}", ["cat", "dog"]), r"no image processor")


# -- 18 ------------------------------------------------------------------------------------------------------

def test_a_mistyped_local_folder_is_not_called_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from classcontrast.models import hub

    monkeypatch.setattr(hub, "reachable", lambda: False)
    (tmp_path / "models" / "vit_tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for spec, near in (("models/vit_tiy", "vit_tiny"), (str(tmp_path / "models" / "vit_tiy"), "vit_tiny"),
                       ("./vit", None)):
        message = one_line(lambda s=spec: cc.load_model(f"hf:{s}"), "no such folder")
        assert "offline" not in message and (near is None or near in message)
    assert "offline" in one_line(lambda: cc.load_model("hf:google/vit-base"), "network")


def test_the_detector_messages_name_the_options() -> None:
    from classcontrast.units.objects import ObjectUnits

    nothing = ObjectUnits(cc.Detections(threshold=0.0), torch.nn.Identity())
    message = one_line(lambda: nothing._choose([torch.empty(0)]), "detected no object")
    assert "lower the threshold" not in message
    low = ObjectUnits(cc.Detections(threshold=0.5), torch.nn.Identity())
    one_line(lambda: low._choose([torch.tensor([0.2, 0.1])]), r"--min-score.*indices")


def test_class_folders_without_images_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli import run

    for name in ("tabby", "tiger cat"):
        (tmp_path / "data" / name).mkdir(parents=True)
    assert run(["evaluate", "perturbation", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "hold no images" in err and "tabby" in err and len(err.splitlines()) == 1


def test_one_unreadable_image_is_named_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_cli import run

    cc.sample_image("coffee").save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "c.png")
    assert run(["explain", str(tmp_path), "--out", str(tmp_path.parent / "why.pdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "b.png" in err and "--skip-bad" in err and len(err.splitlines()) == 1
    npz = tmp_path.parent / "why.npz"
    assert run(["explain", str(tmp_path), "--skip-bad", "--out", str(tmp_path.parent / "why.pdf"),
                "--save-maps", str(npz)]) == 0
    assert "skipped" in capsys.readouterr().err and [Path(f).name for f in np.load(npz)["files"]] == ["a.png", "c.png"]


def test_counts_are_in_the_right_number() -> None:
    """Every message that prints a count of something countable goes through `text.count` ("1 image"), except
    a model's classes, of which there are always at least two."""
    from classcontrast.text import count

    assert (count(1, "image"), count(2, "image"), count(1, "class", "classes"), count(0, "pair")) == (
        "1 image", "2 images", "1 class", "0 pairs")
    nouns = ("images|pairs|classes|targets|regions|objects|maps|samples|files|photos|detections|labels|rows|blocks|"
             "tokens")
    allowed = re.compile(r"model with \{[^}]+\} classes|model's \{[^}]+\} classes|has \{len\(exact\)\} classes|"
                         r"for \{logits\.shape\[1\]\} classes|\{[^}]+\} class names|\{[^}]+\} classes \(0\.\.")
    source = Path(cc.__file__).parent
    found = []
    for f in source.rglob("*.py"):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in re.finditer(rf"\{{[^{{}}]+\}} ({nouns})\b", line):
                if "count(" not in m.group(0) and not allowed.search(line):
                    found.append(f"{f.name}:{n}: {m.group(0)}")
    assert not found, found
