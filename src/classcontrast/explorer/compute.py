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
from ..engine import check_input, explain, model_head, unwrap_model
from ..errors import ClassContrastError
from ..state import predict
from ..targets import Threshold, TopK, resolve_targets
from ..units.selectors import Detections
from .encode import display_pixels, fit
from .maps import grid
from .page import NAMED, contrast_keys, entry, image_entry, write_page
from .units import MAX_VIEWS, unit_entries, unit_spec


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
    head = model_head(model, net, head)  # as explain decides it (sigmoid for RetinaNet, FCOS, YOLO)
    model_name = getattr(model, "name", type(net).__name__)
    units = unit_spec(net, batch[0], targets)
    if units is not None and batch[0].ndim == 3:
        raise ClassContrastError("the explorer shows the regions of 2-D and 3-D segmentations, not of 1-D signals")
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
    if batch[0].ndim == 5 and not many:  # clips or volumes: one entry per frame (slice), a slider between them
        return view_data(model, batch[0], methods, targets, titles, title, categories, named, head, foils, **options)
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
        words = _prompt_words(model, xb, methods, classes, named, head, foils)
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
            if words is not None:  # the same targets and contrasts on the prompt's words
                tokens, values = words
                entries[-1]["words"] = {"tokens": tokens, "values": {
                    m: v[i].float().numpy()[kept][:, axis].tolist() for m, v in values.items()}}
    names = list(categories if categories is not None else getattr(model, "categories", None) or
                 [f"class {i}" for i in range(logits.shape[1])])
    independent = "; sigmoid head: independent probabilities (they need not sum to 1)" if head == "sigmoid" else ""
    return {"kind": "explain", "title": title,
            "subtitle": f"{model_name}; methods: {', '.join(methods)}{independent}",
            "classes": names, "images": images, "entries": entries}


def _prompt_words(model: Any, x: torch.Tensor, methods: Sequence[str], classes: torch.Tensor, named: Sequence[str],
                  head: str | None, foils: Sequence[int]) -> tuple[list[str], dict[str, torch.Tensor]] | None:
    """For a vision-language bundle (`classcontrast.models.answers.answers`): (the prompt's words, per method
    (B, L, M, words) their attributions under the same classes and contrasts as the image maps — Integrated
    Gradients for that method, gradient × embedding otherwise); None for any other model."""
    from ..models.answers import Answers
    from ..models.prompt import prompt_tokens

    if not isinstance(getattr(model, "model", None), Answers):
        return None
    rows: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    tokens: list[str] = []
    for i in range(x.shape[0]):
        net, e = prompt_tokens(model, image=x[i : i + 1])
        tokens = net.tokens
        for m in methods:
            how = "integrated_gradients" if m == "integrated_gradients" else "gradient_x_input"
            values, _, _ = explore(net, e, [how], classes[i : i + 1], named, head=head, foils=foils)
            rows[m].append(values[how][0])
    return tokens, {m: torch.stack(v) for m, v in rows.items()}


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


def view_data(model: Any, x: torch.Tensor, methods: Sequence[str], targets: Any, titles: Sequence[str] | None,
              title: str, categories: Sequence[str] | None, named: Sequence[str], head: str | None,
              foils: Sequence[int], **options: Any) -> dict[str, Any]:
    """The explorer's data for clips (B, C, T, H, W) or volumes (B, C, D, H, W) of a classifier: every input
    explained once per method (its classes, every named contrast and foil), then shown as one entry per frame
    (axial slice) — at most `MAX_VIEWS`, spread evenly — each entry's ``view`` naming its input and place, so
    the page offers a slider over them (the target and contrast kept as it moves)."""
    from ..viz.views import evenly

    head = model_head(model, unwrap_model(model), head)  # as explain decides it (sigmoid for RetinaNet, FCOS, YOLO)
    volume = not getattr(model, "frames", None)  # a video classifier's bundle knows its clip length
    word = "slice" if volume else "frame"
    images, entries = {}, []
    pixels = display_pixels(x, getattr(getattr(model, "normalize", None), "inverse", None)) if x.shape[1] != 1 \
        else display_pixels(x)
    names: list[str] = list(categories if categories is not None else getattr(model, "categories", None) or [])
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        spec = targets[b : b + 1] if isinstance(targets, (list, tuple, torch.Tensor)) and len(targets) == len(x) \
            else targets
        probe = explain(model, xb, methods[0], "original", TopK(2) if spec is None else spec, head=head)
        classes = probe.targets
        logits = probe.logits.detach().double()
        if not names:
            names = [f"class {i}" for i in range(logits.shape[1])]
        p = head_probabilities(logits, head, 1)[0]
        contrasts: list[Any] = [*named, *(Foil(classes[:, j]) for j in range(classes.shape[1])),
                                *(Foil(int(f)) for f in foils)]
        maps, notes = {}, {}
        for method in methods:
            res = grid_at_input(model, xb, method, contrasts, classes, head, **options)
            maps[method], notes[method] = res
        cls = classes[0].tolist()
        extra = [j for j, f in enumerate(foils) if int(f) not in cls and int(f) not in foils[:j]]
        width = len(named) + classes.shape[1]
        axis = [*range(width), *(width + j for j in extra)]
        keys = [*contrast_keys(cls, named), *(f"foil:{int(foils[j])}" for j in extra)]
        depth = x.shape[2]
        chosen = evenly(depth, MAX_VIEWS)
        name = titles[b] if titles is not None else f"input {b}"
        top = p.topk(min(5, p.shape[0]))
        for i, d in enumerate(chosen):
            view_id = f"i{b}_{d}"
            images[view_id] = image_entry(pixels[b][:, d], f"{name}: {word} {d + 1} of {depth}")
            e = entry(f"e{b}_{d}", view_id, f"{name}: {word} {d + 1} of {depth}", cls, p[classes[0]].tolist(),
                      maps={m: fit(v[0][:, axis][..., d, :, :]).numpy() for m, v in maps.items()}, keys=keys,
                      top=list(zip(top.indices.tolist(), top.values.tolist(), strict=True)),
                      notes={m: v[0][:, axis].numpy() for m, v in notes.items()},
                      default=(cls[0], f"foil:{int(foils[0])}") if foils else None)
            e["view"] = {"group": f"g{b}", "index": i, "count": len(chosen), "label": f"{word} {d + 1} of {depth}"}
            entries.append(e)
    model_name = getattr(model, "name", type(unwrap_model(model)).__name__)
    return {"kind": "explain", "title": title,
            "subtitle": f"{model_name}; {'volumes' if volume else 'clips'}: one {word} at a time; methods: "
                        f"{', '.join(methods)}", "classes": names, "images": images, "entries": entries}


def grid_at_input(model: Any, x: torch.Tensor, method: str, contrasts: Sequence[Any], classes: torch.Tensor,
                  head: str | None, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (B, L, M, *S) at the input's size, notes (B, L, M)) of one method: a clip's or a volume's maps are
    shown a frame (slice) at a time, so they are kept at the input's resolution, not the layer's."""
    import warnings

    from ..errors import ClassContrastWarning
    from ..methods import options_for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassContrastWarning)
        res = explain(model, x, method, list(contrasts), classes, head=head, **options_for(method, options))
    maps = torch.stack([e.shown() for e in res.values()], 2).detach().float().cpu()
    notes = torch.stack([e.disagreeing() for e in res.values()], 2).cpu()  # type: ignore[misc]
    return maps, notes
