"""Bad input of every kind gets a clear error (exit code 2 from the CLI); long runs stay clean."""

from __future__ import annotations

import gc

import pytest
import torch
from PIL import Image
from torch import nn

import classcontrast as cc
from tests.test_cli import run
from tests.test_hygiene import _assert_untouched, _snapshot


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.png").write_text("plain text renamed")
    good = d / "good.jpg"
    cc.sample_image("coffee").save(good)
    data = good.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (12000, 12000)).save(d / "huge.png")  # 144 Mpx: a decompression-bomb candidate
    Image.new("RGB", (1, 1), "red").save(d / "tiny.png")
    Image.new("I;16", (40, 30)).save(d / "deep.png")
    Image.new("CMYK", (40, 30), (10, 200, 30, 0)).save(d / "cmyk.jpg")
    (d / "noimages").mkdir()
    (d / "noimages" / "readme.txt").write_text("x")
    return {p.name: str(p) for p in d.iterdir()}


@pytest.mark.parametrize(
    ("name", "message"),
    [("empty.jpg", "empty.jpg"), ("notes.png", "is not an image"), ("truncated.jpg", "truncated.jpg"),
     ("huge.png", "too large"), ("noimages", "no images found")],
)
def test_bad_files_exit_2(files: dict[str, str], name: str, message: str, tmp_path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["explain", files[name], "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("name", ["tiny.png", "deep.png", "cmyk.jpg"])
def test_odd_but_valid_images_work(files: dict[str, str], name: str, tmp_path) -> None:
    out = str(tmp_path / "o.png")
    assert run(["explain", files[name], "--top-k", "1", "--contrast", "weighted", "--out", out]) == 0


@pytest.mark.parametrize(
    ("x", "message"),
    [(torch.full((1, 3, 12, 12), float("nan")), "NaN"), (torch.full((1, 3, 12, 12), float("inf")), "NaN or Inf"),
     (torch.zeros(3, 12, 12), "batch dimension"), (torch.zeros(1, 3, 12, 12, dtype=torch.long), "floating"),
     (torch.zeros(1, 1, 12, 12), "the model failed on an input of shape (1, 1, 12, 12)"), ("image", "torch.Tensor")],
)
def test_bad_tensors(tiny: nn.Module, x: object, message: str) -> None:
    with pytest.raises(cc.ClassContrastError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cc.explain(tiny.float(), x, "gradcam")


def test_model_without_convolution_for_gradcam() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    with pytest.raises(cc.ClassContrastError, match="no spatial"):
        cc.explain(mlp, torch.randn(2, 3, 8, 8), "gradcam")
    assert cc.explain(mlp, torch.randn(2, 3, 8, 8), "gradient").maps.shape == (2, 1, 8, 8)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_a_thousand_calls_leave_the_model_untouched_and_memory_flat(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    model = tiny.float().train()
    x = tiny_x.float()
    before = _snapshot(model)
    methods = ["gradcam", "xgradcam", "linear_approx", "gradient", "fullgrad"]

    def call(i: int) -> None:
        try:
            if i % 10 == 9:
                cc.explain(model, x, methods[i % 5], targets=99)  # raises
            else:
                cc.explain(model, x, methods[i % 5], ["original", "weighted"], cc.TopK(2))
        except cc.ClassContrastError:
            pass

    for i in range(100):  # warm-up: allocator and caches settle
        call(i)
    gc.collect()
    start = _rss()
    for i in range(1000):
        call(i)
    gc.collect()
    growth = (_rss() - start) / start
    _assert_untouched(model, before)
    assert growth < 0.05, f"resident memory grew by {growth:.1%}"
