"""Data sources for experiments: ``--data`` specifications turned into labelled samples.

* an image folder with one sub-folder per class (labels from the folder names, mapped to the model's
  class names or indices);
* a CSV file ``path,labels`` (multi-label: ``photos/a.jpg,dog;frisbee``; paths relative to the file);
* a flat folder, or a list of images (labels = the model's clean top-1 prediction, said so);
* no ``--data``: the bundled photos (scikit-image and scikit-learn), each in several views
  (centre and corner crops, mirrored), labelled by the model's clean prediction;
* ``imagenet:ROOT``, ``cub200:ROOT``, ``food101:ROOT`` (see `classcontrast.data.datasets`).

`open_source` turns a ``--data`` value into one of these.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ..classes import class_index
from ..errors import ClassContrastError
from .images import IMAGE_SUFFIXES, excluded, list_images, load_image
from .samples import SAMPLES, sample_image

LABELS_FROM_FOLDERS = "folder names"
LABELS_FROM_PREDICTION = "the model's clean top-1 prediction"
LABELS_FROM_CSV = "a CSV of label sets (multi-label)"


@dataclass
class Sample:
    """One image with a stable id, its label (None: use the model's clean prediction) or, for multi-label
    data, the set of labels present (``labels``, possibly empty), and, for files, where it lives."""

    id: str
    load: Callable[[], Image.Image]
    label: int | None = None
    path: str | None = None
    _stamp: str | None = field(default=None, repr=False, compare=False)
    labels: tuple[int, ...] | None = None

    def prepared(self, preprocess: Callable[[Image.Image], Any]) -> Any:
        """The sample's image through ``preprocess``; a refusal (e.g. an extreme aspect ratio) names the sample."""
        image = self.load()
        try:
            return preprocess(image)
        except ClassContrastError as e:
            raise ClassContrastError(f"{self.path or self.id}: {e}") from e

    def stamp(self) -> str:
        """What a cached result of this sample depends on in the sample itself: a hash of its content (the
        file's bytes, or the pixels of an image made in memory) and its label. Rows and maps saved for a
        sample are reused only while its stamp is the same, so another image under the same name, or
        another label, is recomputed."""
        if self._stamp is None:
            h = hashlib.sha256()
            if self.path is not None:
                try:
                    with open(self.path, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                except OSError as e:
                    raise ClassContrastError(f"cannot read {self.path!r}: {e.strerror or e}") from e
            elif callable(getattr(self.load, "content", None)):  # an image a dataset stores: its encoded bytes
                h.update(self.load.content())  # type: ignore[attr-defined]
            else:
                img = self.load()
                h.update(f"{img.mode} {img.size} ".encode())
                h.update(img.tobytes())
            labels = self.label if self.labels is None else ";".join(map(str, self.labels))
            self._stamp = f"{h.hexdigest()[:24]}:{labels}"
        return self._stamp


@dataclass
class SampleSource:
    """An ordered list of samples and where their labels come from."""

    samples: list[Sample]
    labels_from: str
    description: str

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def select(self, limit: int | None = None, seed: int | None = None) -> SampleSource:
        """A deterministic subset: shuffled with ``seed`` (if given), then the first ``limit``."""
        samples = list(self.samples)
        if seed is not None:
            random.Random(seed).shuffle(samples)
        if limit is not None:
            samples = samples[: max(0, limit)]
        return SampleSource(samples, self.labels_from, self.description)


def _views(name: str, image: Image.Image) -> list[tuple[str, Callable[[], Image.Image]]]:
    """Six views of a photo: the whole image, four 80% corner crops, and the mirrored image."""
    w, h = image.size
    cw, ch = int(w * 0.8), int(h * 0.8)
    boxes = {"tl": (0, 0, cw, ch), "tr": (w - cw, 0, w, ch), "bl": (0, h - ch, cw, h), "br": (w - cw, h - ch, w, h)}
    out: list[tuple[str, Callable[[], Image.Image]]] = [(f"{name}/full", lambda: image)]
    out += [(f"{name}/{k}", lambda b=b: image.crop(b)) for k, b in boxes.items()]
    out.append((f"{name}/mirror", lambda: ImageOps.mirror(image)))
    return out


def bundled_source() -> SampleSource:
    """The offline default: scikit-image and scikit-learn photos, six views each."""
    photos = {n: sample_image(n) for n in SAMPLES}
    try:
        from sklearn.datasets import load_sample_images

        for fname, arr in zip(load_sample_images().filenames, load_sample_images().images, strict=True):
            photos[Path(fname).stem] = Image.fromarray(arr)
    except ImportError:
        pass
    samples = [Sample(i, load) for name, img in photos.items() for i, load in _views(name, img)]
    return SampleSource(samples, LABELS_FROM_PREDICTION, f"{len(photos)} bundled photos × 6 views")


def folder_source(root: Path, categories: Sequence[str],
                  exclude: Sequence[os.PathLike[str] | str] = ()) -> SampleSource:
    """A class-folder tree (labels from folder names) or a flat folder (labels from predictions).
    Folders and files inside ``exclude`` (the run's own output folder) are not data."""
    try:
        entries = sorted(e for e in root.iterdir() if not excluded(e, exclude))
    except OSError as e:
        raise ClassContrastError(f"cannot read the folder {root}: {e.strerror or e}") from e
    subdirs = [d for d in entries if d.is_dir()]
    direct = [f for f in entries if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if subdirs and not direct:
        samples = []
        for d in subdirs:
            label = class_index(d.name, categories, f"class folder {d}")
            for f in list_images([d], allow_empty=True, exclude=exclude):
                samples.append(Sample(str(f.relative_to(root)), lambda f=f: load_image(f), label, str(f)))
        if not samples:
            names = ", ".join(d.name for d in subdirs[:5]) + (", ..." if len(subdirs) > 5 else "")
            raise ClassContrastError(f"the class folders in {root} ({names}) hold no images (image files: "
                                     ".jpg, .png, ...)")
        return SampleSource(samples, LABELS_FROM_FOLDERS, f"class folders in {root}")
    files = list_images([root], exclude=exclude)
    return SampleSource([Sample(str(f.relative_to(root)), lambda f=f: load_image(f), None, str(f)) for f in files],
                        LABELS_FROM_PREDICTION, f"images in {root}")


def csv_source(path: Path, categories: Sequence[str]) -> SampleSource:
    """Multi-label data: a CSV file whose rows are ``image path,label;label;...`` (an optional header row
    ``path,labels``; labels by class name or index, none for an image with no label present; paths
    relative to the CSV file's folder). An image listed on several lines has the labels of all of them."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [(n, r) for n, r in enumerate(csv.reader(fh), start=1) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ClassContrastError(f"cannot read the label file {path}: {getattr(e, 'strerror', None) or e}") from e
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "labels"]:
        rows = rows[1:]
    found: dict[Path, tuple[str, set[int]]] = {}  # each image once, in the order first listed: its labels
    for n, row in rows:
        if len(row) > 2:
            raise ClassContrastError(f"{path}, line {n}: expected 'path,label;label', got {len(row)} fields "
                                     "(separate labels with ';', quote paths with commas)")
        file = (path.parent / row[0].strip()).resolve()
        if not file.is_file():
            raise ClassContrastError(f"{path}, line {n}: no image {row[0].strip()!r} (relative to {path.parent})")
        names = [v.strip() for v in (row[1] if len(row) > 1 else "").split(";") if v.strip()]
        # an image on several lines (one label per line, a common layout) has the union of their labels
        found.setdefault(file, (row[0].strip(), set()))[1].update(
            class_index(v, categories, f"{path}, line {n}: label") for v in names)
    samples = [Sample(name, lambda f=file: load_image(f), None, str(file), labels=tuple(sorted(labels)))
               for file, (name, labels) in found.items()]
    if not samples:
        raise ClassContrastError(f"the label file {path} lists no images")
    return SampleSource(samples, LABELS_FROM_CSV, f"label sets in {path.name}")
