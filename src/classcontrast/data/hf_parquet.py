"""A Hugging Face dataset in the hub's Parquet layout, as a local folder: what ``push_to_hub`` or ``to_parquet``
wrote (``data/train-00000-of-00002.parquet``, ``train/0000.parquet``, or Parquet files side by side), read lazily —
the labels at once, each image's bytes from its row group when the image is read — so memory does not follow the
files' size, and nothing is converted or cached.

The features (an ``Image``, a ``ClassLabel`` or a ``Sequence`` of one, with the class names) come from the files'
own ``huggingface`` schema metadata (`datasets.Features.from_arrow_schema`), then read as a ``save_to_disk`` folder
is (`classcontrast.data.hf`). The split of a file is its name's prefix before ``-NNNNN-of-NNNNN`` or, failing that,
its folder's name; a folder of several splits needs ``--split``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError
from .sources import SampleSource

SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}$")


def _files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*.parquet") if f.is_file() and not any(p.startswith(".") for p in f.parts))


def is_hf_parquet(root: Path) -> bool:
    """Whether ``root`` holds Parquet files with Hugging Face features (their ``huggingface`` schema metadata)."""
    files = _files(root) if root.is_dir() else []
    if not files:
        return False
    import pyarrow.parquet as pq

    try:
        return b"huggingface" in (pq.read_schema(files[0]).metadata or {})
    except (OSError, ValueError):
        return False


def _split_of(f: Path, root: Path) -> str:
    m = SHARD.match(f.stem)
    if m:
        return m.group("split")
    return f.parent.name if f.parent != root else "train"


class ParquetRows:
    """The rows of some Parquet files, as much of a ``datasets.Dataset`` as `classcontrast.data.hf` reads:
    ``features``, ``len``, ``ds[column]`` (a whole column: the labels), ``ds[i]`` (a row: an image's stored bytes,
    from its row group, the last one read kept), ``cast_column`` (the images stay undecoded). Picklable: only the
    file names travel to Ray's workers."""

    def __init__(self, files: Sequence[Path]) -> None:
        import datasets
        import pyarrow.parquet as pq

        self.files = [str(f) for f in files]
        self.features = datasets.Features.from_arrow_schema(pq.read_schema(self.files[0]))
        self.groups: list[tuple[int, int]] = []  # (file, row group) in order
        self.starts: list[int] = []  # each group's first row
        total = 0
        for k, f in enumerate(self.files):
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                self.groups.append((k, g))
                self.starts.append(total)
                total += meta.row_group(g).num_rows
        self.n = total
        self._cached: tuple[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cached": None}

    def __len__(self) -> int:
        return self.n

    def cast_column(self, column: str, feature: Any) -> ParquetRows:
        return self  # rows are read as stored: an image's bytes, never decoded here

    def __getitem__(self, key: int | str) -> Any:
        import pyarrow.parquet as pq

        if isinstance(key, str):
            return [v for f in self.files for v in pq.read_table(f, columns=[key]).column(key).to_pylist()]
        if not 0 <= key < self.n:
            raise IndexError(key)
        at = bisect.bisect_right(self.starts, key) - 1
        if self._cached is None or self._cached[0] != at:
            k, g = self.groups[at]
            self._cached = (at, pq.ParquetFile(self.files[k]).read_row_group(g))
        return {name: column[key - self.starts[at]].as_py()
                for name, column in zip(self._cached[1].column_names, self._cached[1].columns, strict=True)}


def hf_parquet_source(root: Path, categories: Sequence[str], split: str | None = None) -> SampleSource:
    """The samples of the Parquet folder ``root`` (its ``split`` when it holds several; see the module docstring)."""
    try:
        import datasets  # noqa: F401
    except ImportError as e:
        raise ClassContrastError(f"--data {root} is a datasets Parquet folder (the hub's layout): pip install "
                                 "'classcontrast[datasets]'") from e
    from .hf import _samples, choose_split

    by_split: dict[str, list[Path]] = {}
    for f in _files(root):
        by_split.setdefault(_split_of(f, root), []).append(f)
    splits = sorted(by_split)
    chosen = choose_split(root, splits, split)
    try:
        rows = ParquetRows(by_split[chosen])
    except (OSError, ValueError) as e:
        raise ClassContrastError(f"--data {root}: cannot read its Parquet files ({e})") from e
    name = f"{root}[{chosen}]" if len(splits) > 1 or split is not None else str(root)
    return _samples(rows, name, categories, f"{chosen}/" if len(splits) > 1 else "")


__all__ = ["ParquetRows", "hf_parquet_source", "is_hf_parquet"]
