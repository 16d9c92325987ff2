"""Data annotated below the image: segmentation mask folders (an image and a PNG of class ids) and COCO-format
detection annotations (``instances.json`` and its images), read for the region and object audits
(`classcontrast.confusion.units_audit`).

* A mask folder: ``DIR/images/`` beside ``DIR/masks/`` (or ``annotations/``, ``labels/``), or Pascal VOC's
  ``JPEGImages/`` beside ``SegmentationClass/``; a mask is the image's stem with ``.png``, one class id per pixel (a
  palette or greyscale PNG: the model's class indices), ``ignore`` (255, VOC's boundaries) counted nowhere. Images
  without a mask are left out, said once.
* A COCO json (``images``, ``annotations``, ``categories``; read with pycocotools): each image's non-crowd boxes with
  their categories matched to the model's classes by name (as class folders are); images are found by their
  ``file_name`` next to the json, in an ``images/`` folder there, or in a folder beside the json's folder (COCO's
  ``annotations/`` beside ``val2017/``).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..classes import class_index
from ..errors import ClassContrastError
from ..text import count
from .images import IMAGE_SUFFIXES, _read, load_image
from .sources import Sample

IGNORE = 255  # a mask's "no class here" (VOC's object boundaries), counted in no confusion
MASK_FOLDERS = (("images", "masks"), ("images", "annotations"), ("images", "labels"),
                ("JPEGImages", "SegmentationClass"))


@dataclass
class MaskItem:
    """An image and its mask file of class ids."""

    sample: Sample
    mask: Path

    def truth(self, size: Sequence[int], resize: Any) -> np.ndarray:
        """The mask at the model's view of the image, (H, W) int64: ``resize`` (the model's preprocessing of a PIL
        image, with nearest-neighbour interpolation) applied to the mask as to its image."""
        img = _read(self.mask, _class_ids)
        view = np.asarray(resize(img), dtype=np.int64)
        if view.shape != tuple(size):
            raise ClassContrastError(f"mask {self.mask}: {view.shape[1]}×{view.shape[0]} pixels at the model's view, "
                                     f"its image {size[1]}×{size[0]} (the mask must have its image's size)")
        return view


@dataclass
class BoxItem:
    """An image and its ground-truth boxes (N, 4) x0, y0, x1, y1 in the image's pixels, with their classes."""

    sample: Sample
    boxes: np.ndarray
    labels: list[int]


@dataclass
class AnnotatedSource:
    """Annotated images: ``items`` (`MaskItem` or `BoxItem`) and what they are."""

    items: list[Any]
    description: str


def _class_ids(img: Image.Image) -> Image.Image:
    if img.mode not in ("P", "L", "I", "I;16"):
        raise ClassContrastError(f"a mask must hold class ids (a palette or greyscale PNG), got a {img.mode} image")
    img.load()
    return img if img.mode in ("P", "L") else Image.fromarray(np.asarray(img).astype(np.int32))


def mask_folders(root: Path) -> tuple[Path, Path] | None:
    """The (images, masks) folders of a mask folder, or None."""
    return next(((root / i, root / m) for i, m in MASK_FOLDERS if (root / i).is_dir() and (root / m).is_dir()), None)


def mask_source(root: Path) -> AnnotatedSource:
    """The images of a mask folder that have a mask (see the module docstring)."""
    found = mask_folders(root)
    assert found is not None
    images, masks = found
    items = []
    for f in sorted(p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = f.relative_to(images)
        m = masks / rel.with_suffix(".png")
        if m.is_file():
            items.append(MaskItem(Sample(str(rel), lambda f=f: load_image(f), None, str(f)), m))
    if not items:
        raise ClassContrastError(f"{root}: no image in {images.name}/ has a mask in {masks.name}/ (its name with "
                                 ".png)")
    return AnnotatedSource(items, f"{count(len(items), 'image')} with masks in {root}")


def is_coco(path: Path) -> bool:
    """Whether ``path`` is a COCO-format annotation file (a json with ``images`` and ``annotations``)."""
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return b'"annotations"' in head or b'"images"' in head


def _image_folder(path: Path, names: list[str]) -> Path:
    """Where the json's images are (see the module docstring)."""
    if not names:
        return path.parent
    places = [path.parent, path.parent / "images", *sorted(d for d in path.parent.parent.iterdir() if d.is_dir())]
    for place in places:
        if (place / names[0]).is_file():
            return place
    raise ClassContrastError(f"{path}: its first image {names[0]!r} is not next to it, in images/ there, or in a "
                             f"folder beside {path.parent.name}/")


def coco_source(path: Path, categories: Sequence[str]) -> AnnotatedSource:
    """The images of a COCO json with their boxes, classes matched to the model's by name."""
    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise ClassContrastError("COCO annotations need pycocotools: pip install 'classcontrast[datasets]'") from e
    try:
        coco = COCO()
        coco.dataset = json.loads(path.read_text(encoding="utf-8"))
        with contextlib.redirect_stdout(io.StringIO()):  # its "creating index..." lines
            coco.createIndex()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ClassContrastError(f"{path} is not a COCO annotation file ({e})") from e
    try:
        classes = {c["id"]: class_index(c["name"], categories, f"{path}: category")
                   for c in coco.loadCats(coco.getCatIds())}
    except ClassContrastError as e:
        raise ClassContrastError(f"{e} — a COCO json is audited with a detector whose classes carry its category "
                                 "names") from e
    ids = sorted(coco.getImgIds())
    records = coco.loadImgs(ids)
    folder = _image_folder(path, [r["file_name"] for r in records])
    items = []
    for record in records:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=record["id"], iscrowd=False))
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], dtype=np.float64).reshape(-1, 4)
        f = folder / record["file_name"]
        items.append(BoxItem(Sample(record["file_name"], lambda f=f: load_image(f), None, str(f)), boxes,
                             [classes[a["category_id"]] for a in anns]))
    if not items:
        raise ClassContrastError(f"{path} lists no images")
    boxes = count(sum(len(i.labels) for i in items), "box", "boxes")
    return AnnotatedSource(items, f"{count(len(items), 'image')} with {boxes} in {path.name}")


def is_annotated(data: Sequence[str] | str | None) -> bool:
    """Whether ``--data`` is one mask folder or one COCO json (read by `open_annotated`)."""
    if data is None or (not isinstance(data, str) and len(data) != 1):
        return False
    p = Path(data if isinstance(data, str) else data[0])
    return (p.is_dir() and mask_folders(p) is not None) or is_coco(p)


def open_annotated(data: Sequence[str] | str, categories: Sequence[str], limit: int | None = None) -> AnnotatedSource:
    """The mask folder or COCO json given as the one ``--data`` value (`is_annotated`), its first ``limit`` images."""
    p = Path(data if isinstance(data, str) else data[0])
    source = mask_source(p) if p.is_dir() else coco_source(p, categories)
    if limit is not None:
        source = AnnotatedSource(source.items[: max(0, limit)], source.description)
    if not source.items:
        raise ClassContrastError(f"{source.description}: no images to audit (--limit {limit})")
    return source


__all__ = ["IGNORE", "AnnotatedSource", "BoxItem", "MaskItem", "coco_source", "is_annotated", "is_coco", "mask_folders",
           "mask_source", "open_annotated"]
