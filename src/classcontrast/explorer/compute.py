"""What the explorer shows, computed: every named contrast and every "t rather than s" foil among a
few classes per image, for one or more methods, with [`explain`][classcontrast.engine.explain] (one forward pass
per method and batch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..contrast_base import head_probabilities
from ..contrasts import Foil
from ..detection import Detections
from ..engine import check_input, explain, unwrap_model
from ..errors import ClassContrastError
from ..state import predict
from ..targets import Threshold, TopK, resolve_targets
from .encode import display_pixels
from .maps import grid
from .page import NAMED, contrast_keys, entry, image_entry, write_page
from .units import unit_entries, unit_spec


def explore(model: Any, x: torch.Tensor, methods: Sequence[str], classes: torch.Tensor,
            named: Sequence[str] = NAMED, head: str | None = None, foils: Sequence[int] = (), **options: Any
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """(maps, logits, notes): maps (B, L, M, h, w) per method for the L classes of each image
    (``classes`` (B, L)) under the M contrasts of `contrast_keys` (the foil of a class against itself is
    0) followed by one ``Foil(f)`` per class of ``foils`` (the foils a user named), the images' logits (B, C),
    and per method (B, L, M) flags of the maps whose sum disagrees in sign with their score
    (`Explanation.disagreeing`). ``options`` go to the methods that accept them (e.g. ``layer``). Maps are at
    the stored resolution (see ``encode.fit``); one forward pass per method."""
    contrasts: list[Any] = [*named, *(Foil(classes[:, j]) for j in range(classes.shape[1])),
                            *(Foil(int(f)) for f in foils)]
    out, notes, res = grid(model, x, methods, contrasts, classes, head, **options)
    return out, res.logits.detach().cpu(), notes


def explorer_data(model: Any, x: torch.Tensor | Sequence[torch.Tensor], methods: Sequence[str] = ("gradcam",),
                  targets: Any = None, titles: Sequence[str] | None = None, title: str = "classcontrast explorer",
                  categories: Sequence[str] | None = None, batch_size: int = 16, named: Sequence[str] = NAMED,
                  head: str | None = None, foils: Sequence[int] = (), **options: Any) -> dict[str, Any]:
    """The explorer's data for images ``x``: for each image, the classes of ``targets`` (default
    ``TopK(3)``) with every named contrast (``named``: the paper's five; add the peers' ``"finer"``,
    ``"finer_mean"``, ``"rest"`` for their buttons) and every foil among them, for each method (one
    forward pass per method and batch of ``batch_size`` images). ``head``: as for `explain` (default: the
    ModelBundle's). ``foils``: classes (indices) offered as foils of every target besides those, the page
    opening on the first (what ``explain --foil`` asked for)."""
    net = unwrap_model(model)
    many = isinstance(x, (list, tuple))  # images of their own sizes, (1, C, H, W) each
    batch = [check_input(v) for v in x] if many else [check_input(x)]
    if head is None:
        head = "softmax" if isinstance(model, torch.nn.Module) else getattr(model, "head", "softmax")
    model_name = getattr(model, "name", type(net).__name__)
    units = unit_spec(net, batch[0], targets)
    if units is not None:  # a segmenter's regions or a detector's objects: one entry per unit
        names = list(categories if categories is not None else getattr(model, "categories", None) or [])
        if not names:
            probe = explain(model, batch[0][:1], methods[0], "original", units)
            names = [f"class {i}" for i in range(probe.logits.shape[-1])]
        one_each = batch if many else [v[None] for v in batch[0]]
        images, entries = unit_entries(model, one_each, methods, units, titles, named, names, head, foils,
                                       **options)
        what = "detected objects" if isinstance(units, Detections) else "segmentation regions"
        return {"kind": "explain", "title": title, "subtitle": f"{model_name}; {what}; methods: {', '.join(methods)}",
                "classes": names, "images": images, "entries": entries}
    if many:
        raise ClassContrastError("images of different sizes go on one explorer page only for segmenters and "
                                 "detectors; give a classifier one (B, C, H, W) batch")
    x = batch[0]
    images, entries = {}, []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        logits = predict(net, xb).double()
        p = head_probabilities(logits, head, 1)
        per_image = isinstance(targets, (list, tuple, torch.Tensor)) and len(targets) == x.shape[0]
        spec = targets[start : start + batch_size] if per_image else targets
        classes = resolve_targets(TopK(min(3, logits.shape[1])) if spec is None else spec, logits, head)
        # Threshold targets: an image's fillers (below the threshold) are not offered
        keep = spec.selected(logits, classes, head) if isinstance(spec, Threshold) else classes >= 0
        maps, _, notes = explore(model, xb, methods, classes, named, head=head, foils=foils, **options)
        pixels = display_pixels(xb, getattr(getattr(model, "normalize", None), "inverse", None))
        top = p.topk(min(5, p.shape[1]), 1)
        for i in range(xb.shape[0]):
            b = start + i
            name = titles[b] if titles is not None else f"image {b}"
            images[f"i{b}"] = image_entry(pixels[i], name)
            kept = keep[i].nonzero()[:, 0].tolist()
            cls = classes[i, kept].tolist()
            extra = [j for j, f in enumerate(foils) if int(f) not in cls and int(f) not in foils[:j]]
            width = len(named) + classes.shape[1]  # the contrasts: named, kept foils, the user's other foils
            axis = [*range(len(named)), *(len(named) + j for j in kept), *(width + j for j in extra)]
            keys = [*contrast_keys(cls, named), *(f"foil:{int(foils[j])}" for j in extra)]
            entries.append(entry(f"e{b}", f"i{b}", name, cls, p[i, classes[i, kept]].tolist(),
                                 maps={m: v[i].numpy()[kept][:, axis] for m, v in maps.items()},
                                 keys=keys, default=(cls[0], f"foil:{int(foils[0])}") if foils else None,
                                 top=list(zip(top.indices[i].tolist(), top.values[i].tolist(), strict=True)),
                                 notes={m: v[i].numpy()[kept][:, axis] for m, v in notes.items()}))
    names = list(categories if categories is not None else getattr(model, "categories", None) or
                 [f"class {i}" for i in range(logits.shape[1])])
    independent = "; sigmoid head: independent probabilities (they need not sum to 1)" if head == "sigmoid" else ""
    return {"kind": "explain", "title": title,
            "subtitle": f"{model_name}; methods: {', '.join(methods)}{independent}",
            "classes": names, "images": images, "entries": entries}


def write_explorer(path: str | Path, model: Any, x: torch.Tensor | Sequence[torch.Tensor],
                   methods: Sequence[str] = ("gradcam",), targets: Any = None, titles: Sequence[str] | None = None,
                   **options: Any) -> Path:
    """Write the self-contained explorer page for images ``x`` (see
    [`explorer_data`][classcontrast.explorer.compute.explorer_data]) to ``path``.

    ``targets``: None (each image's top 3 classes; a segmenter's 3 largest regions; a detector's 5 best
    detections), ``TopK(k)``, classes per image as for [`explain`][classcontrast.engine.explain], a
    `Region` spec or `Detections`; every foil among an image's classes is offered (for a unit: among the
    classes it ranks next). Regions and objects are drawn on the image; a click on a box opens it.
    """
    return write_page(explorer_data(model, x, methods, targets, titles, **options), path)
