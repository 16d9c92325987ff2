"""Shared experiment plumbing: labelled batches, per-sample result files, summaries on disk."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.sources import SampleSource
from ..errors import ClassContrastError
from ..models import ModelBundle
from ..state import frozen_eval


@dataclass
class Batch:
    """Pixel images in [0, 1] (B, 3, H, W) with labels; ``predicted`` marks labels taken from the model."""

    ids: list[str]
    pixels: Tensor
    labels: Tensor
    predicted: list[bool]


def batches(source: SampleSource, bundle: ModelBundle, batch_size: int, device: torch.device | str = "cpu",
            skip: Callable[[str], bool] | None = None) -> Iterator[Batch]:
    """Preprocessed, labelled batches in source order; samples for which ``skip(id)`` holds are left out."""
    if batch_size < 1:
        raise ClassContrastError("--batch-size must be at least 1")
    todo = [s for s in source.samples if skip is None or not skip(s.id)]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        pixels = torch.stack([bundle.preprocess(s.load()) for s in chunk]).to(device)
        labels = [s.label for s in chunk]
        if any(label is None for label in labels):
            with frozen_eval(bundle.model), torch.no_grad():
                pred = bundle.model(bundle.normalize(pixels)).argmax(1).tolist()
            labels = [p if label is None else label for p, label in zip(pred, labels, strict=True)]
        bad = [y for y in labels if not 0 <= y < bundle.num_classes]
        if bad:
            raise ClassContrastError(f"label {bad[0]} is out of range for a model with {bundle.num_classes} classes")
        yield Batch([s.id for s in chunk], pixels, torch.tensor(labels, device=device),
                    [s.label is None for s in chunk])


class SampleLog:
    """Append-only per-sample results (JSON lines, flushed as written): an interrupted run resumes
    where it stopped, with no sample lost or counted twice."""

    def __init__(self, path: Path | None, key: Sequence[str]) -> None:
        self.path = path
        self.key = tuple(key)
        self.rows: list[dict[str, Any]] = []
        self._seen: set[tuple[Any, ...]] = set()
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: recomputed
                    continue
                self._remember(row)
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a")

    def _remember(self, row: dict[str, Any]) -> bool:
        k = tuple(row.get(f) for f in self.key)
        if k in self._seen:
            return False
        self._seen.add(k)
        self.rows.append(row)
        return True

    def has(self, **key: Any) -> bool:
        return tuple(key.get(f) for f in self.key) in self._seen

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        new = [r for r in rows if self._remember(r)]
        if self._fh is not None and new:
            self._fh.write("".join(json.dumps(r) + "\n" for r in new))
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_table(records: list[dict[str, Any]], out: Path, name: str) -> list[Path]:
    """Write records as ``name.json`` and ``name.csv`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    js, cs = out / f"{name}.json", out / f"{name}.csv"
    js.write_text(json.dumps(records, indent=2))
    with cs.open("w", newline="") as fh:
        if records:
            w = csv.DictWriter(fh, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
    return [js, cs]


def mean(values: Iterable[float]) -> float:
    v = list(values)
    return float(sum(v) / len(v)) if v else float("nan")
