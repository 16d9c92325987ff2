r"""What is explained, as one protocol: the **units** of a call.

A classifier explains whole images (one row of logits per image), a segmenter regions of its per-pixel
(or per-voxel) classification, a detector the objects it reports (one row per object). For the engine they
are the same thing: from the model's raw output, a tensor of logits with its graph; for each image, K units
with a target class each; for each contrast and unit, the cotangent of its objective with respect to that
tensor; and, per unit, its score, its probability and a record of what it is. The engine asks the units and
never which kind they are (`classcontrast.engine.explain`); adding a kind of unit is one class here.

Lifecycle of one call: `claim` (before any forward: a kind that must hook the model, such as torchvision's
detectors) or `from_output` (from the first forward's raw output) chooses the class; `watch` registers its
hooks for each forward and returns what they see; on the images' own forward `choose` fixes what a kind must fix
before reading its logits (a detector's objects), `logits` reads the differentiable tensor from the raw output and
`resolve` fixes the targets (and which regions); `cotangents` gives each contrast's gradient for every unit;
`fields` gives the `Explanation`'s per-unit fields.

Units objects are stateless: what the images decided — the targets, the head, the regions' masks, the objects'
rows and boxes — is one immutable `Selection`, returned by `choose` and `resolve` and passed to every later step,
so that one Units object may serve any number of calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..contrast_base import Contrast
from ..contrasts import Foil
from ..errors import ClassContrastError
from .records import Unit


@dataclass(frozen=True, kw_only=True, eq=False)
class Selection:
    """What the images' own forward pass decided for one call, fixed for all its passes: the (B, K) ``targets``,
    the ``head`` they are scored with (a one-output model's is softmax whatever was asked), and ``selected``, (B, K)
    False for a filler (an image with fewer units than K), None when every unit was asked for. Each kind adds what
    it fixes (a region's mask, an object's row and box)."""

    targets: Tensor
    head: str
    selected: Tensor | None = None


class Units(ABC):
    """The explained units of one call (see the module docstring). ``spec`` is the call's ``targets``."""

    kind: ClassVar[str]
    record: ClassVar[type[Unit]]  # the record of one unit (`classcontrast.units.records`)
    # asked in this order (lowest first) which kind a model's output is: detections before dense logits
    order: ClassVar[int] = 50
    # sampled inputs (Integrated Gradients' path points, SmoothGrad's noisy copies) read the same units;
    # when they cannot, ``refusal`` says why in one line
    follows_samples: bool = True
    refusal: str = ""

    def __init__(self, spec: object, net: nn.Module, categories: Sequence[str] | None, head: str) -> None:
        """``spec`` None is the kind's own default (`Unit.top`); a selector of another kind's units is refused here
        (`TopK` and `Threshold` ask for a classifier's classes, the other kinds' refuse it in `resolve`)."""
        if spec is None:
            spec = self.record.top()
        if getattr(spec, "kind", self.kind) == "image" and self.kind != "image":
            raise ClassContrastError(f"targets={spec!r} asks for a classifier's classes; this model's units are "
                                     f"{self.record.shown}: ask for them with {self.record.asks} (--top-k k on the "
                                     "command line)")
        self.spec = spec
        self.net = net
        self.categories = categories
        self.head = head

    # -- what a kind knows of its models (asked by the engine and the layer lookup, which name no family) ------

    @classmethod
    def unwrap(cls, obj: object) -> nn.Module | None:
        """The module to explain inside ``obj`` when ``obj`` is a family's wrapper this kind knows, else None."""
        return None

    @classmethod
    def natural_head(cls, net: nn.Module) -> str | None:
        """The head a model of this kind scores its classes with when the call names none ("sigmoid" for
        sigmoid-scored detectors), or None: the usual softmax."""
        return None

    @classmethod
    def feature_layer(cls, net: nn.Module) -> str | None:
        """The CAM layer of a model of this kind when the automatic rule would miss it, or None."""
        return None

    # -- choosing the kind ---------------------------------------------------------------------------

    @classmethod
    def claims(cls, net: nn.Module) -> bool:
        """Whether this kind is the model's before any forward pass (it must hook the forward)."""
        return False

    @classmethod
    def accepts(cls, raw: Any, x: Tensor) -> bool:
        """Whether the model's raw output ``raw`` for inputs ``x`` is made of this kind of unit."""
        return False

    # -- one forward pass ----------------------------------------------------------------------------

    def watch(self, net: nn.Module, stack: ExitStack) -> Any:
        """Hooks this kind needs during a forward pass, removed when ``stack`` closes; returns what they see (given
        to `choose` and `logits` for that pass), or None."""
        return None

    def choose(self, raw: Any, x: Tensor, seen: Any) -> Selection | None:
        """On the images' own forward: the selection a kind must fix before it can read its logits (a detector's
        objects: which detections, their rows), or None for kinds whose units follow from the logits (`resolve`)."""
        return None

    @abstractmethod
    def logits(self, raw: Any, x: Tensor, rows: Tensor, seen: Any, chosen: Selection | None, own: bool) -> Tensor:
        """The tensor of logits the objectives are functions of, with its graph: (B', C) rows, (B', C, *S)
        dense logits, (B', K, C) object rows; ``rows``: the image of each of the B' inputs; ``seen``: what `watch`
        saw on this pass; ``chosen``: what `choose` (or `resolve`) fixed; ``own``: whether the inputs are the images
        themselves (else sampled or perturbed copies)."""

    @abstractmethod
    def resolve(self, y: Tensor, head: str, chosen: Selection | None) -> Selection:
        """The call's selection from the images' own logits ``y`` (detached) under ``head``: its (B, K) targets
        and which units (``chosen``: what `choose` fixed before)."""

    @abstractmethod
    def cotangents(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, *y.shape): contrast m's gradient for unit k with respect to ``y`` (detached logits of B'
        inputs, ``rows`` the image of each), contrasts outer, units inner."""

    @abstractmethod
    def objectives(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection, rows: Tensor,
                   n_images: int) -> Tensor:
        """(M·K, B'): contrast m's objective for unit k on each of B' inputs' logits ``y`` (``rows``: the image of
        each input), contrasts outer, units inner — what the gradient-free methods score a perturbed input by (its
        own logits: ``max``'s runner-up and ``weighted``'s α chosen again; the targets the images' own)."""

    def basis(self, cotangents: Tensor) -> tuple[Tensor, Tensor] | None:
        """A smaller set of objectives spanning the cotangents, per image (`classcontrast.backprop.low_rank`),
        or None: for methods linear in the gradient, M·K maps for the price of a few backward passes."""
        from ..backprop import low_rank

        return low_rank(cotangents)

    # -- results -------------------------------------------------------------------------------------

    @abstractmethod
    def fields(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> list[dict[str, Any]]:
        """This kind's own `Explanation` fields for each contrast (``units``, ``scores``,
        ``target_probabilities``; none for whole images, whose Explanation computes them)."""

    def results(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> list[dict[str, Any]]:
        """Every `Explanation` field about the units for each contrast: the logits standing for each image,
        the fillers, a foil's class per image, and this kind's own `fields`."""
        logits = self.image_logits(y)
        return [{"logits": logits, "selected": sel.selected, "head": sel.head, "targets": sel.targets,
                 "foils": c.foils(logits) if isinstance(c, Foil) else None, **own}
                for c, own in zip(contrasts, self.fields(contrasts, y, sel), strict=True)]

    def void(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> Tensor:
        """(M, B, K) True where the objective is identically 0, so its map is 0 by definition: a foil equal to its
        target (and, for regions, an empty region). The engine writes those maps
        as exact zeros (a method dividing by the objective, AblationCAM, would give 0/0)."""
        logits, t = self.image_logits(y), sel.targets
        out = torch.zeros(len(contrasts), *t.shape, dtype=torch.bool, device=t.device)
        for i, c in enumerate(contrasts):
            if isinstance(c, Foil):
                out[i] = c.foils(logits)[:, None].to(t.device) == t
        return out

    def expected_zero(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> Tensor:
        """(M, B, K) True where an all-zero map may come without a warning: a `void` objective, a filler."""
        out = self.void(contrasts, y, sel)
        if sel.selected is not None:
            out |= ~sel.selected[None].to(out.device)
        return out

    def image_logits(self, y: Tensor) -> Tensor:
        """(B, C) logits standing for each image (a foil per image is validated against them)."""
        return y

    def warn_foils(self, contrasts: Sequence[Contrast], y: Tensor, sel: Selection) -> None:
        """A foil equal to its target asks "why t rather than t": legal (the map is 0), but said once."""
        import warnings

        from ..errors import ClassContrastWarning

        logits, t = self.image_logits(y), sel.targets
        for c in contrasts:
            if not isinstance(c, Foil):
                continue
            same = (c.foils(logits)[:, None] == t).nonzero()
            if len(same):
                b, j = (int(v) for v in same[0])
                cls = int(t[b, j])
                names = self.categories
                name = f"{cls} ({names[cls]})" if names is not None and cls < len(names) else str(cls)
                where = f"image {b}" if self.kind == "image" else f"{self.kind} {j} of image {b}"
                warnings.warn(f"foil {name} is also the target ({where}): 'why t rather than t' is zero everywhere; "
                              "explain other targets to avoid it", ClassContrastWarning, stacklevel=5)


UNITS: list[type[Units]] = []


def register_units(cls: type[Units]) -> type[Units]:
    """Add a kind of unit (usable as a decorator); kinds are asked in their ``order``."""
    UNITS.append(cls)
    UNITS.sort(key=lambda k: k.order)
    return cls


def unwrapped(obj: object) -> nn.Module | None:
    """The module inside a family's wrapper object (`Units.unwrap`), or None."""
    return next((m for m in (cls.unwrap(obj) for cls in UNITS) if m is not None), None)


def natural_head(net: nn.Module) -> str | None:
    """The head the model's kind scores it with (`Units.natural_head`), or None."""
    return next((h for h in (cls.natural_head(net) for cls in UNITS) if h is not None), None)


def feature_layer(net: nn.Module) -> str | None:
    """The CAM layer the model's kind gives (`Units.feature_layer`), or None."""
    return next((layer for layer in (cls.feature_layer(net) for cls in UNITS) if layer is not None), None)


def kind_of(net: nn.Module, x: Tensor) -> type[Units] | None:
    """The kind of the model's units: the kind that claims it, else the one its output for the first input is made of
    (one forward pass without gradients, the model left as found), or None."""
    from ..state import frozen_eval

    claimed = next((cls for cls in UNITS if cls.claims(net)), None)
    if claimed is not None:
        return claimed
    with frozen_eval(net, freeze=False), torch.no_grad():
        raw = net(x[:1])
    return output_kind(raw, x[:1])


def top_units(net: nn.Module, x: Tensor, k: int | None = None) -> Any:
    """The ``targets=`` asking for the ``k`` first units of the model's kind on inputs like ``x`` (`Unit.top`: a
    classifier's most probable classes, a segmenter's largest regions, a detector's best objects; None: the default
    number) — how a command line's ``--top-k`` is read, said once for every kind."""
    from .records import ImageUnit

    kind = kind_of(net, x)
    return (ImageUnit if kind is None else kind.record).top(k)


def output_kind(raw: Any, x: Tensor) -> type[Units] | None:
    """The kind whose units the model's raw output ``raw`` is made of, or None."""
    return next((cls for cls in UNITS if cls.accepts(raw, x)), None)


def claim(net: nn.Module, spec: object, categories: Sequence[str] | None, head: str) -> Units | None:
    """The units of a model that must be hooked before its first forward pass (torchvision detectors)."""
    for cls in UNITS:
        if cls.claims(net):
            return cls(spec, net, categories, head)
    return None


def from_output(raw: Any, x: Tensor, net: nn.Module, spec: object, categories: Sequence[str] | None,
                head: str) -> Units:
    """The units the model's raw output is made of; an output no kind takes is a one-line error."""
    for cls in UNITS:
        if cls.accepts(raw, x):
            return cls(spec, net, categories, head)
    from ..outputs import logits_of

    y = logits_of(raw)
    shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
    hint = "; if x is one image, add the batch dimension: x[None]" if x.ndim == 3 else ""
    raise ClassContrastError(f"the model must return logits of shape (B, C) (a classifier), (B, C, *spatial) at "
                             f"its input's size or lower (a segmenter) or detections (a detector), got {shape}{hint}")
