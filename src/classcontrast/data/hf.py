"""A Hugging Face ``datasets`` folder as labelled samples: what ``Dataset.save_to_disk`` (one split) or
``DatasetDict.save_to_disk`` (a folder per split) wrote, read memory-mapped with ``datasets.load_from_disk``.

The images come from the dataset's first ``Image`` feature, read from their stored bytes as `load_image` reads a
file (the same pixel budget); the labels from its first ``ClassLabel`` feature (a ``Sequence`` of one: label sets,
multi-label), whose names are matched to the model's classes by name as class folders are, in any order (a label
of -1, the hub's "no label", leaves the image unlabelled: the model's prediction is used, said so). Nothing is
downloaded or cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..classes import class_index
from ..errors import ClassContrastError
from .sources import LABELS_FROM_CSV, LABELS_FROM_PREDICTION, Sample, SampleSource

LABELS_FROM_CLASSLABEL = "the dataset's ClassLabel"


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a folder ``save_to_disk`` wrote (a dataset, or a dict of splits)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def hf_source(root: Path, categories: Sequence[str], split: str | None = None) -> SampleSource:
    """The samples of the dataset folder ``root`` (its ``split`` when it holds several; see the module docstring)."""
    try:
        import datasets
    except ImportError as e:
        raise ClassContrastError(f"--data {root} is a datasets folder (save_to_disk's): pip install "
                                 "'classcontrast[datasets]'") from e
    try:
        loaded = datasets.load_from_disk(str(root))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise ClassContrastError(f"--data {root}: cannot read the datasets folder ({e})") from e
    name, prefix = str(root), ""
    if isinstance(loaded, datasets.DatasetDict):
        chosen = choose_split(root, list(loaded), split)
        loaded, name, prefix = loaded[chosen], f"{root}[{chosen}]", f"{chosen}/"
    elif split is not None and split != str(loaded.split or split):
        raise ClassContrastError(f"--data {root} is one split ({loaded.split}), not {split!r}")
    return _samples(loaded, name, categories, prefix)


def choose_split(root: Path, splits: list[str], split: str | None) -> str:
    """The split asked for among a folder's ``splits`` (None: its only one); one line naming them otherwise."""
    chosen = split if split is not None else (splits[0] if len(splits) == 1 else None)
    if chosen not in splits:
        given = f"has no split {split!r}" if split is not None else "holds several splits"
        raise ClassContrastError(f"--data {root} {given} ({', '.join(splits)}): choose one with --split")
    return chosen


def _columns(ds: Any, name: str) -> tuple[str, str | None, bool]:
    """The image column, the label column (None: unlabelled) and whether labels are sets."""
    import datasets

    features = ds.features
    image = next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    if image is None:
        raise ClassContrastError(f"--data {name}: no Image feature among {', '.join(features) or 'no columns'}")
    for k, f in features.items():
        if isinstance(f, datasets.ClassLabel):
            return image, k, False
        inner = getattr(f, "feature", None) if type(f).__name__ in ("Sequence", "List", "LargeList") else None
        if isinstance(inner, datasets.ClassLabel):
            return image, k, True
    return image, None, False


def _samples(ds: Any, name: str, categories: Sequence[str], prefix: str) -> SampleSource:
    """Row i is sample ``prefix + i`` (a DatasetDict's split and the place: ``test/12``)."""
    import datasets

    image, label, sets = _columns(ds, name)
    if label is not None:
        feature = ds.features[label].feature if sets else ds.features[label]
        to_model = [class_index(n, categories, f"{name}: class") for n in feature.names]
    raw = ds.cast_column(image, datasets.Image(decode=False))  # the stored bytes: read as files are
    values = raw[label] if label is not None else [None] * len(raw)
    samples = []
    for i, value in enumerate(values):
        reader = _Reader(raw, image, i, f"{name} #{i}")
        if sets:
            labels = tuple(sorted({to_model[v] for v in value if v >= 0}))
            samples.append(Sample(f"{prefix}{i}", reader, None, None, labels=labels))
        else:
            known = value is not None and value >= 0
            samples.append(Sample(f"{prefix}{i}", reader, to_model[value] if known else None))
    labelled = label is not None and any(s.label is not None or s.labels is not None for s in samples)
    source = LABELS_FROM_CSV if sets else LABELS_FROM_CLASSLABEL if labelled else LABELS_FROM_PREDICTION
    return SampleSource(samples, source, f"the datasets folder {name}")


class _Reader:
    """Row ``i``'s image, read from the bytes the dataset stores (or the file it names); picklable, so that Ray's
    workers read it themselves (the dataset is memory-mapped: only its file names travel)."""

    def __init__(self, ds: Any, column: str, i: int, name: str) -> None:
        self.ds, self.column, self.i, self.name = ds, column, i, name

    def _stored(self) -> dict[str, Any]:
        stored = self.ds[self.i][self.column]
        if not stored or not (stored.get("bytes") or stored.get("path")):
            raise ClassContrastError(f"{self.name}: the dataset stores no image")
        return dict(stored)

    def __call__(self) -> Any:
        from .images import load_image, load_image_bytes

        stored = self._stored()
        return load_image_bytes(stored["bytes"], self.name) if stored.get("bytes") else load_image(stored["path"])

    def content(self) -> bytes:
        """The image's encoded bytes, without decoding them (what `Sample.stamp` hashes)."""
        stored = self._stored()
        if stored.get("bytes"):
            return bytes(stored["bytes"])
        try:
            return Path(stored["path"]).read_bytes()
        except OSError as e:
            raise ClassContrastError(f"{self.name}: cannot read {stored['path']} ({e.strerror or e})") from e


__all__ = ["LABELS_FROM_CLASSLABEL", "hf_source", "is_hf_folder"]
