"""``--data`` specifications: a class-folder tree, a flat folder, files, a multi-label CSV
(``path,label;label``), a Hugging Face ``datasets`` folder (``save_to_disk``'s, or the hub's Parquet layout), the
bundled photos, or
``imagenet:ROOT`` / ``cub200:ROOT`` / ``food101:ROOT``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ClassContrastError
from ..text import count
from .datasets import cub_classes, food101_samples, open_dataset
from .hf import hf_source, is_hf_folder
from .hf_parquet import hf_parquet_source, is_hf_parquet
from .images import list_images, load_image
from .sources import LABELS_FROM_PREDICTION, Sample, SampleSource, bundled_source, csv_source, folder_source


def open_source(spec: str | Sequence[str] | None, categories: Sequence[str],
                exclude: Sequence[os.PathLike[str] | str] = (), split: str | None = None) -> SampleSource:
    """Resolve a ``--data`` specification (see the module docstring). Anything inside ``exclude`` (the
    run's own output folder, when it lies inside the data) is not read as data. ``split``: a Hugging Face
    datasets folder's split (`classcontrast.data.hf`)."""
    if spec is None or (not isinstance(spec, str) and len(spec) == 0):
        return bundled_source()
    if not isinstance(spec, str):
        if len(spec) == 1:
            return open_source(spec[0], categories, exclude, split)
        files = list_images(spec, exclude=exclude)
        return SampleSource([Sample(str(f), lambda f=f: load_image(f), None, str(f)) for f in files],
                            LABELS_FROM_PREDICTION, f"{count(len(files), 'image')}")
    if ":" in spec and not os.path.exists(spec) and spec.split(":", 1)[0] in {"imagenet", "cub200", "food101"}:
        kind, root = spec.split(":", 1)
        return open_dataset(kind, Path(root), categories)
    p = Path(spec)
    if p.is_dir() and is_hf_folder(p):
        return hf_source(p, categories, split)
    if p.is_dir() and is_hf_parquet(p):
        return hf_parquet_source(p, categories, split)
    if split is not None:
        raise ClassContrastError(f"--split {split}: --data {spec} is not a datasets folder (save_to_disk's, or the "
                                 "hub's Parquet files)")
    if p.is_dir():
        return folder_source(p, categories, exclude)
    if p.is_file() and p.suffix.lower() == ".csv":
        return csv_source(p, categories)
    if p.is_file():
        return SampleSource([Sample(str(p), lambda: load_image(p), None, str(p))], LABELS_FROM_PREDICTION, str(p))
    raise ClassContrastError(f"data {spec!r}: no such file or folder (give image files, a folder, a labels.csv, "
                             "or imagenet:ROOT, cub200:ROOT, food101:ROOT)")


def training_sources(spec: str) -> tuple[SampleSource, SampleSource, list[str]]:
    """(train, test, class names) for ``cub200:ROOT``, ``food101:ROOT`` or a folder with ``train/`` and
    ``test/`` (or ``val/``) class folders."""
    if spec.startswith("cub200:"):
        root = Path(spec.split(":", 1)[1])
        classes = cub_classes(root)
        return (open_dataset("cub200", root, classes, "train"), open_dataset("cub200", root, classes, "test"),
                classes)
    if spec.startswith("food101:"):
        root = Path(spec.split(":", 1)[1])
        classes, _ = food101_samples(root, "train")
        return (open_dataset("food101", root, classes, "train"), open_dataset("food101", root, classes, "test"),
                classes)
    root = Path(spec)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise ClassContrastError(f"--data {spec}: expected cub200:ROOT, food101:ROOT or a folder with train/ and test/")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    return folder_source(root / "train", classes), folder_source(test_dir, classes), classes
