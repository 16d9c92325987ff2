"""Results: signed maps with the targets and logits they explain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .contrast_base import head_probabilities
from .spatial import resize

Records = list[list[dict[str, Any]]]
# a map whose Σ|value| is at most this fraction of its objective's |score| is numerically zero (float rounding)
NEGLIGIBLE = 1e-6


class Explanation:
    """Signed maps for K target classes of B images under one method and one contrast.

    ``maps`` (B, K, H, W) are at input resolution: bilinear upsampling (half-pixel centres) of
    ``layer_maps``, which are at the layer's resolution, done on first access (the two are the same
    tensor for input-space methods). Positive values support the target over what the contrast
    compares it with; negative values speak against it.

    ``inputs`` is the explained batch (a reference, not a copy), ``to_pixels`` maps it back to [0, 1]
    images when the model came with its preprocessing (a ModelBundle), ``categories`` names the
    classes and ``foils`` (B,) holds a foil contrast's class per image: what the Jupyter viewer
    (``_repr_html_``) needs.
    """

    def __init__(self, maps: Tensor | None, layer_maps: Tensor, targets: Tensor, logits: Tensor, method: str,
                 contrast: str, layer: str | None = None, options: dict[str, Any] | None = None,
                 inputs: Tensor | None = None, to_pixels: Callable[[Tensor], Tensor] | None = None,
                 categories: list[str] | None = None, foils: Tensor | None = None,
                 size: tuple[int, int] | None = None, objective: Any = None,
                 units: Records | Callable[[], Records] | None = None,
                 scores: Tensor | Callable[[], Tensor] | None = None,
                 target_probabilities: Tensor | Callable[[], Tensor] | None = None, head: str = "softmax",
                 selected: Tensor | None = None) -> None:
        self._maps = maps
        self.layer_maps = layer_maps
        self.targets = targets
        self.logits = logits
        self.method = method
        self.contrast = contrast
        self.layer = layer
        self.options = dict(options or {})
        self.inputs = inputs
        self.to_pixels = to_pixels
        self.categories = categories
        self.foils = foils
        self.size = tuple(size) if size is not None else (tuple(maps.shape[2:]) if maps is not None else None)
        self.objective = objective  # the Contrast whose gradient made the maps
        # What was explained, per image and target (see `units`), the scores and the targets' probabilities: None
        # here for whole images (a classifier: computed from the logits), or given — as a function when costly
        # (a region's sums over its pixels), called on first access
        self._given: dict[str, Any] = {"units": units, "scores": scores, "target_probabilities": target_probabilities}
        self.head = head  # "softmax" or "sigmoid" (multi-label: independent probabilities)
        # (B, K) bool for ``Threshold`` targets: False marks a filler (an image with fewer classes above
        # the threshold than K); None: every target was asked for
        self.selected = selected

    def _field(self, name: str) -> Any:
        value = self._given[name]
        if callable(value):
            value = self._given[name] = value()
        return value

    @property
    def _units(self) -> Records | None:
        return self._field("units")

    @property
    def _scores(self) -> Tensor | None:
        return self._field("scores")

    @property
    def _target_probabilities(self) -> Tensor | None:
        return self._field("target_probabilities")

    @property
    def maps(self) -> Tensor:
        """(B, K, *S) maps at input resolution (computed from ``layer_maps`` on first access)."""
        if self._maps is None:
            lm = self.layer_maps
            same = self.size is None or lm.ndim != 2 + len(self.size) or tuple(lm.shape[2:]) == self.size
            self._maps = lm if same else upsample(lm, self.size)  # type: ignore[arg-type]
        return self._maps

    def shown(self, layer: bool = False) -> Tensor:
        """The maps as drawn (B, K, *S): per-channel maps (``keep_channels``) summed over the channels; ``layer``:
        at the layer's resolution."""
        return displayed(self.layer_maps if layer else self.maps, len(self.size) if self.size else 2)

    @property
    def units(self) -> list[list[dict[str, Any]]]:
        """What was explained, per image a list in the order of the maps' K axis: records with ``kind``
        (``"image"``, ``"region"`` or ``"object"``), ``target`` and ``logits`` (the unit's class logits as
        the model computed them: the image's (C,), a region's pixels (N, C), an object's row (C,)); a
        region adds ``mask`` (H, W) and ``pixels``; an object ``box`` (x0, y0, x1, y1 in input pixels),
        ``label``, ``score`` (the model's), ``index`` (its place in the model's detections) and ``selected``."""
        if self._units is not None:
            return self._units
        t = self.targets.tolist()
        return [[{"kind": "image", "target": c, "logits": self.logits[i]} for c in row] for i, row in enumerate(t)]

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
        if self._scores is not None:
            return self._scores
        if self.objective is None:
            return None
        b, k = self.targets.shape
        y = self.logits.double() if self.logits.dtype not in (torch.float32, torch.float64) else self.logits
        rows = y.repeat_interleave(k, 0)
        return self.objective.select(torch.arange(b, device=y.device).repeat_interleave(k), b).score(
            rows, self.targets.reshape(-1)).reshape(b, k)

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
        units = self._units
        if units is None:
            return self.logits.detach().abs().double().amax(1, keepdim=True).expand(*self.targets.shape)
        return torch.tensor([[float(u["logits"].detach().abs().max()) * max(1, int(u.get("pixels", 1)))
                              if u["logits"].numel() else 0.0 for u in row] for row in units], dtype=torch.float64)

    def foil_is_target(self) -> Tensor | None:
        """(B, K) True where a foil contrast's foil is the target itself ("why t rather than t": zero by
        definition; the figures show a note instead of the panel); None for other contrasts."""
        if self.foils is None:
            return None
        return self.foils.to(self.targets.device)[:, None] == self.targets

    @property
    def target_probabilities(self) -> Tensor:
        """The probability of each explained target, (B, K) (for a region: the mean over its pixels)."""
        if self._target_probabilities is not None:
            return self._target_probabilities
        return self.probabilities.gather(1, self.targets)

    def to(self, device: str | torch.device) -> Explanation:
        """A copy with every tensor moved to ``device``."""
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Explanation(move(self._maps), self.layer_maps.to(device), self.targets.to(device),
                           self.logits.to(device), self.method, self.contrast, self.layer, self.options,
                           move(self.inputs), self.to_pixels, self.categories, move(self.foils), self.size,
                           self.objective, self._units, move(self._scores), move(self._target_probabilities),
                           self.head, move(self.selected))

    def __repr__(self) -> str:
        b, k = self.targets.shape
        size = "x".join(str(v) for v in self.size) if self.size else "?"
        return (f"Explanation(method={self.method!r}, contrast={self.contrast!r}, layer={self.layer!r}, "
                f"images={b}, targets per image={k}, maps {size}, layer maps "
                f"{'x'.join(str(v) for v in self.layer_maps.shape[2:])})")

    def _repr_html_(self) -> str | None:
        """The interactive viewer in Jupyter (None, i.e. the plain repr, without the input images)."""
        from .explorer.notebook import explanations_html

        return explanations_html({self.contrast: self})


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
    ``ex["foil:Egyptian cat"]``... (``ex["foil"]`` finds the only foil of the call)."""

    def __missing__(self, key: str) -> Explanation:
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

    def _repr_html_(self) -> str | None:
        """The interactive viewer in Jupyter: every contrast of the call, for every image and target."""
        from .explorer.notebook import explanations_html

        return explanations_html(self)
