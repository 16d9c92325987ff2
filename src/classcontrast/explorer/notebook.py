"""The explorer for the result of one [`explain`][classcontrast.engine.explain] call, inline in Jupyter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # the explanation imports this module to render itself, not the other way round
    from ..explanation import Explanation
from .encode import display_pixels, fit
from .page import entry, fragment, image_entry


def explanations_data(results: Mapping[str, Explanation]) -> dict[str, Any] | None:
    """Viewer data for the contrasts of one call (same images, targets and method); None without inputs."""
    first = next(iter(results.values()))
    if first.inputs is None:
        return None
    names = first.categories or [f"class {i}" for i in range(first.logits.shape[1])]
    p = first.probabilities.double().cpu()
    targets = first.targets.cpu()
    pixels = display_pixels(first.inputs, first.to_pixels)
    per_contrast = [e.layer_maps.sum(2) if e.layer_maps.ndim == 5 else e.layer_maps for e in results.values()]
    maps = fit(torch.stack([m.detach().float().cpu() for m in per_contrast], 2))  # (B, K, M, h, w); channels summed
    flags = [e.disagreeing() for e in results.values()]
    notes = None if any(f is None for f in flags) else torch.stack(flags, 2).cpu()  # type: ignore[arg-type]
    top = p.topk(min(5, p.shape[1]), 1)
    images, entries = {}, []
    for b in range(targets.shape[0]):
        keys = [f"foil:{int(e.foils[b])}" if e.foils is not None else name for name, e in results.items()]
        images[f"i{b}"] = image_entry(pixels[b], f"image {b}")
        entries.append(entry(f"e{b}", f"i{b}", f"image {b}", targets[b].tolist(), p[b, targets[b]].tolist(),
                             {first.method: maps[b].numpy()}, top=list(zip(top.indices[b].tolist(),
                                                                           top.values[b].tolist(), strict=True)),
                             default=(int(targets[b, 0]), keys[0]), keys=keys,
                             notes=None if notes is None else {first.method: notes[b].numpy()}))
    independent = {"subtitle": "sigmoid head: independent probabilities (they need not sum to 1)"} \
        if first.head == "sigmoid" else {}
    return {"kind": "explain", "title": f"{first.method}: {', '.join(results)}", "classes": list(names), **independent,
            "images": images, "entries": entries}


def explanations_html(results: Mapping[str, Explanation]) -> str | None:
    """The viewer as an HTML fragment, or None when the explanation does not hold its inputs."""
    data = explanations_data(results)
    return None if data is None else fragment(data)
