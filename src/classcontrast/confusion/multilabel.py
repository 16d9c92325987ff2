"""The multi-label audit's numbers: per-label false positives and negatives, and the pairs "label B present
(missed), label A predicted instead (absent)". Pure functions of the per-sample rows (no model, no torch).

A multi-label row holds ``labels`` (the classes present), ``predicted_labels`` (the classes whose
independent probability $\\sigma(y_c)$ reaches the audit's threshold) and ``scores`` ([class, probability]
for every class it names and its top classes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .pairs import Pair, Row


def is_multilabel(rows: Sequence[Row]) -> bool:
    """Whether the rows come from multi-label data (every row has a label set)."""
    return bool(rows) and all(r.get("labels") is not None for r in rows)


def score(row: Row, cls: int) -> float:
    """The row's probability of ``cls`` (0 when the row did not keep it: it was below every kept class)."""
    return next((float(p) for c, p in row["scores"] if c == cls), 0.0)


def missed(row: Row) -> list[int]:
    """Labels present but not predicted (false negatives)."""
    return sorted(set(row["labels"]) - set(row["predicted_labels"]))


def extra(row: Row) -> list[int]:
    """Labels predicted but not present (false positives)."""
    return sorted(set(row["predicted_labels"]) - set(row["labels"]))


def label_stats(rows: Sequence[Row], categories: Sequence[str]) -> list[dict[str, Any]]:
    """Per class present or predicted somewhere: support, true/false positives, false negatives, precision
    and recall (None when undefined), ordered by errors (FP + FN), then support."""
    tp: dict[int, int] = defaultdict(int)
    fp: dict[int, int] = defaultdict(int)
    fn: dict[int, int] = defaultdict(int)
    for r in rows:
        present, predicted = set(r["labels"]), set(r["predicted_labels"])
        for c in present & predicted:
            tp[c] += 1
        for c in predicted - present:
            fp[c] += 1
        for c in present - predicted:
            fn[c] += 1
    out = []
    for c in sorted(set(tp) | set(fp) | set(fn)):
        out.append({"class": categories[c], "index": c, "support": tp[c] + fn[c], "true_positives": tp[c],
                    "false_positives": fp[c], "false_negatives": fn[c],
                    "precision": tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else None,
                    "recall": tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else None})
    out.sort(key=lambda s: (-(s["false_positives"] + s["false_negatives"]), -s["support"], s["index"]))
    return out


def exact_match(rows: Sequence[Row]) -> float | None:
    """The share of images whose predicted label set equals the labels present."""
    return sum(set(r["labels"]) == set(r["predicted_labels"]) for r in rows) / len(rows) if rows else None


def missed_matrix(rows: Sequence[Row], num_classes: int) -> np.ndarray:
    """(C, C) counts: row = a label present and missed, column = a label predicted but absent, in the
    same image (an image with two misses and one false positive counts twice)."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    for r in rows:
        for b in missed(r):
            for a in extra(r):
                m[b, a] += 1
    return m


def rank_multilabel_pairs(rows: Sequence[Row], examples: int = 6) -> list[Pair]:
    """Every (B present and missed, A predicted instead) pair, most images first (ties: higher mean
    $\\sigma(y_A)$, then class indices). ``Pair.true`` is B, ``Pair.predicted`` A; the examples are the
    images with that pair (most confident A first), and as many images where the model gets B right
    without A (B present and predicted, A absent and not predicted; most confident B first)."""
    groups: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for r in rows:
        for b in missed(r):
            for a in extra(r):
                groups[b, a].append(r)
    pairs = [Pair(b, a, len(members), float(np.mean([score(r, a) for r in members])),
                  float(np.mean([score(r, b) for r in members]))) for (b, a), members in groups.items()]
    pairs.sort(key=lambda p: (-p.count, -p.mean_p_predicted, p.true, p.predicted))
    for p in pairs:
        p.mistakes = sorted(groups[p.true, p.predicted], key=lambda r: (-score(r, p.predicted), r["id"]))[:examples]
        right = [r for r in rows if p.true in r["labels"] and p.true in r["predicted_labels"]
                 and p.predicted not in r["labels"] and p.predicted not in r["predicted_labels"]]
        p.correct = sorted(right, key=lambda r: (-score(r, p.true), r["id"]))[:examples]
    return pairs
