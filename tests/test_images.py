"""Reading images of every common kind as RGB, with clear errors naming bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import classcontrast as cc
from classcontrast.data import list_images, load_image


def _save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


def test_modes_become_rgb(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cases = {
        "gray.png": Image.fromarray(rgb[..., 0], "L"),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)]), "RGBA"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "deep.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    for name, img in cases.items():
        out = load_image(_save(img, tmp_path / name))
        assert out.mode == "RGB" and out.size == (30, 20), name
    deep = np.asarray(load_image(tmp_path / "deep.png"))[..., 0].astype(int)
    assert np.abs(deep - rgb[..., 0]).max() <= 1  # 16-bit scaled, not clipped


def test_exif_orientation_is_honoured(tmp_path) -> None:
    img = Image.new("RGB", (40, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (10, 40)


def test_bad_files_are_named(tmp_path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(cc.ClassContrastError, match=r"notes\.png is not an image"):
        load_image(text)
    with pytest.raises(cc.ClassContrastError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    good = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), "blue").save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(cc.ClassContrastError, match=r"cut\.jpg"):
        load_image(good)
    (tmp_path / "empty").mkdir()
    with pytest.raises(cc.ClassContrastError, match="no images found"):
        list_images([tmp_path / "empty"])


def test_folders_are_expanded_in_order(tmp_path) -> None:
    for name in ["b.png", "a.jpg", "sub/c.bmp"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png", "c.bmp"]
