"""From per-image predictions to the audit's numbers: confusion matrix, accuracy, ranked confused pairs,
and which images each pair shows. Pure functions of the per-sample rows (no model, no torch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Row = dict[str, Any]  # one image: id, path, label (int | None), predicted, runner_up, p_predicted, ...


@dataclass
class Pair:
    """A confusion: images of class ``true`` taken for ``predicted`` (without labels: images whose top-1
    is ``predicted`` and top-2 is ``true``), with the images the audit shows for it."""

    true: int
    predicted: int
    count: int
    mean_p_predicted: float
    mean_p_true: float
    mistakes: list[Row] = field(default_factory=list)  # the most confident mistakes first
    correct: list[Row] = field(default_factory=list)  # images the model gets right as `true`

    @property
    def first(self) -> int:
        """Without labels: the pair's top-1 class (= ``predicted``)."""
        return self.predicted

    @property
    def second(self) -> int:
        """Without labels: the pair's top-2 class (= ``true``, which has no meaning there)."""
        return self.true


AMBIGUITY = 0.25  # without labels, an image joins its (top-1, top-2) pair only when p2 / p1 is at least this


def ambiguous(row: Row, ratio: float = AMBIGUITY) -> bool:
    """Whether the image's top-2 class is a real contender: p(top-2) / p(top-1) >= ``ratio``."""
    p1 = float(row["p_predicted"])
    p2 = float(row.get("p_runner_up", _p(row, row["runner_up"])))
    return p1 > 0 and p2 / p1 >= ratio


def labelled(rows: Sequence[Row]) -> bool:
    """Whether the audit has true labels (every row), or works on predictions alone."""
    return bool(rows) and all(r["label"] is not None for r in rows)


def confusion_matrix(rows: Sequence[Row], num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true label, column = prediction (labelled rows only)."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    for r in rows:
        if r["label"] is not None:
            m[r["label"], r["predicted"]] += 1
    return m


def accuracy(rows: Sequence[Row]) -> float | None:
    """Top-1 accuracy over labelled rows (None without labels)."""
    lab = [r for r in rows if r["label"] is not None]
    return sum(r["label"] == r["predicted"] for r in lab) / len(lab) if lab else None


def _p(row: Row, cls: int) -> float:
    """p(cls) for a row, from its stored top classes (or its label's probability)."""
    for c, p in row["top"]:
        if c == cls:
            return float(p)
    if row["label"] == cls:
        return float(row["p_label"])
    return 0.0


def rank_pairs(rows: Sequence[Row], examples: int = 6, ambiguity: float = AMBIGUITY) -> list[Pair]:
    """Every confused pair, most frequent first (ties: higher mean probability of the wrong class, then
    class indices), each with up to ``examples`` mistakes (most confident first) and as many images
    the model gets right as the true class (most confident first).

    Without labels the pairs are each image's top-1 vs top-2 ("most confusable predicted pairs"),
    counting only images whose top-2 is a real contender (p2 / p1 >= ``ambiguity``: a confident
    "espresso, p = 0.95" is not a confusion with "cup"); their examples are the images closest to a
    tie, and their counterparts images whose top-1 is the pair's top-2 class.
    """
    with_labels = labelled(rows)
    groups: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for r in rows:
        key = (r["label"], r["predicted"]) if with_labels else (r["runner_up"], r["predicted"])
        if key[0] != key[1] and (with_labels or ambiguous(r, ambiguity)):
            groups[key].append(r)
    pairs = [Pair(true, pred, len(members), float(np.mean([_p(r, pred) for r in members])),
                  float(np.mean([_p(r, true) for r in members]))) for (true, pred), members in groups.items()]

    def wrong(p: Pair) -> float:  # the mean probability of the class the image does not belong to
        return p.mean_p_predicted if with_labels else p.mean_p_true

    pairs.sort(key=lambda p: (-p.count, -wrong(p), p.true, p.predicted))
    by_class: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        if (r["label"] == r["predicted"]) if with_labels else True:
            by_class[r["predicted"]].append(r)
    for p in pairs:
        members = groups[(p.true, p.predicted)]
        if with_labels:
            p.mistakes = sorted(members, key=lambda r: (-r["p_predicted"], r["id"]))[:examples]
            p.correct = sorted(by_class[p.true], key=lambda r: (-r["p_predicted"], r["id"]))[:examples]
        else:  # the closest calls, and images the model calls `true` (with `predicted` as runner-up first)
            p.mistakes = sorted(members, key=lambda r: (-_p(r, p.true), r["id"]))[:examples]
            p.correct = sorted(by_class[p.true], key=lambda r: (r["runner_up"] != p.predicted, -r["p_predicted"],
                                                               r["id"]))[:examples]
    return pairs


def classes_for(row: Row, first: Sequence[int], count: int) -> list[int]:
    """``count`` distinct classes for an image's explorer: ``first`` (the pair), then its most probable
    classes, then the lowest class indices as filler."""
    out: list[int] = []
    for c in [*first, *(c for c, _ in row["top"])]:
        if c not in out:
            out.append(int(c))
    c = 0
    while len(out) < count:
        if c not in out:
            out.append(c)
        c += 1
    return out[:count]
