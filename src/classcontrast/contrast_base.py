"""The contrast interface: a scalar objective of the logits for one target class per row (see
`classcontrast.contrasts` for the paper's contrasts and `classcontrast.peer_contrasts` for the peers')."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor


def head_probabilities(logits: Tensor, head: str, dim: int = -1) -> Tensor:
    """The class probabilities a head gives: the softmax over ``dim``, or for a sigmoid (multi-label) head
    each class's own $\\sigma(y)$."""
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim)


def _row_class(t: Tensor) -> Tensor | None:
    """The class of each row (N,) when the targets (N, *S) hold one class per row at every position (a region's
    class repeated over its pixels by `per_row`, no memory of its own), else None."""
    if t.ndim < 2 or any(step != 0 for step in t.stride()[1:]):
        return None
    first: tuple[slice | int, ...] = (slice(None), *([0] * (t.ndim - 1)))
    return t[first]


def _at_target(out: Tensor, t: Tensor, value: float) -> Tensor:
    """``out`` (N, C, *S) with ``value`` written, in place, at each position's target class ``t`` (N, *S)."""
    rows = _row_class(t)
    if rows is None:
        return out.scatter_(1, t.unsqueeze(1), value)
    out[torch.arange(len(rows), device=out.device), rows] = value  # whole planes: no per-position index
    return out


def _one_hot(t: Tensor, num_classes: int, like: Tensor) -> Tensor:
    """The targets ``t`` (N, *S) as one-hot vectors along axis 1, (N, C, *S) in ``like``'s dtype."""
    out = torch.zeros((t.shape[0], num_classes, *t.shape[1:]), dtype=like.dtype, device=like.device)
    return _at_target(out, t, 1)


def _pick(y: Tensor, t: Tensor) -> Tensor:
    """$y_t$: the logit of each row's (each position's) class ``t`` (N, *S) from ``y`` (N, C, *S)."""
    rows = _row_class(t)
    if rows is not None:
        return y[torch.arange(len(rows), device=y.device), rows]
    return y.gather(1, t.unsqueeze(1)).squeeze(1)


def per_row(values: Tensor, like: Tensor) -> Tensor:
    """One value per row (N,) repeated at every position of the targets ``like`` (N, *S)."""
    return values.reshape(-1, *([1] * (like.ndim - 1))).expand_as(like)


def argmax(y: Tensor, dim: int = 1) -> Tensor:
    """``y.argmax(dim)`` (the first maximum on ties), fast for few classes: torch's CPU argmax over a short
    dimension of many rows (a segmenter's classes at every voxel) is slow (~50x a max); the first class
    equal to the max is not."""
    c = y.shape[dim]
    if c > 16 or y.device.type != "cpu":
        return y.argmax(dim)
    first = torch.arange(c, 0, -1, dtype=torch.uint8, device=y.device)  # c for class 0 ... 1 for the last
    first = first.reshape(c, *([1] * (y.ndim - dim - 1)))
    equal = y == y.amax(dim, keepdim=True)
    return (c - (equal * first).amax(dim)).clamp_max(c - 1).long()  # NaN rows (no class equal): the last


def _others(y: Tensor, t: Tensor) -> Tensor:
    """The logits with the target column set to -inf (the target excluded)."""
    return _at_target(y.clone(memory_format=torch.contiguous_format), t, float("-inf"))


def _rows(y: Tensor) -> Tensor:
    """(N, C, *S) -> (N·prod(S), C): one row of logits per position."""
    return y.movedim(1, -1).reshape(-1, y.shape[1])


class Contrast(ABC):
    """A scalar objective of the logits for one target class per row.

    ``score`` and ``grad`` take logits (N, C) and targets (N,). A contrast whose ``spatial`` is True also takes
    logits at every position, (N, C, *S) with targets (N, *S) — the class axis 1, as torch's ``cross_entropy`` —
    so a segmenter's pixels are computed in place (`score_map`, `grad_map`); any other contrast is given them
    as rows.
    """

    name: str = "contrast"
    spatial: ClassVar[bool] = False

    @abstractmethod
    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        """The objective per row, (N,), differentiable in ``logits``."""

    @abstractmethod
    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        """$\\partial\\,score / \\partial\\,logits$, (N, C), computed without autograd."""

    def score_map(self, logits: Tensor, target: Tensor) -> Tensor:
        """The objective at every position, (N, *S), of logits (N, C, *S) and targets (N, *S)."""
        if self.spatial:
            return self.score(logits, target)
        return self.score(_rows(logits), target.reshape(-1)).reshape(target.shape)

    def grad_map(self, logits: Tensor, target: Tensor) -> Tensor:
        """$\\partial\\,score / \\partial\\,logits$ at every position, (N, C, *S), for logits (N, C, *S) and
        targets (N, *S)."""
        if self.spatial:
            return self.grad(logits, target)
        g = self.grad(_rows(logits), target.reshape(-1))
        return g.reshape(*target.shape, logits.shape[1]).movedim(-1, 1)

    def score_all(self, logits: Tensor) -> Tensor:
        """The objective for every class as the target, (N, C): column t is ``score(logits, t)``."""
        n, c = logits.shape
        cols = [self.score(logits, torch.full((n,), t, dtype=torch.long, device=logits.device)) for t in range(c)]
        return torch.stack(cols, 1)

    def select(self, rows: Tensor, n_images: int) -> Contrast:
        """This contrast for rows drawn from ``n_images`` images (``rows[i]`` = the image of row i), as
        when a method runs the model on several inputs per image. Only per-image settings change."""
        return self

    def for_head(self, head: str) -> Contrast:
        """This contrast for a model whose classes are scored by ``head``: ``"softmax"`` (one decision
        among the classes, the default) or ``"sigmoid"`` (each class its own yes/no decision). Only the
        contrasts defined through the softmax change (see `Weighted`, `Probability`)."""
        return self

    def named(self, categories: Sequence[str] | None) -> Contrast:
        """This contrast with any class it names by name resolved to its index in ``categories``."""
        return self

    def key(self, categories: Sequence[str] | None = None) -> str:
        """The name of its result in [`Explanations`][classcontrast.explanation.Explanations] (``"weighted"``,
        ``"foil:Egyptian cat"``)."""
        return self.name

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.score(logits, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
