"""Shared experiment plumbing: labelled batches, per-sample result files, summaries on disk."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.sources import SampleSource
from ..distributed import Dist
from ..errors import ClassContrastError
from ..models import ModelBundle
from ..state import predict
from ..text import spreadsheet_cell


@dataclass
class Batch:
    """Pixel images in [0, 1] (B, 3, H, W) with labels; ``predicted`` marks labels taken from the model."""

    ids: list[str]
    pixels: Tensor
    labels: Tensor
    predicted: list[bool]
    index: int = 0  # position of the batch in the whole run


def batch_generator(seed: int, batch: Batch) -> torch.Generator:
    """A generator seeded by ``seed`` and the batch's position in the whole run: the same draws whatever
    the number of processes or interruptions."""
    return torch.Generator().manual_seed(seed * 1_000_003 + batch.index)


def batches(source: SampleSource, bundle: ModelBundle, batch_size: int, device: torch.device | str = "cpu",
            skip: Callable[[list[str]], bool] | None = None, shard: Dist | None = None,
            fill_labels: bool = True) -> Iterator[Batch]:
    """Preprocessed, labelled batches of ``batch_size`` consecutive samples, always formed the same way
    (so results never depend on what was skipped or which process ran a batch). A batch is left out
    when ``skip(ids)`` holds (all its results exist) or when another rank owns it. Missing labels are
    the model's prediction, or -1 with ``fill_labels=False``."""
    for index, chunk in enumerate(batch_ranges(len(source), batch_size)):
        if (shard is not None and not shard.owns(index)) or (skip is not None and
                                                             skip([source.samples[i].id for i in chunk])):
            continue
        yield batch_at(source, bundle, batch_size, index, device, fill_labels)


def batch_ranges(n: int, batch_size: int) -> list[range]:
    """The positions of each batch of ``n`` items: ``batch_size`` consecutive ones, always formed the same way (so
    results never depend on what was skipped, or which process or worker ran a batch)."""
    if batch_size < 1:
        raise ClassContrastError("--batch-size must be at least 1")
    return [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def batch_at(source: SampleSource, bundle: ModelBundle, batch_size: int, index: int,
             device: torch.device | str = "cpu", fill_labels: bool = True) -> Batch:
    """Batch ``index`` of `batches` (the samples ``index * batch_size`` onwards), read and labelled."""
    chunk = source.samples[index * batch_size : (index + 1) * batch_size]
    pixels = torch.stack([s.prepared(bundle.preprocess) for s in chunk]).to(device)
    labels = [s.label if s.label is not None else (None if fill_labels else -1) for s in chunk]
    if any(label is None for label in labels):
        pred = predict(bundle.model, bundle.normalize(pixels)).argmax(1).tolist()
        labels = [p if label is None else label for p, label in zip(pred, labels, strict=True)]
    bad = [y for y in labels if not 0 <= y < bundle.num_classes and not (y == -1 and not fill_labels)]
    if bad:
        raise ClassContrastError(f"label {bad[0]} is out of range for a model with {bundle.num_classes} classes")
    return Batch([s.id for s in chunk], pixels, torch.tensor(labels, device=device), [s.label is None for s in chunk],
                 index)


def model_device(model: nn.Module) -> torch.device:
    """Where a model's first parameter (or buffer) lives; CPU for a model with neither."""
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def model_fingerprint(model: nn.Module) -> str:
    """A short digest of a model's parameter and buffer names, shapes and sums (to 7 digits), and the values of its
    small integer buffers (a prompt's token ids): results made by other weights or another prompt are told apart,
    while the same weights give the same digest in any process."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
            h.update(f"{name}{tuple(t.shape)}{float(t.detach().double().sum()):.6e}".encode())
            if not t.is_floating_point() and t.numel() <= 1 << 16:  # token ids (a prompt): every value, in order
                h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def preprocess_fingerprint(bundle: ModelBundle) -> str:
    """A short digest of how a bundle turns an image into the model's input and names its classes:
    the preprocessing's description, the normalisation and the class names."""
    text = json.dumps([repr(bundle.preprocess), list(bundle.normalize.mean), list(bundle.normalize.std),
                       list(bundle.categories)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_setup(bundle: ModelBundle, **settings: Any) -> dict[str, Any]:
    """What every per-sample row of a run depends on besides the sample: the model's weights, its
    preprocessing and class names, and the run's ``settings``."""
    return {"model": model_fingerprint(bundle.model), "preprocess": preprocess_fingerprint(bundle), **settings}


class SampleLog:
    """Append-only per-sample results (JSON lines, flushed and synced as written): an interrupted run
    resumes where it stopped, with no sample lost or counted twice.

    Under torchrun every rank appends to its own file (``name.rankN.jsonl``) and reads all of them,
    so a resumed run may use any number of processes. Rows are identified by the ``key`` fields.
    ``setup`` (the model's fingerprint and the settings every row depends on) is stamped on each row;
    rows made under another setup are ignored (kept in the file, recomputed for this one), so re-using an
    output folder with other settings never mixes or reuses their numbers. ``stamps`` (sample id -> its
    `stamp`, the hash of its content and label) is stamped on
    each row too: a row of a file that has since changed, or of another image of the same name, is
    ignored and recomputed.
    """

    def __init__(self, path: Path | None, key: Sequence[str], rank: int = 0, world: int = 1,
                 setup: dict[str, Any] | None = None, stamps: dict[str, str] | None = None) -> None:
        self.path = path
        self.key = tuple(key)
        self.setup = None if setup is None else json.dumps(setup, sort_keys=True, default=str)
        self.stamps = stamps
        self.rows: list[dict[str, Any]] = []
        self._seen: set[tuple[Any, ...]] = set()
        self._fh = None
        if path is None:
            return
        self.reload()
        own = path if world == 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
        own.parent.mkdir(parents=True, exist_ok=True)
        if own.exists() and own.stat().st_size and not own.read_bytes().endswith(b"\n"):
            own.open("a").write("\n")  # end a line cut by a crash, so new rows start clean
        self._fh = own.open("a")

    def files(self) -> list[Path]:
        assert self.path is not None
        return sorted([self.path, *self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}")])

    def reload(self) -> None:
        """Read every rank's rows (again), e.g. after the other ranks have finished."""
        if self.path is None:
            return
        for f in self.files():
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: recomputed
                    continue
                self._remember(row)

    def _remember(self, row: Any) -> bool:
        if not isinstance(row, dict) or any(f not in row for f in self.key):
            return False  # JSON, but not a row of this log (e.g. a line written by something else)
        if self.setup is not None and row.get("setup") != self.setup:
            return False  # another setup's row
        if self.stamps is not None and row.get("content") != self.stamps.get(row.get("id")):  # type: ignore[arg-type]
            return False  # a row of another image (or label) under this id
        k = tuple(row.get(f) for f in self.key)
        if k in self._seen:
            return False
        self._seen.add(k)
        self.rows.append(row)
        return True

    def has(self, **key: Any) -> bool:
        return tuple(key.get(f) for f in self.key) in self._seen

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        stamp = {} if self.setup is None else {"setup": self.setup}
        if self.stamps is not None:
            rows = ({**r, "content": self.stamps.get(r.get("id"))} for r in rows)
        new = [r for r in ({**r, **stamp} for r in rows) if self._remember(r)]
        if self._fh is not None and new:
            self._fh.write("".join(json.dumps(r) + "\n" for r in new))  # one write per batch
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _batch_stamps(source: SampleSource, batch_size: int | None) -> dict[str, str]:
    """Each sample's content stamp, and with ``batch_size`` that of its whole batch."""
    own = {s.id: s.stamp() for s in source}
    if batch_size is None or batch_size < 1:
        return own
    out = {}
    for start in range(0, len(source.samples), batch_size):
        chunk = [s.id for s in source.samples[start : start + batch_size]]
        batch = hashlib.sha256(json.dumps([own[i] for i in chunk]).encode()).hexdigest()[:12]
        out.update({i: f"{own[i]}/batch {batch}" for i in chunk})
    return out


@contextmanager
def sample_log(path: Path | None, key: Sequence[str], shard: Dist, setup: dict[str, Any] | None = None,
               source: SampleSource | None = None, batch_size: int | None = None) -> Iterator[SampleLog]:
    """A `SampleLog` for one experiment: when the body finishes, every rank waits for the others
    and re-reads all ranks' rows, so the summary covers the whole run; the file is closed in any case.
    With a ``path``, every row is stamped with its sample's content hash from ``source`` and with the
    batch `batches` puts it in (``batch_size``): a float32 result depends on its batch in the last
    bits, so a row is reused only where a clean run would compute it in the same batch (see
    `SampleLog`)."""
    stamps = _batch_stamps(source, batch_size) if path is not None and source is not None else None
    log = SampleLog(path, key, rank=shard.rank, world=shard.world, setup=setup, stamps=stamps)
    try:
        yield log
        shard.barrier()
        log.reload()
    finally:
        log.close()


def markdown_rows(rows: list[list[str]]) -> str:
    """A Markdown table from rows of cells, the first row the header."""
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def write_table(records: list[dict[str, Any]], out: Path, name: str) -> list[Path]:
    """Write records as ``name.json`` and ``name.csv`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    js, cs = out / f"{name}.json", out / f"{name}.csv"
    js.write_text(json.dumps(records, indent=2))
    with cs.open("w", newline="", encoding="utf-8") as fh:
        if records:
            w = csv.DictWriter(fh, fieldnames=[spreadsheet_cell(k) for k in records[0]])
            w.writeheader()
            w.writerows({spreadsheet_cell(k): spreadsheet_cell(v) for k, v in r.items()} for r in records)
    return [js, cs]


def mean(values: Iterable[float]) -> float:
    """The mean with an exactly rounded sum (math.fsum): the same bits in any order, so results merged
    from several processes or a resumed run equal those of one uninterrupted run."""
    v = list(values)
    return math.fsum(v) / len(v) if v else float("nan")
