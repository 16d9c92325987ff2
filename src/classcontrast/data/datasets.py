"""Research datasets in their official layouts: ImageNet (validation, in WordNet-id folders: torchvision's
``ImageFolder``), CUB-200-2011 (no library reads it), Food-101 (torchvision's ``Food101``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..classes import class_index
from ..errors import ClassContrastError
from ..text import count
from .images import list_images, load_image
from .sources import LABELS_FROM_FOLDERS, Sample, SampleSource

_WNID = re.compile(r"^n\d{8}$")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise ClassContrastError(f"{what}: missing {path}")
    return path


def cub_root(root: Path) -> Path:
    """The folder holding images.txt: ROOT or ROOT/CUB_200_2011."""
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").exists():
            return candidate
    raise ClassContrastError(f"cub200:{root}: missing images.txt (expected the official CUB_200_2011 layout)")


def cub_classes(root: Path) -> list[str]:
    """CUB class names from classes.txt, '001.Black_footed_Albatross' -> 'Black footed Albatross'."""
    base = cub_root(root)
    lines = _need(base / "classes.txt", f"cub200:{root}").read_text().split("\n")
    return [ln.split(" ", 1)[1].split(".", 1)[1].replace("_", " ") for ln in lines if ln.strip()]


def cub_samples(root: Path, split: str = "test") -> list[tuple[str, Path, int]]:
    """(image id, path, 0-based label) for the official train or test split."""
    if split not in {"train", "test"}:
        raise ClassContrastError(f"CUB split must be 'train' or 'test', got {split!r}")
    base = cub_root(root)
    what = f"cub200:{root}"

    def table(name: str) -> dict[str, str]:
        rows = _need(base / name, what).read_text().split("\n")
        return dict(r.split(" ", 1) for r in rows if r.strip())

    images, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    _need(base / "images", what)
    want = "1" if split == "train" else "0"
    return [(i, base / "images" / images[i], int(labels[i]) - 1) for i in images if is_train.get(i) == want]


def food101_samples(root: Path, split: str = "test") -> tuple[list[str], list[tuple[str, Path, int]]]:
    """(classes, [(id, path, label)]) as torchvision's ``Food101`` reads them (``ROOT/food-101/meta/{split}.json``
    and ``images/``; ROOT may be the ``food-101`` folder itself); nothing is downloaded."""
    from torchvision.datasets import Food101

    if split not in {"train", "test"}:
        raise ClassContrastError(f"Food-101 split must be 'train' or 'test', got {split!r}")
    parent = root if (root / "food-101").is_dir() else root.parent if root.name == "food-101" else root
    _need(parent / "food-101" / "meta" / f"{split}.json", f"food101:{root}")
    try:
        ds = Food101(str(parent), split=split, download=False)
    except (RuntimeError, OSError, ValueError) as e:
        raise ClassContrastError(f"food101:{root}: {e}") from e
    files: list[Path] = list(ds._image_files)  # torchvision keeps the split's files and labels, in its order
    rows = [(f"{p.parent.name}/{p.stem}", p, int(y)) for p, y in zip(files, ds._labels, strict=True)]
    return [c.replace("_", " ") for c in ds.classes], rows


def _wordnet_folders(root: Path, val: Path, n_classes: int) -> SampleSource:
    """ImageNet's validation images in WordNet-id folders, as torchvision's ``ImageFolder`` reads them: the class
    index is the folder's place among the sorted ids, so every one of the model's classes needs its folder."""
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(val), allow_empty=True)
    if len(folder.classes) != n_classes:
        raise ClassContrastError(
            f"imagenet:{root}: {len(folder.classes)} WordNet-id folders; class indices need all {n_classes}"
            " (the standard index is the position in the sorted list of WordNet ids)")
    samples = [Sample(str(Path(f).relative_to(val)), lambda f=f: load_image(f), int(y), str(f))
               for f, y in folder.samples]
    return SampleSource(samples, LABELS_FROM_FOLDERS, f"ImageNet validation images in {val}")


def open_dataset(kind: str, root: Path, categories: Sequence[str], split: str = "test") -> SampleSource:
    """A labelled sample source for ``imagenet``, ``cub200`` or ``food101`` rooted at ``root``."""
    if not root.exists():
        raise ClassContrastError(f"{kind}:{root}: no such folder")
    if kind == "cub200":
        rows = cub_samples(root, split)
        return SampleSource([Sample(i, lambda p=p: load_image(p), y, str(p)) for i, p, y in rows],
                            "CUB image_class_labels.txt", f"CUB-200-2011 {split} split ({count(len(rows), 'image')})")
    if kind == "food101":
        _, rows = food101_samples(root, split)
        return SampleSource([Sample(i, lambda p=p: load_image(p), y, str(p)) for i, p, y in rows],
                            "Food-101 meta", f"Food-101 {split} split ({count(len(rows), 'image')})")
    if kind == "imagenet":
        val = root / "val" if (root / "val").is_dir() else root
        folders = sorted(d for d in val.iterdir() if d.is_dir())
        if not folders:
            raise ClassContrastError(f"imagenet:{root}: no class folders in {val}")
        if all(_WNID.match(d.name) for d in folders):
            return _wordnet_folders(root, val, len(categories))
        index = {d.name: class_index(d.name, categories, f"class folder {d}") for d in folders}
        samples = [Sample(str(f.relative_to(val)), lambda f=f: load_image(f), index[d.name], str(f))
                   for d in folders for f in list_images([d], allow_empty=True)]
        return SampleSource(samples, LABELS_FROM_FOLDERS, f"ImageNet validation images in {val}")
    raise ClassContrastError(f"unknown dataset kind {kind!r}")
