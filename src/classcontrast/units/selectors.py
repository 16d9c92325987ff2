"""What ``targets=`` asks a segmenter or a detector for: regions (`Region`, `Region.all`), detected objects
(`Detections`). Plain values, importing nothing of the units, so that every module may name them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..errors import ClassContrastError


@dataclass(frozen=True)
class Region:
    """A region of a segmentation to explain: the pixels (voxels) of class ``target`` (a class index or, with
    a ModelBundle, a name), or the pixels of ``mask`` — a boolean (*S) or (B, *S) tensor at the input's or
    the model output's resolution — with ``target`` as the class explained there.

    ``targets=cc.Region(t)`` explains that region in every image; a list of Regions explains several per
    image; ``cc.Region.all(k)`` the ``k`` largest predicted classes of each image, largest first (a segmenter's "top
    k"; its default, ``targets=None``, is ``Region.all(DEFAULT_TOP)``: the largest).
    """

    kind: ClassVar[str] = "region"  # the units it asks for
    target: int | str | None = None
    mask: Tensor | None = None

    @staticmethod
    def all(k: int | None = None) -> AllRegions:
        """One region per predicted class of each image (the ``k`` largest; all of them when None)."""
        return AllRegions(k)


@dataclass(frozen=True)
class AllRegions:
    """Each image's predicted classes as regions, largest first (see `Region.all`)."""

    kind: ClassVar[str] = "region"
    k: int | None = None


def is_region_spec(spec: object) -> bool:
    """Whether ``targets`` asks for regions (a Region, a list of them, or `Region.all`)."""
    if isinstance(spec, (Region, AllRegions)):
        return True
    return isinstance(spec, (list, tuple)) and bool(spec) and all(isinstance(s, Region) for s in spec)


@dataclass(frozen=True)
class Detections:
    """The objects a detector itself reports, in its own order: those scoring at least ``threshold``,
    the ``top`` best of them when given; or the detections at ``indices`` (their places in the model's
    own list of detections, whatever their score).

    ``threshold`` None is the detector's own usual one (each kind of detector's: 0.5 for most, a family's
    predictor default otherwise). ``iou`` and ``max_det`` are the non-maximum suppression for detectors whose
    detections classcontrast makes itself (0.7 and 300 by default); other detectors run their own.

    ``Detections(top=k)`` is a detector's "top k"; its default (``targets=None``) is
    ``Detections(top=DEFAULT_TOP)``: its best object."""

    kind: ClassVar[str] = "object"  # the units it asks for
    top: int | None = None
    threshold: float | None = None
    indices: Sequence[int] | None = None
    iou: float = 0.7
    max_det: int = 300

    def __post_init__(self) -> None:
        from ..targets import fraction, whole

        if self.top is not None:
            object.__setattr__(self, "top", whole(self.top, "Detections(top=...)"))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", fraction(self.threshold, "Detections", 0.0, 1.0, closed=True,
                                                           name="threshold"))
        object.__setattr__(self, "iou", fraction(self.iou, "Detections", 0.0, 1.0, closed=True, name="iou"))
        object.__setattr__(self, "max_det", whole(self.max_det, "Detections(max_det=...)"))
        if self.indices is not None:
            if isinstance(self.indices, (str, bytes)) or not isinstance(self.indices, (Sequence, Tensor)):
                raise ClassContrastError(f"Detections(indices=...) needs a list of detection indices, got "
                                         f"{self.indices!r}")
            for i in self.indices:
                whole(i, "Detections(indices=...)", minimum=0)


__all__ = ["AllRegions", "Detections", "Region", "is_region_spec"]
