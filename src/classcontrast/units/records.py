"""What one map explains, as a typed record per kind: an image's class (`ImageUnit`), a region of a segmentation with
its mask (`RegionUnit`), a detected object with its box, label and score (`ObjectUnit`).

A record owns what differs between kinds — its fields, its plain row (`Unit.row`, for `Explanation.rows` and the
files and answers built from rows), its label and marks on a figure, where it lands on the user's image (a
letterbox undone) or on a 2-D view of a clip or volume — so that nothing outside `classcontrast.units` asks which
kind a unit is. Records are immutable. They also read as the dicts they replace (``unit["box"]``, ``unit.get(...)``,
``"mask" in unit``), as Hugging Face's ``ModelOutput`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Unit(Mapping[str, Any]):
    """One explained unit: its ``target`` class and ``logits`` (the unit's class logits as the model computed them:
    an image's (C,), a region's pixels (N, C), an object's row (C,))."""

    kind: ClassVar[str] = "image"
    task: ClassVar[str] = "classification"  # what a model whose units are of this kind does (``--task``)
    shown: ClassVar[str] = "classes"  # what a page of such units shows (its subtitle)
    mark_photo: ClassVar[bool] = False  # whether `mark` also goes on the row's photo (an object's box)
    target: int
    logits: Tensor

    # -- the record read as a dict ---------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key == "kind":
            return self.kind
        if key in self._names():
            value = getattr(self, key)
            if value is not None:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["kind", *(n for n in self._names() if getattr(self, n) is not None)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    __eq__ = object.__eq__  # records hold tensors: identity (a Mapping would compare values)
    __hash__ = object.__hash__

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    # -- what differs between kinds ----------------------------------------------------------------------------------

    def row(self, arrays: str = "numpy") -> dict[str, Any]:
        """The unit as plain values for a row: ``kind``, ``target`` and the kind's own fields (no logits; a mask as
        a NumPy array, or nested lists with ``arrays="list"``)."""
        return {"kind": self.kind, "target": int(self.target)}

    @property
    def wanted(self) -> bool:
        """Whether the unit was asked for (False: a filler, drawn and listed nowhere)."""
        return True

    @property
    def empty(self) -> bool:
        """Whether the unit covers nothing (an empty region): its maps are 0 by definition."""
        return False

    def caption(self, name: str, probability: float, head: str) -> str:
        """The figure's row label under the photo."""
        if head == "sigmoid":
            return f"{name}\nσ={probability:.3f} (independent)"
        return f"{name}\np={probability:.3f}"

    def mark(self, ax: Any, name: str) -> None:
        """Draw what locates the unit on a figure's panel (a region's outline, an object's box); nothing for an
        image."""

    def onto(self, box: Callable[[list[float]], list[float]], mask: Callable[[Tensor], Tensor]) -> Unit:
        """The record on the user's image: ``box`` maps a box, ``mask`` a mask (a letterbox undone)."""
        return self

    def viewed(self, view: Callable[[Tensor], Tensor]) -> Unit:
        """The record on one 2-D view of a clip or volume (``view`` cuts a mask to it)."""
        return self

    def focus(self) -> Tensor | None:
        """The mask a volume's slices should go through (a region's), or None."""
        return None

    @classmethod
    def arrays(cls, units: list[list[Unit]], suffix: str = "") -> dict[str, np.ndarray]:
        """What ``--save-maps`` stores of these units (B, K), so a script can redraw them; nothing for images."""
        return {}

    @classmethod
    def measure(cls, cells: str = "pixels") -> str:
        """What a unit's probability is, for a table's header (``cells``: "pixels" or "voxels")."""
        return "probability"

    # -- the explorer's page ---------------------------------------------------------------------------------------

    def class_probabilities(self, head: str) -> Tensor:
        """(C,) the unit's probability of every class under ``head`` (a region's: the mean over its pixels)."""
        from ..contrast_base import head_probabilities

        return head_probabilities(self.logits.detach().double(), head)

    def offered(self, ranked: list[int], spec: Any) -> tuple[list[int], list[int], Any]:
        """(the targets the page offers for this unit, its foils, the ``targets=`` that explains them on it):
        ``ranked`` are the other classes, likeliest first; ``spec`` the call's own."""
        return [self.target], ranked[:3], spec

    @classmethod
    def joined(cls, spec: Any, offered: Sequence[tuple[int, Any, int]]) -> tuple[Any, list[tuple[int, ...]]]:
        """One call for every unit a page shows: (the ``targets=`` asking for what each unit offers, each unit's
        places on that call's K axis). ``spec``: the call that found the units; ``offered``: per unit shown, its place
        among them, the ``targets=`` of `offered` and how many targets it offers. By default ``spec`` itself, each
        unit at its place (an object offers its own label: the call that found it explains it)."""
        return spec, [(k,) for k, _, _ in offered]

    def page(self, height: int, width: int, volume: bool) -> dict[str, Any]:
        """What the page draws of the unit (an outline, a box), at an input of ``height`` × ``width``."""
        return {}

    def title(self, name: str, categories: Sequence[str], volume: bool) -> str:
        """The page's title of the unit's entry."""
        return f"{name}: {categories[self.target]}"

    asks: ClassVar[str] = "cc.TopK(k)"  # how a call asks for the top k units of this kind

    @classmethod
    def top(cls, k: int | None = None) -> Any:
        """The ``targets=`` asking for the ``k`` first units of this kind (a classifier's most probable classes); None:
        the kind's default, what ``targets=None`` explains (`classcontrast.targets.DEFAULT_TOP` classes)."""
        from ..targets import DEFAULT_TOP, TopK

        return TopK(DEFAULT_TOP if k is None else k)

    @classmethod
    def page_top(cls, top: int) -> Any:
        """The units a page shows of an input when the call names none (each the entry of its own; ``top``: how many
        a page offers), or None: a classifier's page has one entry per input."""
        return None


MASK_SIDE = 96  # a mask is sent to the page at most this many pixels on a side


def mask_rows(mask: Tensor) -> dict[str, Any]:
    """A mask for the page: rows of '0'/'1' at no more than `MASK_SIDE` pixels on a side."""
    import torch.nn.functional as F

    h, w = mask.shape
    f = min(1.0, MASK_SIDE / max(h, w))
    small = F.interpolate(mask[None, None].float(), size=(max(1, round(h * f)), max(1, round(w * f))),
                          mode="nearest")[0, 0] > 0.5
    return {"w": small.shape[1], "h": small.shape[0],
            "rows": ["".join("1" if v else "0" for v in row) for row in small.tolist()]}


def _array(t: Tensor, arrays: str) -> Any:
    a = t.detach().cpu().numpy()
    return a.tolist() if arrays == "list" else a


@dataclass(frozen=True, eq=False)
class ImageUnit(Unit):
    """A whole input (an image, a clip, a volume) of a classifier: its class ``target``."""


@dataclass(frozen=True, eq=False)
class RegionUnit(Unit):
    """A region of a segmentation: its pixels (voxels) ``mask`` (*S) and their count ``pixels``; ``logits`` are its
    pixels' rows (N, C)."""

    kind: ClassVar[str] = "region"
    task: ClassVar[str] = "segmentation"
    shown: ClassVar[str] = "segmentation regions"
    mask: Tensor = None  # type: ignore[assignment]
    pixels: int = 0

    def row(self, arrays: str = "numpy") -> dict[str, Any]:
        return {**super().row(arrays), "pixels": int(self.pixels), "mask": _array(self.mask.bool(), arrays)}

    @property
    def empty(self) -> bool:
        return self.pixels == 0

    def caption(self, name: str, probability: float, head: str) -> str:
        share = self.pixels / max(1, self.mask.numel())
        return f"{name} (region: {share:.0%} of pixels)\nmean p={probability:.3f}"

    def mark(self, ax: Any, name: str) -> None:
        mask = self.mask.float().cpu().numpy()
        if 0 < mask.sum() < mask.size:
            ax.contour(mask, levels=[0.5], colors="black", linewidths=0.8)

    def onto(self, box: Callable[[list[float]], list[float]], mask: Callable[[Tensor], Tensor]) -> Unit:
        moved = mask(self.mask)
        return dataclasses.replace(self, mask=moved, pixels=int(moved.sum()))

    def viewed(self, view: Callable[[Tensor], Tensor]) -> Unit:
        cut = view(self.mask)
        return dataclasses.replace(self, mask=cut, pixels=int(cut.sum()))

    def focus(self) -> Tensor | None:
        return self.mask if self.pixels > 0 else None

    @classmethod
    def measure(cls, cells: str = "pixels") -> str:
        return f"mean p over the region's {cells}"  # (the regions' means need not sum to 1)

    def class_probabilities(self, head: str) -> Tensor:
        from ..contrast_base import head_probabilities

        return head_probabilities(self.logits.detach().double(), "softmax").mean(0)  # its pixels' mean

    def offered(self, ranked: list[int], spec: Any) -> tuple[list[int], list[int], Any]:
        """Its class and the two its pixels rank next, each explained over the same pixels; foils among them."""
        from .selectors import Region

        classes = [self.target, *ranked[:2]]
        return classes, classes, [Region(c, self.mask) for c in classes]

    @classmethod
    def joined(cls, spec: Any, offered: Sequence[tuple[int, Any, int]]) -> tuple[Any, list[tuple[int, ...]]]:
        """Every region's classes as Regions over its pixels, in one list; each region's its consecutive places."""
        places, start = [], 0
        for _, _, n in offered:
            places.append(tuple(range(start, start + n)))
            start += n
        return [region for _, asked, _ in offered for region in asked], places

    def page(self, height: int, width: int, volume: bool) -> dict[str, Any]:
        return {} if volume else {"kind": self.kind, "mask": mask_rows(self.mask.cpu())}  # a volume: per slice

    def title(self, name: str, categories: Sequence[str], volume: bool) -> str:
        return (f"{name}: region {categories[self.target]} ({self.pixels / self.mask.numel():.0%} of "
                f"{'voxels' if volume else 'pixels'})")

    asks: ClassVar[str] = "cc.Region.all(k)"

    @classmethod
    def top(cls, k: int | None = None) -> Any:
        """A segmenter's ``k`` largest predicted regions (None: `classcontrast.targets.DEFAULT_TOP`)."""
        from ..targets import DEFAULT_TOP
        from .selectors import Region

        return Region.all(DEFAULT_TOP if k is None else k)

    @classmethod
    def page_top(cls, top: int) -> Any:
        return cls.top(top)  # a page: the ``top`` largest regions

    @classmethod
    def arrays(cls, units: list[list[Unit]], suffix: str = "") -> dict[str, np.ndarray]:
        """``region_masks`` (B, K, *S) bit-packed along the last axis (``np.unpackbits(..., axis=-1)[..., :W]``)."""
        masks = np.stack([[u["mask"].cpu().numpy() for u in image] for image in units])
        return {f"region_masks{suffix}": np.packbits(masks, axis=-1)}


@dataclass(frozen=True, eq=False)
class ObjectUnit(Unit):
    """A detected object: its ``box`` (x0, y0, x1, y1 in input pixels), ``label``, the model's ``score``, its
    ``index`` in the model's detections and whether it was ``selected`` (False: a filler); the row that made it
    (``proposal`` for torchvision's detectors, ``anchor`` for YOLO) and a segmentation model's instance ``mask``
    when there are."""

    kind: ClassVar[str] = "object"
    task: ClassVar[str] = "detection"
    shown: ClassVar[str] = "detected objects"
    mark_photo: ClassVar[bool] = True
    box: list[float] = dataclasses.field(default_factory=list)
    label: int = 0
    score: float = 0.0
    index: int = 0
    selected: bool = True
    proposal: int | None = None
    anchor: int | None = None
    mask: Tensor | None = None

    def row(self, arrays: str = "numpy") -> dict[str, Any]:
        out = {**super().row(arrays), "box": [float(v) for v in self.box], "label": int(self.label),
               "score": float(self.score), "index": int(self.index)}
        for name in ("proposal", "anchor"):
            if getattr(self, name) is not None:
                out[name] = int(getattr(self, name))
        if self.mask is not None:
            out["mask"] = _array(self.mask.bool(), arrays)
        return out

    @property
    def wanted(self) -> bool:
        return self.selected

    def caption(self, name: str, probability: float, head: str) -> str:
        return f"{name} (object {self.index})\nscore {self.score:.3f}"

    def mark(self, ax: Any, name: str) -> None:
        from matplotlib.patches import Rectangle

        x0, y0, x1, y1 = self.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black", linewidth=1.0))
        ax.text(x0, y0, f" {name}", fontsize=5, va="bottom", ha="left", color="white", parse_math=False,
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "linewidth": 0})

    def onto(self, box: Callable[[list[float]], list[float]], mask: Callable[[Tensor], Tensor]) -> Unit:
        return dataclasses.replace(self, box=box(self.box), mask=None if self.mask is None else mask(self.mask))

    asks: ClassVar[str] = "cc.Detections(top=k)"

    @classmethod
    def top(cls, k: int | None = None) -> Any:
        """A detector's ``k`` best objects scoring at least its threshold (None: `targets.DEFAULT_TOP`)."""
        from ..targets import DEFAULT_TOP
        from .selectors import Detections

        return Detections(top=DEFAULT_TOP if k is None else k)

    @classmethod
    def page_top(cls, top: int) -> Any:
        return cls.top(max(top, 5))  # a page: the 5 best objects (a box each, cheap to offer)

    def offered(self, ranked: list[int], spec: Any) -> tuple[list[int], list[int], Any]:
        """Its label, with foils among the classes its row ranks next; the same detection by its index (a list that
        depends on the threshold and NMS asked for keeps them)."""
        from .selectors import Detections

        one = [int(self.index)]
        same = dataclasses.replace(spec, top=None, indices=one) if isinstance(spec, Detections) else \
            Detections(indices=one)
        return [self.target], ranked[:3], same


    def page(self, height: int, width: int, volume: bool) -> dict[str, Any]:
        x0, y0, x1, y1 = self.box
        return {"kind": self.kind, "box": [x0 / width, y0 / height, x1 / width, y1 / height], "score": self.score,
                **({"mask": mask_rows(self.mask.cpu())} if self.mask is not None else {})}  # an instance's

    def title(self, name: str, categories: Sequence[str], volume: bool) -> str:
        return f"{name}: {categories[self.target]} (object {self.index}, score {self.score:.3f})"

    @classmethod
    def arrays(cls, units: list[list[Unit]], suffix: str = "") -> dict[str, np.ndarray]:
        """``boxes`` (B, K, 4: x0, y0, x1, y1 in input pixels), ``labels``, ``scores`` and ``detection_index``."""
        return {f"{name}{suffix}": np.array([[u[key] for u in image] for image in units])
                for name, key in (("boxes", "box"), ("labels", "label"), ("scores", "score"),
                                  ("detection_index", "index"))}


__all__ = ["ImageUnit", "ObjectUnit", "RegionUnit", "Unit", "mask_rows"]
