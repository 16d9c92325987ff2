r"""Audits below the image: which classes a segmenter confuses region by region, and a detector box by box — and
why it said A rather than B there.

* Regions (a mask folder, `classcontrast.data.annotated`): each image's pixels of true class $b$ the model labels
  $a \ne b$ form one confused region; the confusion matrix counts pixels (``ignore`` pixels nowhere), pairs are
  ranked by pixels, and a shown region is explained as ``cc.Region(a, mask)`` over exactly those pixels with
  ``original``, ``weighted`` and ``Foil(b)``: $\sum_{p} (y_a(p) - y_b(p))$, "why a rather than b here".
* Objects (a COCO json): the detections scoring at least ``min_score`` are matched to the ground-truth boxes
  greedily, best score first, each to the unmatched box of highest IoU when it reaches ``iou`` (0.5; whatever the
  classes, so that a box of class $b$ detected as $a$ is a confusion). The matrix has a last row and column
  "background": detections matching no box, boxes no detection matched. A shown object is explained as
  ``cc.Detections(indices=[d])`` (the detection itself) with ``original``, ``weighted`` and ``Foil(b)``.

The rows (``audit.parquet``, the dataset schema of `classcontrast.scale.table`): one per confused region or matched
detection (``method`` null; ``label`` the true class, ``predicted`` the model's, null for background; the unit's
fields: a region's ``pixels`` and ``mask`` (RLE), an object's ``box``, ``score``, ``index``, ``true_box``, ``iou``),
and one per shown unit, method and contrast with its map at the page's resolution (``map_level`` ``page``) and
``pair`` among its fields. ``audit.json``, ``confusion.csv`` and ``audit.html`` (`classcontrast.confusion.units_page`,
built from those rows) come with them.

Counting runs here or on Ray workers (`classcontrast.scale.workers.Workers.map`: each image counted by a worker,
the bundle moved there once) and is kept image by image in ``counts.jsonl`` (`CountStore`): a run started again with
the same folder counts only the images it does not hold — an image known by its pixels and its truth (the mask's
bytes, the boxes and labels) — and refuses a folder of other settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.annotated import IGNORE, AnnotatedSource, BoxItem, MaskItem
from ..errors import ClassContrastError
from ..evaluation.runner import model_device
from ..explorer.encode import fit
from ..models import ModelBundle
from ..scale.store import write_atomic
from ..scale.table import flat, rle, unrle
from ..state import frozen_eval
from ..units.objects import NoDetections
from ..units.regions import dense_logits
from ..units.selectors import Detections, Region
from .table import PAGE_LEVEL, write_matrix, write_rows

CONTRASTS = ("original", "weighted")  # and Foil(true class)


@dataclass
class Confused:
    """One unit the audit counts: its image (a place in the source's items), true and predicted class (the number
    of classes for background), its ``weight`` (a region's pixels, a detection's score) and fields."""

    item: int
    true: int
    predicted: int
    weight: float
    fields: dict[str, Any]


@dataclass
class UnitPair:
    """A confused pair: ``true`` taken for ``predicted`` in ``count`` units (pixels, boxes), the units shown."""

    true: int
    predicted: int
    count: float
    shown: list[Confused] = field(default_factory=list)


@dataclass
class UnitAudit:
    """The result of `unit_audit`."""

    model: str
    data: str
    unit: str  # "region" or "object": what was counted
    measure: str  # "pixels" or "boxes": what the matrix counts
    n: int
    classes: list[str]
    confusion: np.ndarray
    pairs: list[UnitPair]
    methods: list[str]
    metrics: dict[str, Any]
    records: list[Confused]
    paths: list[Path] = field(default_factory=list)


class Regions:
    """A segmenter's confusions, pixel by pixel (see the module docstring)."""

    unit = "region"
    measure = "pixels"  # what the confusion matrix counts
    background = False

    def __init__(self, bundle: ModelBundle, device: Any, **_: Any) -> None:
        view = getattr(bundle.preprocess, "view", None)
        if view is None:
            raise ClassContrastError(f"{bundle.name}: a mask audit needs a preprocessing that resizes and crops (its "
                                     "masks follow the same geometry)")
        self.bundle, self.device, self.view = bundle, device, view

    def count(self, i: int, item: MaskItem) -> tuple[np.ndarray, list[Confused]]:
        """Image ``i``'s pixel confusion matrix and its confused regions (each with its mask's RLE)."""
        x = self.bundle.transform(item.sample.load())[None].to(self.device)
        with frozen_eval(self.bundle.model), torch.no_grad():
            y = dense_logits(self.bundle.model(x), x.shape[2:])
        if y is None:
            raise ClassContrastError(f"{item.mask.parent}: a mask folder is audited with a segmenter; "
                                     f"{self.bundle.name} is not one")
        c = y.shape[1]
        pred = y[0].argmax(0).cpu().numpy()
        truth = item.truth(pred.shape, lambda m: self.view(m, "nearest"))
        bad = truth[(truth != IGNORE) & ((truth < 0) | (truth >= c))]
        if bad.size:
            raise ClassContrastError(f"mask {item.mask}: class id {int(bad[0])}, the model has {c} classes (0..{c - 1};"
                                     f" {IGNORE}: ignored)")
        valid = truth != IGNORE
        matrix = np.bincount(truth[valid] * c + pred[valid], minlength=c * c).reshape(c, c)
        found = []
        for b, a in zip(*np.nonzero(matrix), strict=True):
            fields: dict[str, Any] = {"pixels": int(matrix[b, a])}
            if a != b:
                fields["mask"] = rle((truth == b) & (pred == a))
            found.append(Confused(i, int(b), int(a), float(matrix[b, a]), fields))
        return matrix, found

    def target(self, c: Confused) -> Any:
        return Region(c.predicted, torch.from_numpy(unrle(c.fields["mask"])).to(self.device))

    def check(self, ex: Any, c: Confused) -> None:
        """Nothing to check: the region is given."""

    @staticmethod
    def metrics(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        """Pixel accuracy and each class's IoU (classes present in the masks or the predictions), their mean."""
        tp = np.diag(matrix).astype(float)
        union = matrix.sum(0) + matrix.sum(1) - tp
        iou = {names[k]: float(tp[k] / union[k]) for k in range(len(names)) if union[k] > 0}
        return {"pixel_accuracy": float(tp.sum() / max(1, matrix.sum())), "iou": iou,
                "mean_iou": float(np.mean(list(iou.values()))) if iou else None}


class Objects:
    """A detector's confusions, box by box (see the module docstring)."""

    unit = "object"
    measure = "boxes"
    background = True

    def __init__(self, bundle: ModelBundle, device: Any, *, iou: float = 0.5, min_score: float = 0.5,
                 **_: Any) -> None:
        self.bundle, self.device, self.iou, self.min_score = bundle, device, iou, min_score

    def detections(self, x: torch.Tensor) -> list[Any]:
        """The detections scoring at least ``min_score`` (their records: box in input pixels, label, score, index)."""
        from ..engine import units_of

        try:
            return [u for u in units_of(self.bundle, x, Detections(threshold=self.min_score))[0] if u.wanted]
        except NoDetections:
            return []

    def count(self, i: int, item: BoxItem) -> tuple[np.ndarray, list[Confused]]:
        """Image ``i``'s box confusion matrix (last row and column: background) and its matched units."""
        from pycocotools import mask as coco_mask

        img = item.sample.load()
        x = self.bundle.transform(img)[None].to(self.device)
        scale = np.array([x.shape[-1] / img.width, x.shape[-2] / img.height] * 2)
        truth = item.boxes * scale
        dets = sorted(self.detections(x), key=lambda u: -u["score"])
        c = len(self.bundle.categories)
        boxes = np.array([u["box"] for u in dets], dtype=np.float64).reshape(-1, 4)
        ious = np.asarray(coco_mask.iou(_xywh(boxes), _xywh(truth), [0] * len(truth))).reshape(len(dets), len(truth))
        free, found = set(range(len(truth))), []
        for d, u in enumerate(dets):
            best = max(free, key=lambda g: ious[d, g], default=None)
            fields = {"box": [float(v) for v in u["box"]], "score": float(u["score"]), "index": int(u["index"])}
            if best is not None and ious[d, best] >= self.iou:
                free.discard(best)
                fields.update(true_box=truth[best].tolist(), iou=float(ious[d, best]))
                found.append(Confused(i, item.labels[best], int(u["label"]), float(u["score"]), fields))
            else:
                found.append(Confused(i, c, int(u["label"]), float(u["score"]), fields))
        found += [Confused(i, item.labels[g], c, 0.0, {"true_box": truth[g].tolist()}) for g in sorted(free)]
        matrix = np.zeros((c + 1, c + 1), dtype=np.int64)
        for f in found:
            matrix[f.true, f.predicted] += 1
        return matrix, found

    def target(self, c: Confused) -> Any:
        return Detections(indices=[c.fields["index"]])

    def check(self, ex: Any, c: Confused) -> None:
        got = int(ex.targets[0, 0])
        if got != c.predicted:
            raise ClassContrastError(f"detection {c.fields['index']}: labelled {got} when explained, {c.predicted} "
                                     "when counted (the detector is not deterministic?)")

    @staticmethod
    def metrics(matrix: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        """Matched boxes, correctly classified among them, missed boxes and unmatched detections."""
        c = len(names)
        matched = int(matrix[:c, :c].sum())
        return {"boxes": int(matrix[:c].sum()), "matched": matched, "correct": int(np.trace(matrix[:c, :c])),
                "missed": int(matrix[:c, c].sum()), "unmatched_detections": int(matrix[c, :c].sum()),
                "class_accuracy_of_matched": float(np.trace(matrix[:c, :c]) / matched) if matched else None}


def _xywh(b: np.ndarray) -> np.ndarray:
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


def rank(records: Sequence[Confused], n_classes: int, pairs: int, examples: int) -> list[UnitPair]:
    """The ``pairs`` pairs of real classes (true ≠ predicted) with the most units (pixels, boxes), ties by class, each
    with its ``examples`` heaviest units (most pixels, best scores), ties by image."""
    by: dict[tuple[int, int], list[Confused]] = {}
    for r in records:
        if r.true != r.predicted and r.true < n_classes and r.predicted < n_classes:
            by.setdefault((r.true, r.predicted), []).append(r)
    total = {k: sum(r.fields.get("pixels", 1) for r in v) for k, v in by.items()}
    ranked = sorted(by, key=lambda k: (-total[k], k))[:pairs]
    return [UnitPair(b, a, total[(b, a)], sorted(by[(b, a)], key=lambda r: (-r.weight, r.item))[:examples])
            for b, a in ranked]


def _image_columns(source: AnnotatedSource, c: Confused, names: Sequence[str]) -> dict[str, Any]:
    sample = source.items[c.item].sample
    t, p = (c.true < len(names)), (c.predicted < len(names))  # false: background
    return {"id": sample.id, "path": sample.path, "stamp": sample.stamp(),
            "label": c.true if t else None, "label_name": names[c.true] if t else None,
            "predicted": c.predicted if p else None, "predicted_name": names[c.predicted] if p else None}


def counted_rows(source: AnnotatedSource, records: Sequence[Confused], unit: str,
                 names: Sequence[str]) -> list[dict[str, Any]]:
    """The first phase's rows: one per counted unit (``method`` null)."""
    places: dict[int, int] = {}
    rows = []
    for c in records:
        place = places[c.item] = places.get(c.item, -1) + 1
        rows.append({**_image_columns(source, c, names), "unit": place, "unit_kind": unit,
                     "unit_fields": json.dumps(c.fields, sort_keys=True),
                     "target": c.predicted if c.predicted < len(names) else None,
                     "target_name": names[c.predicted] if c.predicted < len(names) else None})
    return rows


def explained_rows(kind: Any, source: AnnotatedSource, pairs: Sequence[UnitPair], methods: Sequence[str],
                   options: dict[str, Any], advance: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """The second phase's rows: each shown unit under each method and contrast, its map at the page's resolution."""
    from ..contrasts import Foil
    from ..engine import explain

    bundle, names, rows = kind.bundle, kind.bundle.categories, []
    for k, p in enumerate(pairs):
        for c in p.shown:
            x = bundle.transform(source.items[c.item].sample.load())[None].to(kind.device)
            for m in methods:
                exs = explain(bundle, x, m, [*CONTRASTS, Foil(c.true)], kind.target(c), **options)
                kind.check(next(iter(exs.values())), c)
                for r in exs.rows(maps="input"):
                    row = flat(r, _image_columns(source, c, names), "input", "float32")
                    shown = fit(torch.from_numpy(r["map"]))
                    row.update(map_level=PAGE_LEVEL, map_shape=list(shown.shape), unit=0,
                               map=shown.numpy().astype(np.float32).reshape(-1),
                               unit_fields=json.dumps({**c.fields, "pair": k}, sort_keys=True))
                    rows.append(row)
            if advance is not None:
                advance(1)
    return rows


def _write_json(path: Path, result: UnitAudit) -> Path:
    names = result.classes

    def shown(c: Confused) -> dict[str, Any]:
        return {"item": c.item, **{k: v for k, v in c.fields.items() if k != "mask"}}

    data = {"model": result.model, "data": result.data, "unit": result.unit, "counted": result.measure,
            "images": result.n,
            "classes": names, "metrics": result.metrics, "methods": result.methods,
            "pairs": [{"true": names[p.true], "predicted": names[p.predicted], "true_index": p.true,
                       "predicted_index": p.predicted, "count": p.count, "examples": [shown(c) for c in p.shown]}
                      for p in result.pairs]}
    write_atomic(path, json.dumps(data, indent=1).encode())
    return path


class CountStore:
    """Each image's count (its confusion matrix, as non-zero entries, and its units) as one line of
    ``counts.jsonl``, under a first line of the settings they depend on; a line a killed run cut is counted again."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path, self.settings = path, settings
        self.done: dict[str, tuple[np.ndarray, list[Confused]]] = {}
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # a line a killed run cut: dropped, so that the next one starts anew
                text = text[: text.rfind("\n") + 1]
                write_atomic(path, text.encode())
            lines = text.splitlines()
            if not lines or json.loads(lines[0]).get("settings") != settings:
                raise ClassContrastError(f"--out {path.parent} holds the counts of another audit (other model, data "
                                         "or settings): choose another folder, or remove that one")
            for line in lines[1:]:
                try:
                    got = json.loads(line)
                except ValueError:
                    continue  # cut by a killed run
                m = np.zeros((got["size"], got["size"]), dtype=np.int64)
                for b, a, v in got["matrix"]:
                    m[b, a] = v
                self.done[got["key"]] = (m, [Confused(**c) for c in got["found"]])
        else:
            write_atomic(path, (json.dumps({"settings": settings}) + "\n").encode())

    def add(self, key: str, matrix: np.ndarray, found: list[Confused]) -> None:
        entries = [[int(b), int(a), int(matrix[b, a])] for b, a in zip(*np.nonzero(matrix), strict=True)]
        line = {"key": key, "size": int(matrix.shape[0]), "matrix": entries,
                "found": [vars(c) for c in found]}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=_plain) + "\n")
        self.done[key] = (matrix, found)


def _plain(v: Any) -> Any:
    """A NumPy value as JSON's."""
    return v.tolist() if hasattr(v, "tolist") else str(v)


def item_key(item: Any) -> str:
    """An image's key among the counts: its pixels' stamp and its truth's hash (the mask's bytes, or the boxes and
    labels)."""
    import hashlib

    truth = item.mask.read_bytes() if isinstance(item, MaskItem) else json.dumps(
        [np.asarray(item.boxes, dtype=np.float64).round(6).tolist(), list(map(int, item.labels))]).encode()
    return f"{item.sample.stamp()}:{hashlib.sha256(truth).hexdigest()[:16]}"


def _count(kind: type, opts: dict[str, Any], source: AnnotatedSource, bundle: ModelBundle, i: int
           ) -> tuple[np.ndarray, list[Confused]]:
    """Image ``i``'s count, wherever it runs (`Workers.map`'s work: the bundle on the worker's device)."""
    return kind(bundle, model_device(bundle.model), **opts).count(i, source.items[i])


def _counted(bundle: ModelBundle, source: AnnotatedSource, kind: type, opts: dict[str, Any], store: CountStore,
             workers: Any, advance: Callable[[int], None] | None) -> tuple[np.ndarray, list[Confused]]:
    """Every image's count by a ``kind`` made with ``opts`` (`Regions`, `Objects`), from the store or computed (here or
    on Ray), summed; the records in the images' order."""
    import functools

    from ..scale.workers import Workers

    keys = [item_key(item) for item in source.items]
    todo = [i for i, k in enumerate(keys) if k not in store.done]
    if advance is not None and len(keys) > len(todo):
        advance(len(keys) - len(todo))
    work = functools.partial(_count, kind, opts, source)
    for i, (m, found) in (workers or Workers()).map(todo, bundle, work):
        store.add(keys[i], m, found)
        if advance is not None:
            advance(1)
    matrix, records = None, []
    for i, k in enumerate(keys):
        m, found = store.done[k]
        matrix = m if matrix is None else matrix + m
        records += [Confused(i, c.true, c.predicted, c.weight, c.fields) for c in found]
    assert matrix is not None
    return matrix, records


def unit_audit(bundle: ModelBundle, source: AnnotatedSource, out: str | os.PathLike[str],
               methods: Sequence[str] = ("gradcam",), *, pairs: int = 12, examples: int = 6, iou: float = 0.5,
               min_score: float = 0.5, device: Any = None,
               progress: Callable[[str, int], Callable[[int], None]] | None = None, workers: Any = None,
               settings: dict[str, Any] | None = None, **options: Any) -> UnitAudit:
    """Audit a segmenter on a mask folder or a detector on COCO annotations (see the module docstring): count the
    units (``workers``: a `classcontrast.scale.workers.Workers`, None: here; resumed from ``counts.jsonl``), rank the
    confused pairs, explain the shown units; write ``audit.json``, ``confusion.csv``, ``audit.parquet`` and
    ``audit.html`` in ``out``. ``progress(phase, total)`` returns the phase's ``advance(n)``; ``settings``: what else
    the counts depend on (the model's spec, weights, preprocessing), kept with them."""
    from .. import __version__
    from .units_page import write_units_page

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    dev = device if device is not None else model_device(bundle.model)
    opts = {"iou": iou, "min_score": min_score}
    kinds: type = Regions if isinstance(source.items[0], MaskItem) else Objects
    kind: Any = kinds(bundle, dev, **opts)
    names = list(bundle.categories)
    store = CountStore(folder / "counts.jsonl", {"model": bundle.name, "classes": names, "unit": kind.unit,
                                                  "iou": iou, "min_score": min_score, "classcontrast": __version__,
                                                  **(settings or {})})
    advance = progress("counting", len(source.items)) if progress is not None else None
    matrix, records = _counted(bundle, source, kinds, opts, store, workers, advance)
    ranked = rank(records, len(names), pairs, examples)
    rows = counted_rows(source, records, kind.unit, names)
    shown = sum(len(p.shown) for p in ranked)
    rows += explained_rows(kind, source, ranked, methods, options,
                           progress("explaining", shown) if progress is not None else None)
    shown_names = names + (["background"] if kind.background else [])
    result = UnitAudit(bundle.name, source.description, kind.unit, kind.measure, len(source.items), names, matrix,
                       ranked, list(methods), kind.metrics(matrix, names), records)
    result.paths = [_write_json(folder / "audit.json", result),
                    write_matrix(folder / "confusion.csv", "true \\ predicted", shown_names, matrix),
                    write_rows(folder / "audit.parquet", rows)]
    result.paths.append(write_units_page(folder / "audit.html", folder / "audit.parquet", folder / "audit.json"))
    return result


__all__ = ["Confused", "Objects", "Regions", "UnitAudit", "UnitPair", "counted_rows", "explained_rows", "rank",
           "unit_audit"]
