"""``cc.audit``: why did the model say A when the answer was B, across a whole dataset.

Two phases, both resumable and shardable under torchrun like the experiments:

1. one forward pass over the data (no graph): predictions, the confusion matrix, accuracy, and the
   confused pairs ranked by count; one line per image in ``audit_samples.jsonl``, appended and synced
   as produced;
2. for the shown examples of the top pairs: every named contrast and every "t rather than s" foil
   among the pair's two classes and the image's top classes, for each method, in one forward pass per
   method and batch; one ``maps/batch_NNNNN.npz`` per batch, written atomically.

Then ``audit.json``, ``confusion.csv`` and the self-contained explorer ``audit.html``.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..contrast_base import head_probabilities
from ..data.sources import SampleSource
from ..data.specs import open_source
from ..distributed import Dist
from ..errors import ClassContrastError
from ..evaluation.runner import batches, run_setup, sample_log
from ..explorer.offers import explore
from ..explorer.page import NAMED, entry, image_entry, write_page
from ..methods import method_class
from ..models import ModelBundle
from ..state import predict
from ..text import count, spreadsheet_cell
from .multilabel import exact_match, label_stats, missed_matrix, rank_multilabel_pairs
from .pairs import AMBIGUITY, Pair, Row, accuracy, classes_for, confusion_matrix, labelled, rank_pairs

TOP = 5  # classes kept per image in the per-sample log
THRESHOLD = 0.5  # multi-label: a label is predicted when its sigma(y) reaches this


def contrast_names(n_classes: int) -> list[str]:
    """The contrast axis of the saved maps: the named contrasts, then ``foil_j`` = "rather than classes[:, j]"."""
    return [*NAMED, *(f"foil_{j}" for j in range(n_classes))]


@dataclass
class Slot:
    """One image shown by the audit, with the classes its explorer offers."""

    entry: str
    row: Row
    classes: list[int]
    default: tuple[int, str]
    pair: int = 0
    correct: bool = False  # an image the model gets right as the pair's true class


@dataclass
class Audit:
    """The result of [`audit`][classcontrast.confusion.run.audit]: numbers, ranked pairs, shown maps, and the
    files written."""

    model: str
    data: str
    n: int
    accuracy: float | None
    labelled: bool
    classes: list[str]
    confusion: np.ndarray
    pairs: list[Pair]
    rows: list[Row]
    methods: list[str]
    slots: list[Slot] = field(default_factory=list)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry -> {"maps": {method: arr}, "p": [...]}
    paths: list[Path] = field(default_factory=list)
    ambiguity: float = AMBIGUITY  # without labels: the p2 / p1 an image needs to count in its pair
    multilabel: bool = False  # label sets (a sigmoid head): pairs are "B present and missed, A predicted instead"
    threshold: float = THRESHOLD  # multi-label: the sigma(y) at which a label counts as predicted
    label_stats: list[dict[str, Any]] = field(default_factory=list)  # multi-label: per-label FP / FN

    def to_json(self) -> dict[str, Any]:
        """The content of ``audit.json``."""

        def example(r: Row, true: int) -> dict[str, Any]:
            if self.labelled:
                return {"id": r["id"], "path": r["path"], "p_predicted": r["p_predicted"], "p_true": r["p_label"]}
            p_second = next((p for c, p in r["top"] if c == true), 0.0)
            return {"id": r["id"], "path": r["path"], "p_first": r["p_predicted"], "p_second": p_second}

        def pair(p: Pair) -> dict[str, Any]:
            if self.multilabel:
                return {"present": self.classes[p.true], "predicted_instead": self.classes[p.predicted],
                        "present_index": p.true, "predicted_instead_index": p.predicted, "count": p.count,
                        "mean_p_predicted_instead": p.mean_p_predicted, "mean_p_present": p.mean_p_true,
                        "examples": [{"id": r["id"], "path": r["path"], "labels": r["labels"],
                                      "predicted_labels": r["predicted_labels"]} for r in p.mistakes],
                        "correct": [{"id": r["id"], "path": r["path"], "labels": r["labels"]} for r in p.correct]}
            shown = {"examples": [example(r, p.true) for r in p.mistakes],
                     "correct": [{"id": r["id"], "path": r["path"], "p": r["p_predicted"]} for r in p.correct]}
            if self.labelled:
                return {"true": self.classes[p.true], "predicted": self.classes[p.predicted], "true_index": p.true,
                        "predicted_index": p.predicted, "count": p.count, "mean_p_predicted": p.mean_p_predicted,
                        **shown}
            return {"first": self.classes[p.first], "second": self.classes[p.second], "first_index": p.first,
                    "second_index": p.second, "count": p.count, "mean_p_first": p.mean_p_predicted,
                    "mean_p_second": p.mean_p_true, **shown}

        pairs_are = ("true label vs prediction" if self.labelled else
                     f"top-1 vs top-2 of each image with p(top-2) / p(top-1) >= {self.ambiguity}")
        multilabel: dict[str, Any] = {}
        if self.multilabel:
            pairs_are = (f"label present but not predicted vs label predicted but absent, in the same image "
                         f"(predicted: sigma(y) >= {self.threshold})")
            multilabel = {"multilabel": True, "threshold": self.threshold, "exact_match": self.accuracy,
                          "labels": self.label_stats}
        return {
            "model": self.model, "data": self.data, "n": self.n, "accuracy": self.accuracy,
            "labelled": self.labelled, "pairs_are": pairs_are, "methods": self.methods, "classes": self.classes,
            "pairs": [pair(p) for p in self.pairs], **multilabel,
        }

    def image_keys(self) -> dict[str, str]:
        """Sample id -> the key of its image in the page."""
        return {r["id"]: f"s{i}" for i, r in enumerate(self.rows)}

    def page_data(self, images: dict[str, dict[str, str]]) -> dict[str, Any]:
        """The explorer's data for ``audit.html`` (``images``: image key -> JPEG data URL and title)."""
        key = self.image_keys()
        entries = []
        for s in self.slots:
            got = self.maps[s.entry]
            entries.append(entry(s.entry, key[s.row["id"]], s.row["id"], s.classes, got["p"], got["maps"],
                                 label=s.row["label"], top=[(c, p) for c, p in s.row["top"]], default=s.default,
                                 notes=got.get("notes"), labels=s.row.get("labels")))
        involved: list[int] = []
        for p in self.pairs:
            for c in (p.true, p.predicted):
                if c not in involved:
                    involved.append(c)
        if self.labelled:
            counts = self.confusion[np.ix_(involved, involved)].tolist()
        else:
            pos = {c: i for i, c in enumerate(involved)}
            counts = [[0] * len(involved) for _ in involved]
            for r in self.rows:
                if r["runner_up"] in pos and r["predicted"] in pos:
                    counts[pos[r["runner_up"]]][pos[r["predicted"]]] += 1
        pairs = [{"true_index": p.true, "predicted_index": p.predicted, "count": p.count,
                  "mean_p_predicted": round(p.mean_p_predicted, 6),
                  "mistakes": [s.entry for s in self.slots if s.pair == i and not s.correct],
                  "correct": [s.entry for s in self.slots if s.pair == i and s.correct]}
                 for i, p in enumerate(self.pairs)]
        accuracy_text = "" if self.accuracy is None else f", accuracy {100 * self.accuracy:.1f}%"
        unlabelled = {} if self.labelled else {"ambiguity": self.ambiguity}
        if self.multilabel:
            accuracy_text = "" if self.accuracy is None else f", exact label sets {100 * self.accuracy:.1f}%"
            unlabelled = {"multilabel": True, "threshold": self.threshold, "labels": self.label_stats}
        return {
            "kind": "audit", "title": f"classcontrast audit: {self.model}",
            "subtitle": f"{self.data}: {count(self.n, 'image')}{accuracy_text}; methods: {', '.join(self.methods)}",
            "classes": self.classes, "images": images, "entries": entries,
            "audit": {"n": self.n, "accuracy": self.accuracy, "labelled": self.labelled, "pairs": pairs,
                      "confusion": {"classes": involved, "counts": counts}, **unlabelled},
        }


def _phase1_rows(bundle: ModelBundle, source: SampleSource, batch_size: int, device: Any, log_path: Path | None,
                 shard: Dist, progress: Callable[[int], None] | None, threshold: float = THRESHOLD) -> list[Row]:
    paths = {s.id: s.path for s in source}
    label_sets = {s.id: s.labels for s in source}
    c = bundle.num_classes
    sigmoid = bundle.head == "sigmoid"
    setup = run_setup(bundle, head=bundle.head, **({"threshold": threshold} if sigmoid else {}))
    with sample_log(log_path, ("id",), shard, setup, source, batch_size) as log:
        skip = lambda ids: all(log.has(id=i) for i in ids)  # noqa: E731
        if progress is not None:  # what a previous run already did
            progress(sum(log.has(id=s.id) for s in source) // shard.world)
        for batch in batches(source, bundle, batch_size, device, skip=skip, shard=shard, fill_labels=False):
            y = predict(bundle.model, bundle.normalize(batch.pixels)).double()
            p = head_probabilities(y, bundle.head, 1).cpu()
            top = p.topk(min(TOP, c), 1)
            rows = []
            for i, sid in enumerate(batch.ids):
                label = None if batch.predicted[i] else int(batch.labels[i])
                idx, val = top.indices[i].tolist(), top.values[i].tolist()
                rows.append({"id": sid, "path": paths[sid], "label": label, "predicted": idx[0],
                             "p_predicted": val[0], "runner_up": idx[1] if c > 1 else idx[0],
                             "p_runner_up": val[1] if c > 1 else 0.0,
                             "p_label": None if label is None else float(p[i, label]),
                             "top": [[a, b] for a, b in zip(idx, val, strict=True)]})
                present = label_sets[sid]
                if present is not None:  # multi-label: the label sets, and every class either names
                    predicted = (p[i] >= threshold).nonzero()[:, 0].tolist() if sigmoid else idx[:1]
                    named = sorted({*present, *predicted, *idx})
                    rows[-1] |= {"labels": list(present), "predicted_labels": predicted,
                                 "scores": [[k, float(p[i, k])] for k in named]}
            log.add(rows)
            if progress is not None:
                progress(len(batch.ids))
    order = {s.id: i for i, s in enumerate(source)}
    # a reused row (same content) reports where the image is now: the same file may have moved
    return sorted(({**r, "path": paths[r["id"]]} for r in log.rows if r["id"] in order), key=lambda r: order[r["id"]])


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def _maps_key(setup: dict[str, Any], options: dict[str, Any], chunk: list[Slot], samples: dict[str, Any]) -> str:
    """What a batch's maps were made with, stored beside them: the run's setup (model, preprocessing),
    the method options (None = not given), and each shown image's id, content stamp and classes."""
    given = {k: str(v) for k, v in sorted(options.items()) if v is not None}
    shown = [[s.entry, s.row["id"], samples[s.row["id"]].stamp(), s.classes] for s in chunk]
    return json.dumps({**setup, **given, "shown": shown}, sort_keys=True)


def _load_batch(path: Path, entries: list[str], methods: Sequence[str], key: str) -> dict[str, dict[str, Any]] | None:
    """A finished batch's maps, or None when the file is missing, unreadable (truncated, empty) or holds
    other entries or methods, or was made for other images, classes, model, preprocessing or method
    options (``--steps 8`` recomputes what ``--steps 4`` made; another image of the same name too)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            stored = str(z["made_with"]) if "made_with" in z.files else None
            if stored != key or z["entries"].tolist() != entries or any(
                    f"maps_{m}" not in z.files or f"notes_{m}" not in z.files for m in methods):
                return None
            return {e: {"maps": {m: z[f"maps_{m}"][i] for m in methods}, "p": z["probabilities"][i].tolist(),
                        "notes": {m: z[f"notes_{m}"][i] for m in methods}} for i, e in enumerate(entries)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _phase2(bundle: ModelBundle, slots: list[Slot], samples: dict[str, Any], methods: Sequence[str],
            batch_size: int, device: Any, out: Path | None, shard: Dist, progress: Callable[[int], None] | None,
            options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    setup = run_setup(bundle, head=bundle.head) if out is not None else {}
    if out is not None:
        (out / "maps").mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, len(slots), batch_size)):
        chunk = slots[start : start + batch_size]
        entries = [s.entry for s in chunk]
        path = out / "maps" / f"batch_{k:05d}.npz" if out is not None else None
        if not shard.owns(k):
            continue
        key = _maps_key(setup, options, chunk, samples) if path is not None else ""
        done = _load_batch(path, entries, methods, key) if path is not None else None
        if done is None:
            pixels = torch.stack([samples[s.row["id"]].prepared(bundle.preprocess) for s in chunk]).to(device)
            classes = torch.tensor([s.classes for s in chunk], device=device)
            maps, logits, notes = explore(bundle, bundle.normalize(pixels), methods, classes, **options)
            y = logits.double()
            p = head_probabilities(y, bundle.head, 1).gather(1, classes.cpu()).numpy()
            done = {e: {"maps": {m: maps[m][i].numpy() for m in methods}, "p": p[i].tolist(),
                        "notes": {m: notes[m][i].numpy() for m in methods}} for i, e in enumerate(entries)}
            if path is not None:
                arrays = {f"maps_{m}": maps[m].numpy() for m in methods}
                arrays.update({f"notes_{m}": notes[m].numpy() for m in methods})
                _save_npz(path, {"entries": np.array(entries), "ids": np.array([s.row["id"] for s in chunk]),
                                 "classes": classes.cpu().numpy(), "probabilities": p,
                                 "contrasts": np.array(contrast_names(classes.shape[1])),
                                 "made_with": np.array(key), **arrays})
        found.update(done)
        if progress is not None:
            progress(len(chunk))
    shard.barrier()
    if out is not None and shard.main:  # every rank's batches, from disk
        n_batches = -(-len(slots) // batch_size)
        for stale in (out / "maps").glob("batch_*.npz"):  # a previous run's batches past this run's last
            if not stale.stem[6:].isdigit() or int(stale.stem[6:]) >= n_batches:
                stale.unlink()
        for k, start in enumerate(range(0, len(slots), batch_size)):
            chunk = slots[start : start + batch_size]
            entries = [s.entry for s in chunk]
            if entries[0] not in found:
                got = _load_batch(out / "maps" / f"batch_{k:05d}.npz", entries, methods,
                                  _maps_key(setup, options, chunk, samples))
                if got is None:
                    raise ClassContrastError(f"maps of batch {k} are missing in {out / 'maps'}")
                found.update(got)
    return found


def _write_confusion(path: Path, result: Audit) -> Path:
    """``confusion.csv``: true label (rows) × prediction (columns); without labels, each image's top-2
    (rows) × top-1 (columns), every image counted."""
    classes, matrix, axes = result.classes, result.confusion, "true \\ predicted"
    if result.multilabel:
        axes = "present and missed \\ predicted but absent"
    elif not result.labelled:
        matrix, axes = np.zeros_like(matrix), "top-2 \\ top-1"
        for r in result.rows:
            matrix[r["runner_up"], r["predicted"]] += 1
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([axes, *map(spreadsheet_cell, classes)])
        for name, row in zip(classes, matrix.tolist(), strict=True):
            w.writerow([spreadsheet_cell(name), *row])
    return path


def _write_labels(path: Path, result: Audit) -> Path:
    """``labels.csv`` (multi-label): per label, its support, true / false positives, false negatives,
    precision and recall."""
    fields = ["class", "index", "support", "true_positives", "false_positives", "false_negatives", "precision",
              "recall"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(fields)
        for s in result.label_stats:
            w.writerow([spreadsheet_cell(s["class"]), *("" if s[f] is None else s[f] for f in fields[1:])])
    return path


def check_counts(pairs: int, examples: int, top_k: int) -> None:
    """``pairs``, ``examples`` and ``top_k`` are each at least 1 (one line otherwise)."""
    if min(pairs, examples, top_k) < 1:
        raise ClassContrastError("--pairs, --examples and --top-k must be at least 1")


def audit(
    model: ModelBundle,
    data: SampleSource | str | Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    methods: Sequence[str] = ("gradcam",),
    pairs: int = 12,
    examples: int = 6,
    top_k: int = 3,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    seed: int | None = 0,
    shard: Dist | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    ambiguity: float = AMBIGUITY,
    threshold: float = THRESHOLD,
    **method_options: Any,
) -> Audit:
    """Audit a classifier's confusions on a dataset: "why A and not B", pair by pair.

    Args:
        model: a [`ModelBundle`][classcontrast.models.bundle.ModelBundle] (preprocessing and class names are needed).
        data: a `SampleSource` or any ``--data`` value (class folders, a flat folder = no labels,
            ``imagenet:`` / ``cub200:`` / ``food101:``); None: the bundled photos.
        out: folder for ``audit_samples.jsonl``, ``maps/``, ``audit.json``, ``confusion.csv`` and
            ``audit.html``; re-running with the same folder resumes. None: nothing is written.
        methods: one or more method names (default GradCAM).
        pairs: how many confused pairs to show.
        examples: images per pair: the most confident mistakes, and as many correctly classified images
            of the true class.
        top_k: the image's most probable classes offered in the explorer besides the pair.
        batch_size: images per forward pass.
        device: where the model runs.
        limit: use at most this many images.
        seed: shuffles the order before ``limit`` (None keeps the source's order).
        shard: the torchrun rank and world (see `classcontrast.distributed`).
        progress: ``progress(phase, total)`` returns a callback advanced by the images done.
        ambiguity: without labels, an image counts in its (top-1, top-2) pair only when
            p(top-2) / p(top-1) is at least this (0.25): a confident prediction is not a confusion.
        threshold: multi-label data (a CSV of label sets, a sigmoid head): a label counts as predicted
            when its $\\sigma(y)$ reaches this (0.5). Pairs are then "B present and missed, A predicted
            instead" in the same image, with per-label false positives and negatives (``labels.csv``).
        **method_options: passed to the methods that accept them (e.g. ``layer``).

    Every shown map comes from [`explain`][classcontrast.engine.explain]: for a mistake (true B, predicted A),
    "why A rather than B" is ``Foil(B)`` for target A, "why B rather than A" ``Foil(A)`` for target B.
    With a sigmoid head these are the logit differences $y_A - y_B$ and $y_B - y_A$.
    """
    if not isinstance(model, ModelBundle):
        raise ClassContrastError("audit needs a ModelBundle (cc.load_model(...)): preprocessing and class names")
    for m in methods:  # an unknown method is an error before any work
        method_class(m)
    if method_options.get("keep_channels"):
        raise ClassContrastError("the audit shows one map per class and contrast: keep_channels is not available")
    check_counts(pairs, examples, top_k)
    source = data if isinstance(data, SampleSource) else open_source(data, model.categories)
    source = source.select(limit=limit, seed=seed)
    if len(source) == 0:
        raise ClassContrastError("no images to audit")
    bad = next((s for s in source if s.label is not None and not 0 <= s.label < model.num_classes), None)
    if bad is not None:
        raise ClassContrastError(f"{bad.id}: label {bad.label} is not one of the model's {model.num_classes} classes")
    multilabel = any(s.labels is not None for s in source)
    if multilabel and model.head != "sigmoid":
        raise ClassContrastError("multi-label data (a CSV of label sets) needs a multi-label model: a sigmoid head "
                                 "(ModelBundle(..., head='sigmoid'), or --head sigmoid)")
    if not 0 < threshold < 1:
        raise ClassContrastError(f"threshold must be between 0 and 1, got {threshold}")
    shard = shard or Dist()
    folder = Path(out) if out is not None else None
    tick = progress("predictions", len(source)) if progress else None
    rows = _phase1_rows(model, source, batch_size, device, folder / "audit_samples.jsonl" if folder else None,
                        shard, tick, threshold)
    c = model.num_classes
    if not 0 <= ambiguity <= 1:
        raise ClassContrastError(f"ambiguity must be between 0 and 1, got {ambiguity}")
    ranked = (rank_multilabel_pairs(rows, examples) if multilabel else rank_pairs(rows, examples, ambiguity))[:pairs]
    width = min(top_k + 2, c)
    slots = []
    for i, p in enumerate(ranked):
        slots += [Slot(f"p{i}m{j}", r, classes_for(r, [p.predicted, p.true], width), (p.predicted, f"foil:{p.true}"),
                       i, False) for j, r in enumerate(p.mistakes)]
        slots += [Slot(f"p{i}c{j}", r, classes_for(r, [p.true, p.predicted], width), (p.true, f"foil:{p.predicted}"),
                       i, True) for j, r in enumerate(p.correct)]
    samples = {s.id: s for s in source}
    tick = progress("maps", len(slots)) if progress else None
    maps = _phase2(model, slots, samples, methods, batch_size, device, folder, shard, tick, method_options)
    result = Audit(model=model.name, data=source.description, n=len(rows),
                   accuracy=exact_match(rows) if multilabel else accuracy(rows),
                   labelled=multilabel or labelled(rows), classes=list(model.categories),
                   confusion=missed_matrix(rows, c) if multilabel else confusion_matrix(rows, c),
                   pairs=ranked, rows=rows, methods=list(methods), slots=slots, maps=maps, ambiguity=ambiguity,
                   multilabel=multilabel, threshold=threshold,
                   label_stats=label_stats(rows, model.categories) if multilabel else [])
    if folder is not None and shard.main:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "audit.json").write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
        result.paths = [folder / "audit.json", _write_confusion(folder / "confusion.csv", result)]
        if multilabel:
            result.paths.append(_write_labels(folder / "labels.csv", result))
        result.paths.append(write_page(result.page_data(shown_images(model, result, samples)),
                                       folder / "audit.html"))
    return result


def shown_images(model: ModelBundle, result: Audit, samples: dict[str, Any]) -> dict[str, dict[str, str]]:
    """JPEG data URLs of the images the audit shows, keyed as in the page."""
    key = result.image_keys()
    out = {}
    for s in result.slots:
        k = key[s.row["id"]]
        if k not in out:
            out[k] = image_entry(samples[s.row["id"]].prepared(model.preprocess), s.row["id"])
    return out
