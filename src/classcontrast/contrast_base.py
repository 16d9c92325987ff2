"""The contrast interface: a scalar objective of the logits for one target class per row (see
`classcontrast.contrasts` for the paper's contrasts and `classcontrast.peer_contrasts` for the peers')."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor


def head_probabilities(logits: Tensor, head: str, dim: int = -1) -> Tensor:
    """The class probabilities a head gives: the softmax over ``dim``, or for a sigmoid (multi-label) head
    each class's own $\\sigma(y)$."""
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim)


def _one_hot(t: Tensor, num_classes: int, like: Tensor) -> Tensor:
    return torch.nn.functional.one_hot(t, num_classes).to(dtype=like.dtype)


def argmax(y: Tensor, dim: int = 1) -> Tensor:
    """``y.argmax(dim)`` (the first maximum on ties), fast for few classes: torch's CPU argmax over a short
    dimension of many rows (a segmenter's classes at every voxel) is slow, a pass per class is not."""
    if y.shape[dim] > 16 or y.device.type != "cpu":
        return y.argmax(dim)
    best = y.select(dim, 0)
    index = torch.zeros(best.shape, dtype=torch.long, device=y.device)
    for c in range(1, y.shape[dim]):
        value = y.select(dim, c)
        higher = value > best
        best = torch.where(higher, value, best)
        index.masked_fill_(higher, c)
    return index


def _others(y: Tensor, t: Tensor) -> Tensor:
    """The logits with the target column set to -inf (the target excluded)."""
    return y.scatter(1, t[:, None], float("-inf"))


class Contrast(ABC):
    """A scalar objective of the logits for one target class per row."""

    name: str = "contrast"

    @abstractmethod
    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        """The objective per row, (N,), differentiable in ``logits``."""

    @abstractmethod
    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        """$\\partial\\,score / \\partial\\,logits$, (N, C), computed without autograd."""

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
