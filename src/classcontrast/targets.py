"""Target classes (which classes to explain, per image) and contrasts as target callables for other
libraries (pytorch-grad-cam's ``targets=``)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .contrast_base import head_probabilities
from .contrasts import Contrast, Foil, get_contrast
from .errors import ClassContrastError
from .text import count


def whole(value: object, what: str, minimum: int = 1) -> int:
    """``value`` as a whole number of at least ``minimum`` (``TopK(1.5)``, ``Detections(top="3")``: a one-line
    error naming ``what``)."""
    number: int | None = None
    if not isinstance(value, bool):
        if hasattr(value, "__index__"):  # int, numpy integers, a 0-d integer tensor
            number = operator.index(value)
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
    if number is None or number < minimum:
        raise ClassContrastError(f"{what} needs a whole number >= {minimum}, got {value!r}")
    return number


def fraction(value: object, what: str, low: float, high: float, closed: bool = False, name: str = "value") -> float:
    """``value`` as a number in (low, high) — [low, high) with ``closed`` — or a one-line error naming ``what``
    (and the parameter, ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ClassContrastError(f"{what} needs a number, got {value!r}")
    if not ((low <= value if closed else low < value) and value < high):
        raise ClassContrastError(f"{what} needs {low:g} {'<=' if closed else '<'} {name} < {high:g}, got {value!r}")
    return float(value)


DEFAULT_TOP = 1  # the number of targets a call explains when it names none: the API's, the command line's, a page's


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable classes of each image, most probable first: a classifier's targets (a segmenter's
    ``k`` largest regions are `classcontrast.units.Region.all`, a detector's ``k`` best objects
    `classcontrast.units.selectors.Detections`; ``TopK`` on them is a one-line error naming those)."""

    kind: ClassVar[str] = "image"  # the units it asks for
    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", whole(self.k, "TopK"))


@dataclass(frozen=True)
class Threshold:
    """Every class whose probability is at least ``p``, most probable first: for a multi-label (sigmoid)
    head each label with $\\sigma(y_t) \\ge p$, for a softmax head each class with $p_t \\ge p$.

    Images of one batch may have different numbers of such classes: K is the largest (at least ``k`` when
    given, e.g. the largest over several batches), and an image with fewer is filled with its next most
    probable classes, marked False in the result's ``selected`` (figures leave them out). No class above
    ``p`` in any image is an error without ``k``; with ``k`` every target is then a filler.
    """

    kind: ClassVar[str] = "image"  # the units it asks for: a classifier's classes
    p: float = 0.5
    k: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", fraction(self.p, "Threshold", 0.0, 1.0, name="p"))
        if self.k is not None:
            object.__setattr__(self, "k", whole(self.k, "Threshold's k"))

    def count(self, logits: Tensor, head: str) -> int:
        """The most classes any image has at or above ``p``."""
        return int((self.probabilities(logits, head) >= self.p).sum(1).max())

    def probabilities(self, logits: Tensor, head: str) -> Tensor:
        y = logits.detach().double()
        return head_probabilities(y, head, 1)

    def selected(self, logits: Tensor, targets: Tensor, head: str) -> Tensor:
        """(B, K) True where the target's probability reaches ``p`` (False: a filler)."""
        return self.probabilities(logits, head).gather(1, targets) >= self.p


def resolve_targets(spec: object, logits: Tensor, head: str = "softmax") -> Tensor:
    """Turn a target specification into a (B, K) long tensor of class indices on the logits' device.

    ``spec`` may be ``None`` (the `DEFAULT_TOP` most probable classes: the top one), an int (the same class for
    every image), a sequence
    with one class per image, a sequence of sequences or a (B, K) tensor (K classes per image),
    [`TopK`][classcontrast.targets.TopK] (the K highest logits: the most probable under either head) or
    [`Threshold`][classcontrast.targets.Threshold] (every class above a probability, under ``head``).
    """
    b, c = logits.shape
    if spec is None:
        spec = TopK(DEFAULT_TOP)
    if isinstance(spec, Threshold):
        above = spec.count(logits, head)
        if above == 0 and spec.k is None:
            raise ClassContrastError(f"no class has probability >= {spec.p} in any image (the highest is "
                                     f"{float(spec.probabilities(logits, head).max()):.3g}); lower the threshold")
        return logits.detach().topk(min(c, max(above, spec.k or 0)), dim=1).indices
    if isinstance(spec, TopK):
        if spec.k > c:
            raise ClassContrastError(f"TopK({spec.k}) asks for more classes than the model has ({c})")
        return logits.detach().topk(spec.k, dim=1).indices
    if isinstance(spec, bool):
        raise ClassContrastError(f"targets must be class indices, got {spec!r}")
    try:
        t = torch.as_tensor(spec, device=logits.device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ClassContrastError(
            f"targets {spec!r} are not class indices (ragged lists need the same number per image)"
        ) from e
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise ClassContrastError(f"targets must be integer class indices, got dtype {t.dtype}")
    t = t.long()
    if t.ndim == 0:
        t = t.expand(b, 1)
    elif t.ndim == 1:
        if t.numel() != b:
            raise ClassContrastError(
                f"targets has {count(t.numel(), 'entry', 'entries')} for {count(b, 'image')}; give one class per "
                "image, "
                f"or a list of lists / (B, K) tensor for several classes per image"
            )
        t = t[:, None]
    elif t.ndim == 2:
        if t.shape[0] != b:
            raise ClassContrastError(f"targets has {count(t.shape[0], 'row')} for {count(b, 'image')}")
        if t.shape[1] == 0:
            raise ClassContrastError("targets has no class for the images")
    else:
        raise ClassContrastError(f"targets must have at most 2 dimensions, got shape {tuple(t.shape)}")
    bad = t[(t < 0) | (t >= c)]
    if bad.numel():
        raise ClassContrastError(f"class index {int(bad[0])} is out of range for a model with {c} classes (0..{c - 1})")
    return t.contiguous()


# Contrasts as objectives for other libraries: pytorch-grad-cam's ``targets=[cc.targets.Weighted(t)]``.
# A target is a tiny callable on one image's output (C,) returning the contrast's score.


class ContrastTarget:
    """A pytorch-grad-cam style target: ``target(output)`` is the contrast's score for ``category``."""

    def __init__(self, contrast: str | Contrast, category: int) -> None:
        self.contrast = get_contrast(contrast)
        self.category = int(category)

    def __call__(self, model_output: Tensor) -> Tensor:
        y = model_output[None] if model_output.ndim == 1 else model_output
        t = torch.full((y.shape[0],), self.category, dtype=torch.long, device=y.device)
        score = self.contrast.score(y, t)
        return score[0] if model_output.ndim == 1 else score

    def __repr__(self) -> str:
        return f"ContrastTarget({self.contrast!r}, {self.category})"


def Original(category: int) -> ContrastTarget:
    """Target y_t."""
    return ContrastTarget("original", category)


def Mean(category: int) -> ContrastTarget:
    """Target y_t − mean of the other logits."""
    return ContrastTarget("mean", category)


def Max(category: int) -> ContrastTarget:
    """Target y_t − the largest other logit."""
    return ContrastTarget("max", category)


def Weighted(category: int) -> ContrastTarget:
    """Target y_t − log Σ_{s≠t} e^{y_s} (the weighted contrast)."""
    return ContrastTarget("weighted", category)


def Probability(category: int) -> ContrastTarget:
    """Target p_t."""
    return ContrastTarget("probability", category)


def FoilTarget(category: int, foil: int) -> ContrastTarget:
    """Target y_t − y_foil."""
    return ContrastTarget(Foil(foil), category)


__all__ = ["DEFAULT_TOP", "ContrastTarget", "FoilTarget", "Max", "Mean", "Original", "Probability", "Threshold", "TopK",
           "Weighted", "resolve_targets"]
