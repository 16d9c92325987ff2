"""The explorer page of a model on some inputs, in two steps: the request explains what the page offers
(`classcontrast.explorer.offers`: every named contrast and every "t rather than s" foil among a few classes per image,
for one or more methods, one `explain` call per method and batch), then the renderer draws those results
(`classcontrast.explorer.render`), without running the model again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..engine import unwrap_model
from .offers import PageRequest, explore, offered_groups
from .page import NAMED, write_page
from .render import PageGroup, page_data, shown_groups


def explorer_data(model: Any, x: torch.Tensor | Sequence[torch.Tensor], methods: Sequence[str] = ("gradcam",),
                  targets: Any = None, titles: Sequence[str] | None = None, title: str = "classcontrast explorer",
                  categories: Sequence[str] | None = None, batch_size: int = 16, named: Sequence[str] = NAMED,
                  head: str | None = None, foils: Sequence[int] = (), **options: Any) -> dict[str, Any]:
    """The explorer's data for images ``x``: for each image, the classes of ``targets`` (default: its 3 likeliest)
    with every named contrast (``named``: the paper's five; add the peers' ``"finer"``, ``"finer_mean"``,
    ``"rest"`` for their buttons) and every foil among them, for each method (one call per method and batch of
    ``batch_size`` images). ``head``: as for `explain` (default: the ModelBundle's). ``foils``: classes (indices)
    offered as foils of every target besides those, the page opening on the first (what ``explain --foil`` asked
    for). A segmenter's regions and a detector's objects are one entry each; clips and volumes one entry per frame
    (slice), a slider between them."""
    req = PageRequest(tuple(methods), tuple(named), tuple(int(f) for f in foils), head=head, options=options)
    groups = offered_groups(model, x, req, targets, titles, batch_size)
    return rendered(model, groups, methods, title, categories)


def rendered(model: Any, groups: list[PageGroup], methods: Sequence[str], title: str = "classcontrast explorer",
             categories: Sequence[str] | None = None) -> dict[str, Any]:
    """The page's data for groups already explained, with its subtitle (the model, what it shows, the methods)."""
    ref = shown_groups(groups)[0].ref
    record = ref.units[0][0]
    view = groups[0].view if record.shown == "classes" else None  # a classifier's clips or volumes
    shown = {"slice": "volumes: one slice at a time", "frame": "clips: one frame at a time"}.get(view or "",
                                                                                                 record.shown)
    model_name = getattr(model, "name", type(unwrap_model(model)).__name__)
    independent = "; sigmoid head: independent probabilities (they need not sum to 1)" \
        if ref.head == "sigmoid" and record.shown == "classes" else ""
    what = "" if record.shown == "classes" and view is None else f"; {shown}"
    return page_data(groups, title, f"{model_name}{what}; methods: {', '.join(methods)}{independent}", categories)


def write_explorer(path: str | Path, model: Any, x: torch.Tensor | Sequence[torch.Tensor],
                   methods: Sequence[str] = ("gradcam",), targets: Any = None, titles: Sequence[str] | None = None,
                   **options: Any) -> Path:
    """Write the self-contained explorer page for images ``x`` (see
    [`explorer_data`][classcontrast.explorer.compute.explorer_data]) to ``path``.

    ``targets``: None (what a page offers: each image's top 3 classes; a segmenter's 3 largest regions; a detector's
    5 best detections), ``TopK(k)`` (a classifier's), classes per image as for
    [`explain`][classcontrast.engine.explain], a `Region` spec or `Detections`; every foil among an image's classes
    is offered (for a unit: among the classes it ranks next). Regions and objects are drawn on the image; a click on
    a box opens it.
    """
    return write_page(explorer_data(model, x, methods, targets, titles, **options), path)


__all__ = ["explore", "explorer_data", "rendered", "write_explorer"]
