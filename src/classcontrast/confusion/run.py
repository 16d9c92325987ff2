"""``cc.audit``: why did the model say A when the answer was B, across a whole dataset.

Two phases, both resumable and shardable under torchrun like the experiments:

1. one forward pass over the data (no graph): predictions, the confusion matrix, accuracy, and the
   confused pairs ranked by count; one line per image in ``audit_samples.jsonl``, appended and synced
   as produced;
2. for the shown examples of the top pairs: every named contrast and every "t rather than s" foil
   among the pair's two classes and the image's top classes, for each method, in one forward pass per
   method and batch; one ``maps/batch_NNNNN.npz`` per batch, written atomically.

Then ``audit.json``, ``confusion.csv``, ``audit.parquet`` (`classcontrast.confusion.table`: the predictions and the
shown maps as rows of the dataset schema), the self-contained explorer ``audit.html`` and ``pairs.html``, every
confused pair with its images, rendered from the Parquet file (`classcontrast.confusion.pairs_page`).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..contrast_base import head_probabilities
from ..data.sources import SampleSource
from ..data.specs import open_source
from ..distributed import Dist
from ..errors import ClassContrastError
from ..evaluation.runner import batch_ranges, model_device, run_setup, sample_log
from ..explorer.offers import explore
from ..explorer.page import NAMED, entry, image_entry, write_page
from ..methods import method_class
from ..models import ModelBundle
from ..scale.workers import Workers
from ..state import predict
from ..text import count, spreadsheet_cell
from .multilabel import exact_match, label_stats, missed_matrix, rank_multilabel_pairs
from .pairs import AMBIGUITY, Pair, Row, accuracy, classes_for, confusion_matrix, labelled, rank_pairs
from .pairs_page import write_pairs_page
from .table import write_audit_table, write_matrix

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
    notes: list[str] = field(default_factory=list)  # what was not written, and why
    _sensitivity: dict[str, dict[str, float]] | None = field(default=None, repr=False, compare=False)

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
            "pairs": [pair(p) for p in self.pairs], **multilabel, "class_sensitivity": self.class_sensitivity(),
            **({} if self.labelled or self.multilabel else {"ambiguity": self.ambiguity}),
        }

    def class_sensitivity(self) -> dict[str, dict[str, float]]:
        """Per method and named contrast, the mean class sensitivity (CASE, `classcontrast.evaluation.sensitivity`) of
        the shown maps, read from them (no model run): each shown image's most probable offered class against its other
        offered classes, at the page's resolution. Computed once (audit.json, the page of pairs and the summary read
        it)."""
        from ..evaluation.sensitivity import spearman

        if self._sensitivity is not None:
            return self._sensitivity
        out: dict[str, dict[str, float]] = {}
        for m in self.methods:
            for i, name in enumerate(NAMED):
                values = []
                for s in self.slots:
                    got = self.maps.get(s.entry)
                    if not got or len(s.classes) < 2:
                        continue
                    maps, order = got["maps"][m], np.argsort(-np.asarray(got["p"]), kind="stable")
                    first = maps[order[0], i].ravel()
                    values.append(1 - float(np.mean([spearman(first, maps[j, i].ravel()) for j in order[1:]])))
                if values:
                    out.setdefault(m, {})[name] = float(np.mean(values))
        self._sensitivity = out
        return out

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


def predicted_rows(bundle: ModelBundle, samples: Sequence[Any], threshold: float = THRESHOLD,
                   device: Any = None) -> list[Row]:
    """One batch's rows of the first phase: each image's label, its top classes and their probabilities (multi-label:
    the label sets and every class either names), from one forward pass without a graph, the images on ``device``
    (default: the model's)."""
    c = bundle.num_classes
    sigmoid = bundle.head == "sigmoid"
    pixels = torch.stack([s.prepared(bundle.preprocess) for s in samples]).to(device or model_device(bundle.model))
    y = predict(bundle.model, bundle.normalize(pixels)).double()
    p = head_probabilities(y, bundle.head, 1).cpu()
    top = p.topk(min(TOP, c), 1)
    rows = []
    for i, s in enumerate(samples):
        idx, val = top.indices[i].tolist(), top.values[i].tolist()
        rows.append({"id": s.id, "path": s.path, "label": s.label, "predicted": idx[0], "p_predicted": val[0],
                     "runner_up": idx[1] if c > 1 else idx[0], "p_runner_up": val[1] if c > 1 else 0.0,
                     "p_label": None if s.label is None else float(p[i, s.label]),
                     "top": [[a, b] for a, b in zip(idx, val, strict=True)]})
        if s.labels is not None:  # multi-label: the label sets, and every class either names
            predicted = (p[i] >= threshold).nonzero()[:, 0].tolist() if sigmoid else idx[:1]
            named = sorted({*s.labels, *predicted, *idx})
            rows[-1] |= {"labels": list(s.labels), "predicted_labels": predicted,
                         "scores": [[k, float(p[i, k])] for k in named]}
    return rows


def _phase1_rows(bundle: ModelBundle, source: SampleSource, batch_size: int, log_path: Path | None, shard: Dist,
                 progress: Callable[[int], None] | None, threshold: float, workers: Workers, device: Any) -> list[Row]:
    samples = source.samples
    sigmoid = bundle.head == "sigmoid"
    setup = run_setup(bundle, head=bundle.head, **({"threshold": threshold} if sigmoid else {}))
    chunks = batch_ranges(len(samples), batch_size)
    with sample_log(log_path, ("id",), shard, setup, source, batch_size) as log:
        if progress is not None:  # what a previous run already did
            progress(sum(log.has(id=s.id) for s in source) // shard.world)
        todo = [k for k, chunk in enumerate(chunks)
                if shard.owns(k) and not all(log.has(id=samples[i].id) for i in chunk)]
        work = partial(_predict_chunk, [[samples[i] for i in chunk] for chunk in chunks], threshold, device)
        for _, rows in workers.map(todo, bundle, work):
            log.add(rows)
            if progress is not None:
                progress(len(rows))
    paths = {s.id: s.path for s in source}
    order = {s.id: i for i, s in enumerate(source)}
    # a reused row (same content) reports where the image is now: the same file may have moved
    return sorted(({**r, "path": paths[r["id"]]} for r in log.rows if r["id"] in order), key=lambda r: order[r["id"]])


def _predict_chunk(chunks: list[list[Any]], threshold: float, device: Any, bundle: ModelBundle, k: int) -> list[Row]:
    return predicted_rows(bundle, chunks[k], threshold, device)


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


def _explain_chunk(slots: list[list[Slot]], samples: dict[str, Any], methods: Sequence[str], options: dict[str, Any],
                   device: Any, bundle: ModelBundle, k: int) -> dict[str, Any]:
    """Batch ``k`` of the shown images explained: its maps, probabilities and sign notes, per entry and as arrays."""
    chunk = slots[k]
    device = device or model_device(bundle.model)
    pixels = torch.stack([samples[s.row["id"]].prepared(bundle.preprocess) for s in chunk]).to(device)
    classes = torch.tensor([s.classes for s in chunk], device=device)
    maps, logits, notes = explore(bundle, bundle.normalize(pixels), methods, classes, **options)
    p = head_probabilities(logits.double(), bundle.head, 1).gather(1, classes.cpu()).numpy()
    arrays = {f"maps_{m}": maps[m].numpy() for m in methods} | {f"notes_{m}": notes[m].numpy() for m in methods}
    return {"entries": {s.entry: {"maps": {m: maps[m][i].numpy() for m in methods}, "p": p[i].tolist(),
                                  "notes": {m: notes[m][i].numpy() for m in methods}} for i, s in enumerate(chunk)},
            "arrays": {"entries": np.array([s.entry for s in chunk]), "ids": np.array([s.row["id"] for s in chunk]),
                       "classes": classes.cpu().numpy(), "probabilities": p,
                       "contrasts": np.array(contrast_names(classes.shape[1])), **arrays}}


def _phase2(bundle: ModelBundle, slots: list[Slot], samples: dict[str, Any], methods: Sequence[str],
            batch_size: int, out: Path | None, shard: Dist, progress: Callable[[int], None] | None,
            options: dict[str, Any], workers: Workers, device: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    setup = run_setup(bundle, head=bundle.head) if out is not None else {}
    if out is not None:
        (out / "maps").mkdir(parents=True, exist_ok=True)
    chunks = [[slots[i] for i in chunk] for chunk in batch_ranges(len(slots), batch_size)]
    keys = {k: _maps_key(setup, options, chunk, samples) if out is not None else "" for k, chunk in enumerate(chunks)}
    todo = []
    for k, chunk in enumerate(chunks):
        if not shard.owns(k):
            continue
        done = None if out is None else _load_batch(_batch_path(out, k), [s.entry for s in chunk], methods, keys[k])
        if done is None:
            todo.append(k)
            continue
        found.update(done)
        if progress is not None:
            progress(len(chunk))
    work = partial(_explain_chunk, chunks, samples, list(methods), options, device)
    for k, done in workers.map(todo, bundle, work):
        if out is not None:
            _save_npz(_batch_path(out, k), {**done["arrays"], "made_with": np.array(keys[k])})
        found.update(done["entries"])
        if progress is not None:
            progress(len(chunks[k]))
    shard.barrier()
    if out is not None and shard.main:  # every rank's batches, from disk
        _gather(out, chunks, methods, keys, found)
    return found


def _batch_path(out: Path, k: int) -> Path:
    return out / "maps" / f"batch_{k:05d}.npz"


def _gather(out: Path, chunks: list[list[Slot]], methods: Sequence[str], keys: dict[int, str],
            found: dict[str, dict[str, Any]]) -> None:
    """Every batch's maps into ``found`` (the other ranks' from disk), a previous run's batches past this run's last
    removed."""
    for stale in (out / "maps").glob("batch_*.npz"):
        if not stale.stem[6:].isdigit() or int(stale.stem[6:]) >= len(chunks):
            stale.unlink()
    for k, chunk in enumerate(chunks):
        entries = [s.entry for s in chunk]
        if entries[0] not in found:
            got = _load_batch(_batch_path(out, k), entries, methods, keys[k])
            if got is None:
                raise ClassContrastError(f"maps of batch {k} are missing in {out / 'maps'}")
            found.update(got)


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
    return write_matrix(path, axes, list(classes), matrix)


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
    workers: Workers | None = None,
    **method_options: Any,
) -> Audit:
    """Audit a classifier's confusions on a dataset: "why A and not B", pair by pair.

    Args:
        model: a [`ModelBundle`][classcontrast.models.bundle.ModelBundle] (preprocessing and class names are needed).
        data: a `SampleSource` or any ``--data`` value (class folders, a flat folder = no labels,
            ``imagenet:`` / ``cub200:`` / ``food101:``); None: the bundled photos.
        out: folder for ``audit_samples.jsonl``, ``maps/``, ``audit.json``, ``confusion.csv``, ``audit.parquet``
            and ``audit.html``; re-running with the same folder resumes. None: nothing is written.
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
        workers: where the batches run (`classcontrast.scale.workers.Workers`): this process (default), or Ray Data
            workers (``Workers("ray", concurrency=2)``), each with the model once, on its GPU when it has one;
            this process writes every file either way, so the results are the same.
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
    shard, workers = shard or Dist(), workers or Workers()
    if workers.engine != "local" and shard.world > 1:
        raise ClassContrastError("--engine ray runs the batches on Ray's workers: start it once, not under torchrun")
    workers.start()
    folder = Path(out) if out is not None else None
    tick = progress("predictions", len(source)) if progress else None
    rows = _phase1_rows(model, source, batch_size, folder / "audit_samples.jsonl" if folder else None, shard,
                        tick, threshold, workers, device if workers.engine == "local" else None)
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
    maps = _phase2(model, slots, samples, methods, batch_size, folder, shard, tick, method_options, workers,
                   device if workers.engine == "local" else None)
    result = Audit(model=model.name, data=source.description, n=len(rows),
                   accuracy=exact_match(rows) if multilabel else accuracy(rows),
                   labelled=multilabel or labelled(rows), classes=list(model.categories),
                   confusion=missed_matrix(rows, c) if multilabel else confusion_matrix(rows, c),
                   pairs=ranked, rows=rows, methods=list(methods), slots=slots, maps=maps, ambiguity=ambiguity,
                   multilabel=multilabel, threshold=threshold,
                   label_stats=label_stats(rows, model.categories) if multilabel else [])
    if folder is not None and shard.main:
        _write(folder, model, result, samples)
    return result


def _write(folder: Path, model: ModelBundle, result: Audit, samples: dict[str, Any]) -> None:
    """The audit's files: audit.json, confusion.csv (labels.csv), audit.parquet, audit.html; their paths in
    ``result.paths``, what was not written in ``result.notes``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    result.paths = [folder / "audit.json", _write_confusion(folder / "confusion.csv", result)]
    if result.multilabel:
        result.paths.append(_write_labels(folder / "labels.csv", result))
    if importlib.util.find_spec("pyarrow") is not None:  # the [parquet] extra
        result.paths.append(write_audit_table(folder / "audit.parquet", result, samples))
        if not result.multilabel:  # every pair, from the Parquet file
            result.paths.append(write_pairs_page(folder / "pairs.html", folder / "audit.parquet", result.to_json()))
    else:
        result.notes.append("audit.parquet not written: pip install 'classcontrast[parquet]'")
    result.paths.append(write_page(result.page_data(shown_images(model, result, samples)), folder / "audit.html"))


def shown_images(model: ModelBundle, result: Audit, samples: dict[str, Any]) -> dict[str, dict[str, str]]:
    """JPEG data URLs of the images the audit shows, keyed as in the page."""
    key = result.image_keys()
    out = {}
    for s in result.slots:
        k = key[s.row["id"]]
        if k not in out:
            out[k] = image_entry(samples[s.row["id"]].prepared(model.preprocess), s.row["id"])
    return out
