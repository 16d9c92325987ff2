"""Research datasets in their official layouts, generated tiny: CUB-200-2011, ImageNet, Food-101."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import classcontrast as cc
from classcontrast.data.datasets import cub_classes
from classcontrast.data.specs import open_source, training_sources
from classcontrast.models import imagenet_categories


def make_cub(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    """CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/}."""
    base = root / "CUB_200_2011"
    names = [f"{i + 1:03d}.Bird_{chr(65 + i)}" for i in range(classes)]
    images, labels, split = [], [], []
    n = 0
    for c, name in enumerate(names):
        (base / "images" / name).mkdir(parents=True)
        for k in range(per_class):
            n += 1
            rel = f"{name}/{name}_{k}.jpg"
            Image.new("RGB", (40, 30), (40 * c, 20 * k, 100)).save(base / "images" / rel)
            images.append(f"{n} {rel}")
            labels.append(f"{n} {c + 1}")
            split.append(f"{n} {1 if k % 2 == 0 else 0}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "classes.txt").write_text("\n".join(f"{i + 1} {n}" for i, n in enumerate(names)) + "\n")
    return root


def test_cub_layout(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    assert cub_classes(root) == ["Bird A", "Bird B", "Bird C"]
    test = open_source(f"cub200:{root}", cub_classes(root))
    assert len(test) == 6 and sorted({s.label for s in test}) == [0, 1, 2]  # 0-based labels, test split
    assert test.samples[0].load().size == (40, 30)
    train, test2, classes = training_sources(f"cub200:{root}")
    assert len(classes) == 3 and len(train) == 6 and len(test2) == 6
    assert {s.id for s in train}.isdisjoint({s.id for s in test2})


def test_cub_missing_files_are_named(tmp_path: Path) -> None:
    root = make_cub(tmp_path)
    (root / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(cc.ClassContrastError, match=r"missing .*train_test_split\.txt"):
        open_source(f"cub200:{root}", ["x"] * 3)
    with pytest.raises(cc.ClassContrastError, match="no such folder"):
        open_source(f"cub200:{tmp_path / 'nowhere'}", ["x"])


def test_imagenet_wordnet_folders(tmp_path: Path) -> None:
    val = tmp_path / "val"
    wnids = sorted(f"n{10000000 + 37 * i:08d}" for i in range(1000))
    for w in wnids:
        (val / w).mkdir(parents=True)
    for i in (0, 5, 999):
        Image.new("RGB", (8, 8)).save(val / wnids[i] / f"ILSVRC2012_val_{i:08d}.JPEG")
    src = open_source(f"imagenet:{tmp_path}", imagenet_categories())
    assert [s.label for s in src] == [0, 5, 999]
    assert src.labels_from == "folder names"


def test_imagenet_subset_needs_names_or_all_folders(tmp_path: Path) -> None:
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(cc.ClassContrastError, match="WordNet-id folders"):
        open_source(f"imagenet:{tmp_path}", imagenet_categories())
    named = tmp_path / "named"
    (named / "tench").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(named / "tench" / "a.png")
    assert [s.label for s in open_source(f"imagenet:{named}", imagenet_categories())] == [0]


def test_food101_layout(tmp_path: Path) -> None:
    base = tmp_path / "food-101"
    classes = ["apple_pie", "pad_thai", "sushi"]
    meta = {"train": {c: [f"{c}/{i}" for i in range(2)] for c in classes},
            "test": {c: [f"{c}/{i}" for i in range(2, 3)] for c in classes}}
    (base / "meta").mkdir(parents=True)
    for split, content in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(content))
        for rels in content.values():
            for rel in rels:
                (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8)).save(base / "images" / f"{rel}.jpg")
    src = open_source(f"food101:{tmp_path}", ["apple pie", "pad thai", "sushi"])
    assert [s.label for s in src] == [0, 1, 2]
    train, test, names = training_sources(f"food101:{tmp_path}")
    assert names == ["apple pie", "pad thai", "sushi"] and len(train) == 6 and len(test) == 3


def test_train_test_folders_and_errors(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / c / "x.png")
    train, test, classes = training_sources(str(tmp_path))
    assert classes == ["cat", "dog"] and [s.label for s in train] == [0, 1] and len(test) == 2
    with pytest.raises(cc.ClassContrastError, match="train/ and test/"):
        training_sources(str(tmp_path / "train"))
