"""The explorer's entries for segmentation regions and detected objects: one entry per unit, with the
unit drawn on the page (a region's outline, an object's box) and its siblings (the other units of the
same image) one click away.

A region offers as targets its class and the classes its pixels rank next (each explained over the same
pixels); an object offers its own label, with foils among the classes its row ranks next ("no object"
included for DETR-style models). Every map comes from [`explain`][classcontrast.engine.explain].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..contrasts import Foil
from ..engine import explain
from ..errors import ClassContrastWarning
from ..methods import options_for
from ..units.selectors import Detections
from ..viz.views import evenly
from .encode import display_pixels, fit
from .maps import grid
from .page import entry, image_entry

MAX_VIEWS = 32  # slices a page holds per volume, spread evenly (as for a classifier's volumes)


def unit_entries(model: Any, x: Sequence[torch.Tensor], methods: Sequence[str], spec: Any,
                 titles: Sequence[str] | None, named: Sequence[str], categories: Sequence[str], head: str | None = None,
                 foils: Sequence[int] = (), **options: Any) -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    """(images, entries) of the explorer for the units ``spec`` selects (Regions or `Detections`) in each
    image of ``x`` (tensors (1, C, H, W): segmenters and detectors take images of their own sizes); ``foils``:
    classes offered as foils of every unit besides those it ranks next (the page opens on the first)."""
    images: dict[str, dict[str, str]] = {}
    entries: list[dict[str, Any]] = []
    inverse = getattr(getattr(model, "normalize", None), "inverse", None)
    for b, xb in enumerate(x):
        name = titles[b] if titles is not None else f"image {b}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClassContrastWarning)
            probe = explain(model, xb, methods[0], "original", spec, head=head, **options_for(methods[0], options))
        pixels = display_pixels(xb, inverse)[0]
        volume = xb.ndim == 5  # a 3-D segmenter's regions: one entry per slice, a slider between them
        slices = evenly(xb.shape[2], MAX_VIEWS) if volume else []
        if volume:
            for d in slices:
                images[f"i{b}_{d}"] = image_entry(pixels[:, d], f"{name}: slice {d + 1} of {xb.shape[2]}")
        else:
            images[f"i{b}"] = image_entry(pixels, name)
        for k, unit in enumerate(probe.units[0]):
            if not unit.wanted or unit.empty:  # a filler, an empty region
                continue
            t = int(unit.target)
            p = unit.class_probabilities(probe.head)  # a region's: its pixels' mean
            ranked = [c for c in p.argsort(descending=True).tolist() if c != t]
            top = [(c, float(p[c])) for c in p.argsort(descending=True)[:5].tolist()]
            classes, unit_foils, unit_spec = unit.offered(ranked, spec)
            shown = unit.page(*xb.shape[-2:], volume)
            title = unit.title(name, categories, volume)
            shown_foils = [*unit_foils, *(int(f) for f in foils if int(f) not in unit_foils)]
            contrasts = [*named, *(Foil(c) for c in shown_foils)]
            keys = [*named, *(f"foil:{c}" for c in shown_foils)]
            grids, signs, res = grid(model, xb, methods, contrasts, unit_spec, head, at_input=volume, **options)
            notes = {m: v[0].numpy() for m, v in signs.items()}
            probabilities = res[named[0]].target_probabilities[0].tolist()
            first = f"foil:{int(foils[0])}" if foils else "weighted" if "weighted" in named else named[0]
            if not volume:
                e = entry(f"e{b}_{k}", f"i{b}", title, classes, probabilities, {m: v[0].numpy() for m, v in
                          grids.items()}, top=top, keys=keys, notes=notes, default=(t, first))
                e["unit"] = shown
                entries.append(e)
                continue
            for i, d in enumerate(slices):  # the region's entry on each shown slice: its outline there
                where = f"slice {d + 1} of {xb.shape[2]}"
                e = entry(f"e{b}_{k}_{d}", f"i{b}_{d}", f"{title}, {where}", classes, probabilities,
                          {m: fit(v[0][..., d, :, :]).numpy() for m, v in grids.items()}, top=top, keys=keys,
                          notes=notes, default=(t, first))
                e["unit"] = unit.viewed(lambda m, d=d: m[d]).page(*xb.shape[-2:], False)
                e["view"] = {"group": f"g{b}_{k}", "index": i, "count": len(slices), "label": where}
                entries.append(e)
    return images, entries


def unit_spec(net: torch.nn.Module, x: torch.Tensor, targets: Any) -> Any:
    """The units ``targets`` asks for on this model — a Region spec or `Detections` as given, or, for None, the
    kind's own default for a page (a segmenter's 3 largest regions, a detector's 5 best detections:
    `classcontrast.units.records.Unit.asking`) — or None for a classifier (one model call on the first image,
    without gradients, when ``targets`` is None)."""
    from ..state import frozen_eval
    from ..units import is_region_spec
    from ..units.base import output_kind

    if is_region_spec(targets) or isinstance(targets, Detections):
        return targets
    if targets is not None:
        return None
    with frozen_eval(net, freeze=False), torch.no_grad():
        raw = net(x[:1])
    kind = output_kind(raw, x[:1])
    return None if kind is None else kind.record.asking()
