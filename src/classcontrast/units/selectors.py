"""What ``targets=`` asks a segmenter for: regions (`Region`, `Region.all`). Plain values, importing nothing of the
units, so that every module may name them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Region:
    """A region of a segmentation to explain: the pixels (voxels) of class ``target`` (a class index or, with
    a ModelBundle, a name), or the pixels of ``mask`` — a boolean (*S) or (B, *S) tensor at the input's or
    the model output's resolution — with ``target`` as the class explained there.

    ``targets=cc.Region(t)`` explains that region in every image; a list of Regions explains several per
    image; ``cc.Region.all(k)`` (or ``cc.TopK(k)`` on a segmenter) the ``k`` largest predicted classes of
    each image, largest first.
    """

    target: int | str | None = None
    mask: Tensor | None = None

    @staticmethod
    def all(k: int | None = None) -> AllRegions:
        """One region per predicted class of each image (the ``k`` largest; all of them when None)."""
        return AllRegions(k)


@dataclass(frozen=True)
class AllRegions:
    """Each image's predicted classes as regions, largest first (see `Region.all`)."""

    k: int | None = None


def is_region_spec(spec: object) -> bool:
    """Whether ``targets`` asks for regions (a Region, a list of them, or `Region.all`)."""
    if isinstance(spec, (Region, AllRegions)):
        return True
    return isinstance(spec, (list, tuple)) and bool(spec) and all(isinstance(s, Region) for s in spec)


__all__ = ["AllRegions", "Region", "is_region_spec"]
