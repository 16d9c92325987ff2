"""Results: signed maps with the targets and logits they explain — one typed, immutable result, built by the engine,
that renderers (figures, pages, files, answers) read and never rebuild by hand: `Explanation` (one method and one
contrast) and `Explanations` (several contrasts of one call). Both turn into plain records with `rows`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .contrast_base import head_probabilities
from .spatial import resize
from .units.records import ImageUnit, Unit

Records = list[list[Unit]]
# a map whose Σ|value| is at most this fraction of its objective's scale is numerically zero (float rounding)
NEGLIGIBLE = 1e-6
MAPS = ("both", "input", "layer", "none")  # what `rows` carries of the maps


class _Given:
    """What the engine gave about the units, as values or as functions computed when first read (a region's sums
    over its pixels): ``maps`` at input size when made there, ``units``, ``scores``, ``target_probabilities``. A
    cache inside the frozen result, never shared between results."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def get(self, name: str) -> Any:
        value = self.values.get(name)
        if callable(value):
            value = self.values[name] = value()
        return value

    def changed(self, **values: Any) -> _Given:
        return _Given(**{**self.values, **values})


@dataclass(frozen=True, eq=False)
class Explanation:
    """Signed maps for K units (target classes, regions, objects) of B inputs under one method and one contrast.

    ``maps`` (B, K, *S) are at input resolution: linear upsampling (half-pixel centres) of ``layer_maps``, which
    are at the layer's resolution, done on first read (the same tensor for input-space methods). Positive values
    support the target over what the contrast compares it with; negative values speak against it.

    ``inputs`` is the explained batch (a reference, not a copy), ``to_pixels`` maps it back to [0, 1] images when
    the model came with its preprocessing (a ModelBundle), ``categories`` names the classes and ``foils`` (B,) holds
    a foil contrast's class per image. Results are immutable: `replace` returns a changed copy; ``ex[i]`` (an index
    or a slice) selects inputs, `Explanation.cat` joins them, `onto` maps them onto the user's images.
    """

    layer_maps: Tensor
    targets: Tensor
    logits: Tensor
    method: str
    contrast: str
    layer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inputs: Tensor | None = field(default=None, repr=False)
    to_pixels: Callable[[Tensor], Tensor] | None = field(default=None, repr=False)
    categories: Sequence[str] | None = field(default=None, repr=False)
    foils: Tensor | None = None
    size: tuple[int, ...] | None = None
    objective: Any = field(default=None, repr=False)  # the Contrast whose gradient made the maps
    head: str = "softmax"  # "softmax" or "sigmoid" (multi-label: independent probabilities)
    class_agnostic: bool = False  # the method's map is the same whatever the target and contrast (EigenCAM)
    # (B, K) bool for ``Threshold`` targets: False marks a filler (an image with fewer classes above the threshold
    # than K); None: every target was asked for
    selected: Tensor | None = None
    given: _Given = field(default_factory=_Given, repr=False)

    @classmethod
    def made(cls, *, maps: Tensor | None = None, units: Any = None, scores: Any = None,
             target_probabilities: Any = None, **fields: Any) -> Explanation:
        """The engine's constructor: the fields, and what it knows of the units — given as values or as functions
        computed on first read (a region's sums over its pixels); ``maps`` when made at the input's size."""
        given = _Given(maps=maps, units=units, scores=scores, target_probabilities=target_probabilities)
        if fields.get("size") is None and maps is not None:
            fields["size"] = tuple(maps.shape[2:])
        return cls(given=given, **fields)

    def replace(self, **changes: Any) -> Explanation:
        """A copy with ``changes`` (fields, or ``maps`` / ``units`` / ``scores`` / ``target_probabilities``)."""
        given = {k: changes.pop(k) for k in ("maps", "units", "scores", "target_probabilities") if k in changes}
        if "layer_maps" in changes and "maps" not in given:
            given["maps"] = None
        return dataclasses.replace(self, given=self.given.changed(**given), **changes)

    # -- what the call computed ------------------------------------------------------------------------------------

    @property
    def maps(self) -> Tensor:
        """(B, K, *S) maps at input resolution (computed from ``layer_maps`` on first read)."""
        maps: Tensor | None = self.given.get("maps")
        if maps is None:
            lm = self.layer_maps
            size = self.size
            same = size is None or lm.ndim != 2 + len(size) or tuple(lm.shape[2:]) == size
            maps = self.given.values["maps"] = lm if same or size is None else upsample(lm, size)
        return maps

    def shown(self, layer: bool = False) -> Tensor:
        """The maps as drawn (B, K, *S): per-channel maps (``keep_channels``) summed over the channels; ``layer``:
        at the layer's resolution."""
        return displayed(self.layer_maps if layer else self.maps, len(self.size) if self.size else 2)

    @property
    def units(self) -> Records:
        """What was explained, per input a list in the order of the maps' K axis: typed records
        (`classcontrast.units.records`: `ImageUnit`, `RegionUnit`, `ObjectUnit`), each with its ``target`` and
        ``logits`` and its kind's own fields; they also read as dicts (``unit["box"]``)."""
        units: Records | None = self.given.get("units")
        if units is None:
            units = self.given.values["units"] = [[ImageUnit(target=c, logits=self.logits[i]) for c in row]
                                                  for i, row in enumerate(self.targets.tolist())]
        return units

    @property
    def probabilities(self) -> Tensor:
        """The class probabilities, (B, C): the softmax of the logits, or for a sigmoid head each class's
        own $\\sigma(y)$ (independent: they need not sum to 1)."""
        y = self.logits
        y = y if y.dtype in (torch.float32, torch.float64) else y.float()
        return head_probabilities(y, self.head, 1)

    @property
    def scores(self) -> Tensor | None:
        """The contrast's score O for each explained target, (B, K) (None when the contrast is unknown):
        what a map's red ("for t") and blue ("against t") are about."""
        given: Tensor | None = self.given.get("scores")
        if given is not None:
            return given
        if self.objective is None:
            return None
        b, k = self.targets.shape
        y = self.logits.double() if self.logits.dtype not in (torch.float32, torch.float64) else self.logits
        rows = y.repeat_interleave(k, 0)
        score: Tensor = self.objective.select(torch.arange(b, device=y.device).repeat_interleave(k), b).score(
            rows, self.targets.reshape(-1))
        return score.reshape(b, k)

    @property
    def target_probabilities(self) -> Tensor:
        """The probability of each explained target, (B, K) (for a region: the mean over its pixels)."""
        given = self.given.get("target_probabilities")
        return given if given is not None else self.probabilities.gather(1, self.targets)

    def disagreeing(self) -> Tensor | None:
        """(B, K) True where the map's sum and the contrast's score have opposite signs (a map of a
        decision it "contradicts", see `SIGN_NOTE` and the docs' map-sign page); None when the contrast is
        unknown."""
        scores = self.scores
        if scores is None:
            return None
        sums = self.shown(layer=True).flatten(2).sum(-1).to(scores.dtype)
        return (sums * scores) < 0

    def negligible(self) -> Tensor | None:
        """(B, K) True where the map is numerically zero against its objective's scale: its Σ|value| (as drawn, at
        the layer's resolution) at most `NEGLIGIBLE` × the scale — float rounding, not evidence (a random detector's
        saturated logits of −8.8 give maps of 1e-13). The scale is |score|, and for a contrast of logits also the
        largest logit it is made of (a difference of two logits of −8.8 that nearly cancel is not small against
        them; a region's, times its pixels). The figures draw such a map as zero with a note ("≈ 0"), the command
        line prints one; None when the contrast is unknown."""
        scores = self.scores
        if scores is None:
            return None
        total = self.shown(layer=True).flatten(2).abs().sum(-1).double()
        scale = scores.detach().abs().double().to(total.device)
        if getattr(self.objective, "name", "") != "probability":
            scale = torch.maximum(scale, self._terms().to(total.device))
        return total <= NEGLIGIBLE * scale

    def _terms(self) -> Tensor:
        """(B, K) the largest |logit| each unit's objective is made of (a region's: times its pixels)."""
        return torch.tensor([[float(u.logits.detach().abs().max()) * max(1, int(u.get("pixels", 1)))
                              if u.logits.numel() else 0.0 for u in row] for row in self.units], dtype=torch.float64)

    def foil_is_target(self) -> Tensor | None:
        """(B, K) True where a foil contrast's foil is the target itself ("why t rather than t": zero by
        definition; the figures show a note instead of the panel); None for other contrasts."""
        if self.foils is None:
            return None
        return self.foils.to(self.targets.device)[:, None] == self.targets

    # -- new results from this one ----------------------------------------------------------------------------------

    def __getitem__(self, index: int | slice) -> Explanation:
        """The result of inputs ``index`` (an int keeps its input axis: ``ex[0]`` has B = 1)."""
        n = self.targets.shape[0]
        pick = slice(index, index + 1) if isinstance(index, int) else index
        if isinstance(index, int) and not -n <= index < n:
            raise IndexError(f"input {index} of an explanation of {n}")

        def part(t: Any) -> Any:
            return None if t is None else t[pick]

        picked = torch.arange(n)[pick]
        objective = None if self.objective is None else self.objective.select(picked, n)  # a per-image foil's own
        return self.replace(layer_maps=self.layer_maps[pick], targets=self.targets[pick], logits=self.logits[pick],
                            inputs=part(self.inputs), foils=part(self.foils), objective=objective,
                            selected=part(self.selected), maps=part(self.given.values.get("maps")),
                            units=lambda: self.units[pick], scores=lambda: part(self.scores),
                            target_probabilities=lambda: part(self.target_probabilities))

    def columns(self, index: Sequence[int]) -> Explanation:
        """The result of each input's units at places ``index`` of the K axis, in that order (``ex.columns([0])``:
        every input's first unit)."""
        places = [int(j) for j in index]
        if places == list(range(self.targets.shape[1])):
            return self

        def part(t: Any) -> Any:
            return None if t is None else t[:, torch.tensor(places, dtype=torch.long, device=t.device)]

        return self.replace(layer_maps=part(self.layer_maps), targets=part(self.targets), selected=part(self.selected),
                            maps=part(self.given.values.get("maps")),
                            units=lambda: [[image[j] for j in places] for image in self.units],
                            scores=lambda: part(self.scores),
                            target_probabilities=lambda: part(self.target_probabilities))

    @classmethod
    def cat(cls, parts: Sequence[Explanation]) -> Explanation:
        """One result of the inputs of ``parts`` (results of one method and contrast on inputs of one size)."""
        first = parts[0]
        if len(parts) == 1:
            return first

        def cat(values: list[Any]) -> Any:
            return None if values[0] is None else torch.cat(values)

        return first.replace(layer_maps=cat([p.layer_maps for p in parts]), targets=cat([p.targets for p in parts]),
                             logits=cat([p.logits for p in parts]), inputs=None, foils=cat([p.foils for p in parts]),
                             selected=cat([p.selected for p in parts]), maps=cat([p.maps for p in parts]),
                             units=[u for p in parts for u in p.units], scores=cat([p.scores for p in parts]),
                             target_probabilities=cat([p.target_probabilities for p in parts]))

    def onto(self, undo: Callable[..., Tensor], undo_box: Callable[..., list[float]], height: int,
             width: int) -> Explanation:
        """The result of one letterboxed input on the user's image of ``height`` × ``width`` (``undo`` /
        ``undo_box``: the preprocessing's inverse, a letterbox's: `classcontrast.models.bundle.Undoable`): its maps,
        boxes and masks there."""
        units = [[u.onto(lambda b: undo_box(b, height, width), lambda m: undo(m, height, width, nearest=True))
                  for u in row] for row in self.units]
        return self.replace(maps=undo(self.maps, height, width), size=(height, width), units=units, inputs=None,
                            to_pixels=None)

    def to(self, device: str | torch.device) -> Explanation:
        """A copy with every tensor moved to ``device``."""
        def move(t: Any) -> Any:
            return t.to(device) if isinstance(t, Tensor) else t

        return self.replace(layer_maps=move(self.layer_maps), targets=move(self.targets), logits=move(self.logits),
                            inputs=move(self.inputs), foils=move(self.foils), selected=move(self.selected),
                            maps=move(self.given.values.get("maps")), scores=move(self.scores),
                            target_probabilities=move(self.target_probabilities))

    # -- records -------------------------------------------------------------------------------------------------------

    def rows(self, maps: str = "both", arrays: str = "numpy", first: int = 0) -> list[dict[str, Any]]:
        """One plain record per (input, unit) — its target under this contrast — for tables, files and answers:
        ``input`` (its index, from ``first``), ``place`` (the unit's on the input's K axis), ``unit`` (the unit's
        fields, ``kind`` among them), ``target`` and
        ``target_name``, ``contrast``, ``method``, ``score`` (the contrast's value), ``probability``, ``map`` (at the
        input's size) and ``layer_map`` (at the layer's) as NumPy arrays (``arrays="list"``: nested lists, for
        ``json.dumps``), as ``maps`` asks: ``"both"``, ``"input"``, ``"layer"`` or ``"none"``. Fillers (targets not
        asked for) are left out. A list of rows loads into ``pyarrow.Table.from_pylist``."""
        if maps not in MAPS or arrays not in ("numpy", "list"):
            from .errors import ClassContrastError

            raise ClassContrastError(f"rows(maps=...) is one of {', '.join(MAPS)} and arrays 'numpy' or 'list', got "
                                     f"{maps!r}, {arrays!r}")
        scores, p = self.scores, self.target_probabilities.detach().double().cpu()
        at_input = self.shown().detach().float().cpu() if maps in ("both", "input") else None
        at_layer = self.shown(layer=True).detach().float().cpu() if maps in ("both", "layer") else None
        out = []
        for i, row in enumerate(self.units):
            for j, unit in enumerate(row):
                if not unit.wanted or (self.selected is not None and not bool(self.selected[i, j])):
                    continue
                t = int(self.targets[i, j])
                record = {"input": first + i, "place": j, "unit": unit.row(arrays), "target": t,
                          "target_name": self.categories[t] if self.categories is not None else None,
                          "contrast": self.contrast, "method": self.method,
                          "score": None if scores is None else float(scores[i, j]), "probability": float(p[i, j])}
                for key, values in (("map", at_input), ("layer_map", at_layer)):
                    if values is not None:
                        a = values[i, j].numpy()
                        record[key] = a.tolist() if arrays == "list" else a
                out.append(record)
        return out

    def __repr__(self) -> str:
        b, k = self.targets.shape
        size = "x".join(str(v) for v in self.size) if self.size else "?"
        return (f"Explanation(method={self.method!r}, contrast={self.contrast!r}, layer={self.layer!r}, "
                f"images={b}, targets per image={k}, maps {size}, layer maps "
                f"{'x'.join(str(v) for v in self.layer_maps.shape[2:])})")


def displayed(maps: Tensor, spatial: int = 2) -> Tensor:
    """Maps as figures and the explorer draw them: per-channel maps (B, K, C, *S), from ``keep_channels=True``,
    summed over the channels (the map the method gives without it); ``spatial``: the number of dimensions S
    (2 for images, 3 for clips and volumes)."""
    return maps.sum(2) if maps.ndim == 3 + spatial else maps


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Linear upsampling of (N, K, *s) maps to ``size`` in every spatial dimension (bilinear for images,
    trilinear for clips and volumes; half-pixel centres, align_corners=False)."""
    return resize(maps, size)


class Explanations(dict[str, Explanation]):
    """Several contrasts computed from one forward pass: ``ex["weighted"]``, ``ex["original"]``,
    ``ex["foil:Egyptian cat"]``... (``ex["foil"]`` finds the only foil of the call; a contrast object, e.g.
    ``ex[cc.Foil(3)]``, finds the result it made)."""

    def __missing__(self, key: Any) -> Explanation:
        if hasattr(key, "key") and self:  # a contrast, by the name the call gave its result
            name = key.key(next(iter(self.values())).categories)
            if name in self:
                return self[name]
        if key == "foil":
            foils = [k for k in self if k.startswith("foil:")]
            if len(foils) == 1:
                return self[foils[0]]
        raise KeyError(f"{key!r} (this result has {', '.join(map(repr, self))})")

    @property
    def logits(self) -> Tensor:
        return next(iter(self.values())).logits

    @property
    def targets(self) -> Tensor:
        return next(iter(self.values())).targets

    def rows(self, maps: str = "both", arrays: str = "numpy", first: int = 0) -> list[dict[str, Any]]:
        """Every contrast's `Explanation.rows`, contrast after contrast (the ``contrast`` field tells them apart)."""
        return [row for ex in self.values() for row in ex.rows(maps, arrays, first)]


__all__ = ["MAPS", "NEGLIGIBLE", "Explanation", "Explanations", "displayed", "upsample"]
