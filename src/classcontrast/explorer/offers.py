"""What the explorer page offers, explained: the request path that runs the model, once, before the page is drawn
(`classcontrast.explorer.render` only draws the results).

For each input, a cheap probe (the gradient, without a contrast) fixes the units the page shows — an image's
classes, a segmenter's regions, a detector's objects — and the classes each ranks next; then **one** `explain` call
per method gives every contrast the page offers for all of them at once: the named contrasts, a foil for each
class offered (a classifier's other targets; a unit's runners-up) and the foils the user named. A region offers its
class and the two its pixels rank next, each explained over the same pixels; an object its label.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..contrasts import Foil, get_contrast
from ..engine import check_input, explain, model_head, unwrap_model
from ..errors import ClassContrastError, ClassContrastWarning
from ..explanation import Explanation
from ..methods import options_for
from ..targets import DEFAULT_TOP
from .encode import fit
from .page import NAMED, contrast_keys
from .render import PageEntry, PageGroup

PROBE = "gradient"  # the probe's method: one forward and one backward pass, whatever the page's methods cost
PAGE_TOP = 3  # a page without targets offers each input's 3 likeliest classes, a segmenter's 3 largest regions


@dataclass(frozen=True)
class PageRequest:
    """What a page is asked: its ``methods``; the ``named`` contrasts it offers (the paper's five, the peers' when
    asked); the user's ``foils`` (class indices: offered to every target, the page opening on the first); the
    contrasts ``asked`` besides, computed in the same calls so that a command line's figure is drawn from them;
    the ``head``; the methods' ``options``; ``each``: a context around each method's call (a progress bar)."""

    methods: tuple[str, ...]
    named: tuple[str, ...] = NAMED
    foils: tuple[int, ...] = ()
    asked: tuple[Any, ...] = ()
    head: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    each: Callable[[str], AbstractContextManager[Any]] = field(default=lambda _method: nullcontext())

    @property
    def first(self) -> str:
        """The contrast the page opens on: the user's first foil, else weighted (else the first named contrast)."""
        return f"foil:{int(self.foils[0])}" if self.foils else "weighted" if "weighted" in self.named else \
            self.named[0]


@contextmanager
def _quiet() -> Iterator[None]:
    """A page explains "t rather than t" on purpose (every foil among the targets): its warning is not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassContrastWarning)
        yield


def _contrasts(req: PageRequest, foils: Sequence[int], per_input: Sequence[Any], categories: Any) -> list[Any]:
    """The call's contrasts: those asked, the named ones and a foil for each class offered (those of the same key as
    one asked left out), then the foils that differ per input."""
    out, keys = list(req.asked), {get_contrast(c).key(categories) for c in req.asked}
    for c in [*req.named, *(Foil(int(f)) for f in dict.fromkeys([*foils, *req.foils]))]:
        key = get_contrast(c).key(categories)
        if key not in keys:
            keys.add(key)
            out.append(c)
    return [*out, *per_input]


def _explained(model: Any, x: torch.Tensor, req: PageRequest, contrasts: list[Any], targets: Any
               ) -> dict[str, dict[str, Explanation]]:
    """Per method, one call: every contrast of every unit."""
    out = {}
    for m in req.methods:
        with req.each(m), _quiet():
            out[m] = dict(explain(model, x, m, contrasts, targets, head=req.head,
                                  **options_for(m, req.options)))
    return out


def _probe(model: Any, x: torch.Tensor, targets: Any, head: str | None) -> Explanation:
    with _quiet():
        return explain(model, x, PROBE, "original", targets, head=head)


def unit_spec(net: torch.nn.Module, x: torch.Tensor, targets: Any) -> Any:
    """The units a page shows of each input, one entry each — a segmenter's regions or a detector's objects: those
    ``targets`` asks for (a Region spec, `Detections`), or for None what a page offers of the model's kind
    (`classcontrast.units.records.Unit.page_top`: the `PAGE_TOP` largest regions, the 5 best objects; one model call
    on the first input, without gradients) — or None: a classifier's page, one entry per input."""
    from ..units import is_region_spec, kind_of
    from ..units.selectors import Detections

    if is_region_spec(targets) or isinstance(targets, Detections):
        return targets
    if targets is not None:
        return None
    kind = kind_of(net, x)
    return None if kind is None else kind.record.page_top(PAGE_TOP)


def _answered(figure: Any, spec: Any, targets: Any, shown: list[int], places: list[tuple[int, ...]],
              k: int) -> tuple[int, ...] | None:
    """The places, on the K axis of a page's call (``targets``, made of the units ``spec`` found, ``k`` of them, of
    which those at ``shown`` have entries at ``places``), of the units the call's own ``figure`` targets ask for: all of
    them when they are the page's, the first `DEFAULT_TOP` for None (the page's are the largest or best first); None
    when they are not all there."""
    n = k if figure is spec else DEFAULT_TOP if figure is None else None
    if n is None or n > k:
        return None
    if targets is spec:  # the page's call is the one that found the units: each at its own place
        return tuple(range(n))
    if shown[:n] != list(range(n)):  # a filler or an empty region among them: not shown, not explained
        return None
    return tuple(places[j][0] for j in range(n))


def unit_group(model: Any, x: torch.Tensor, b: int, name: str, spec: Any, req: PageRequest,
               figure: Any = None) -> PageGroup:
    """One image's regions or objects (``x`` (1, C, *S)), each an entry offering `Unit.offered`'s targets under the
    named contrasts and its foils (then the user's), all explained in one call per method (`Unit.joined`); ``figure``:
    the call's own targets, whose units the group's ``asked`` finds among them."""
    probe = _probe(model, x, spec, req.head)
    volume = x.ndim == 5  # a 3-D segmenter's regions: an entry per slice
    categories = getattr(model, "categories", None)
    names = list(categories or [f"class {i}" for i in range(probe.logits.shape[-1])])
    records = [(k, u) for k, u in enumerate(probe.units[0]) if u.wanted and not u.empty]  # no filler, empty region
    offered, shown = [], []  # per unit: (its place, the targets= of what it offers, how many), (its foils, entry)
    for k, u in records:
        t = int(u.target)
        p = u.class_probabilities(probe.head)
        classes, unit_foils, asked = u.offered([c for c in p.argsort(descending=True).tolist() if c != t], spec)
        foils = [*unit_foils, *(int(f) for f in req.foils if int(f) not in unit_foils)]
        offered.append((k, asked, len(classes)))
        shown.append((foils, f"e{b}_{k}", (t, req.first), u.title(name, names, volume)))
    targets, places = type(probe.units[0][0]).joined(spec, offered) if records else (spec, [])
    entries = tuple(PageEntry(eid, 0, place, (*req.named, *(f"foil:{c}" for c in foils)), default, title)
                    for (foils, eid, default, title), place in zip(shown, places, strict=True))
    if not records and not req.asked:  # nothing to show, nothing asked
        return PageGroup({}, (), (name,), first=b)
    contrasts = _contrasts(req, [c for foils, *_ in shown for c in foils], (), categories)
    results = _explained(model, x, req, contrasts, targets)
    asked = _answered(figure, spec, targets, [k for k, _ in records], places, probe.targets.shape[1])
    return PageGroup(results, entries, (name,), first=b, view="slice" if volume else None, asked=asked)


def _words(model: Any, x: torch.Tensor, req: PageRequest, contrasts: list[Any], classes: torch.Tensor
           ) -> tuple[tuple[list[str], dict[str, dict[str, Explanation]]] | None, ...]:
    """For a vision-language bundle (`classcontrast.models.answers.answers`), per input: the prompt's words and their
    attributions under the same classes and contrasts as the image maps — Integrated Gradients for that method,
    gradient × embedding otherwise; nothing for any other model."""
    from ..models.answers import Answers
    from ..models.prompt import prompt_tokens

    if not isinstance(getattr(model, "model", None), Answers):
        return ()
    out = []
    for i in range(x.shape[0]):
        net, e = prompt_tokens(model, image=x[i : i + 1])
        mine = [Foil(c.foil[i : i + 1]) if isinstance(c, Foil) and isinstance(c.foil, torch.Tensor) else c
                for c in contrasts]
        results = {}
        for m in req.methods:
            how = "integrated_gradients" if m == "integrated_gradients" else "gradient_x_input"
            with _quiet():
                results[m] = dict(explain(net, e, how, mine, classes[i : i + 1], head=req.head))
        out.append((list(net.tokens), results))
    return tuple(out)


def class_group(model: Any, x: torch.Tensor, first: int, names: Sequence[str], targets: Any, req: PageRequest,
                view: str | None = None) -> PageGroup:
    """A batch of a classifier's inputs (images; a clip or a volume, ``view`` "frame" or "slice"): each input an entry
    offering its targets (a ``Threshold``'s fillers left out; without targets its 3 likeliest classes) under the
    named contrasts, a foil for each of its targets and the user's foils, all explained in one call per method."""
    probe = _probe(model, x, targets, req.head)
    classes = probe.targets if targets is not None else probe.logits.topk(min(PAGE_TOP, probe.logits.shape[1])).indices
    keep = probe.selected if probe.selected is not None else torch.ones_like(classes, dtype=torch.bool)
    per_input = [Foil(classes[:, j]) for j in range(classes.shape[1])]
    contrasts = _contrasts(req, (), per_input, getattr(model, "categories", None))
    results = _explained(model, x, req, contrasts, classes if targets is None else targets)
    entries = []
    for i in range(x.shape[0]):
        kept = tuple(keep[i].nonzero()[:, 0].tolist())
        cls = classes[i, list(kept)].tolist()
        extra = [f for f in dict.fromkeys(int(f) for f in req.foils) if f not in cls]
        keys = (*contrast_keys(cls, req.named), *(f"foil:{f}" for f in extra))
        entries.append(PageEntry(f"e{first + i}", i, kept, keys, (cls[0], req.first), names[i]))
    words = _words(model, x, req, contrasts, classes) if view is None else ()
    asked = tuple(range(classes.shape[1] if targets is not None else min(DEFAULT_TOP, classes.shape[1])))
    return PageGroup(results, tuple(entries), tuple(names), first=first, words=words, view=view, asked=asked)


def offered_groups(model: Any, x: torch.Tensor | Sequence[torch.Tensor], req: PageRequest, targets: Any = None,
                   titles: Sequence[str] | None = None, batch_size: int = 16, first: int = 0) -> list[PageGroup]:
    """The page's groups for inputs ``x`` (a batch, or tensors (1, C, H, W) of their own sizes for segmenters and
    detectors), the first numbered ``first`` on the page; see `classcontrast.explorer.compute.explorer_data`."""
    net = unwrap_model(model)
    many = isinstance(x, (list, tuple))
    batch = [check_input(v) for v in x] if many else [check_input(x)]
    req = replace(req, head=model_head(model, net, req.head))  # as explain decides it
    units = unit_spec(net, batch[0], targets)
    if units is not None and batch[0].ndim == 3:
        raise ClassContrastError("the explorer shows the regions of 2-D and 3-D segmentations, not of 1-D signals")
    n = sum(len(v) for v in batch)
    names = list(titles) if titles is not None else [f"image {b}" for b in range(first, first + n)]
    if units is not None:  # a segmenter's regions or a detector's objects: one entry per unit
        one_each = batch if many else [v[None] for v in batch[0]]
        return [unit_group(model, xb, first + b, names[b], units, req, targets) for b, xb in enumerate(one_each)]
    if many:
        raise ClassContrastError("images of different sizes go on one explorer page only for segmenters and "
                                 "detectors; give a classifier one (B, C, H, W) batch")
    x = batch[0]
    per_input = isinstance(targets, (list, tuple, torch.Tensor)) and len(targets) == x.shape[0]
    if x.ndim == 5:  # clips or volumes: one input at a time, an entry per frame (slice)
        view = "slice" if not getattr(model, "frames", None) else "frame"  # a video bundle knows its clip length
        names = list(titles) if titles is not None else [f"input {b}" for b in range(first, first + len(x))]
        return [class_group(model, x[b : b + 1], first + b, names[b : b + 1],
                            targets[b : b + 1] if per_input else targets, req, view) for b in range(len(x))]
    return [class_group(model, x[s : s + batch_size], first + s, names[s : s + batch_size],
                        targets[s : s + batch_size] if per_input else targets, req)
            for s in range(0, len(x), batch_size)]


def explore(model: Any, x: torch.Tensor, methods: Sequence[str], classes: torch.Tensor, named: Sequence[str] = NAMED,
            head: str | None = None, foils: Sequence[int] = (), **options: Any
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
    """The audit's grid: per method the maps (B, L, M, h, w) of the classes (B, L) under the M contrasts of
    `contrast_keys` (the foil of a class against itself is 0) followed by one ``Foil(f)`` per class of ``foils``, at
    the stored resolution (`classcontrast.explorer.encode.fit`); the images' logits (B, C); per method the (B, L, M)
    flags of the maps whose sum disagrees in sign with their score (`Explanation.disagreeing`). One call per method;
    ``options`` go to the methods that accept them (e.g. ``layer``)."""
    contrasts: list[Any] = [*named, *(Foil(classes[:, j]) for j in range(classes.shape[1])),
                            *(Foil(int(f)) for f in foils)]
    results = _explained(model, x, PageRequest(tuple(methods), head=head, options=options), contrasts, classes)
    maps = {m: fit(torch.stack([e.shown(layer=True) for e in res.values()], 2).detach().float().cpu())
            for m, res in results.items()}
    notes = {m: torch.stack([_flags(e) for e in res.values()], 2).cpu() for m, res in results.items()}
    return maps, next(iter(next(iter(results.values())).values())).logits.detach().cpu(), notes


def _flags(e: Explanation) -> torch.Tensor:
    flags = e.disagreeing()
    return flags if flags is not None else torch.zeros(e.targets.shape, dtype=torch.bool)


__all__ = ["PAGE_TOP", "PROBE", "PageRequest", "class_group", "explore", "offered_groups", "unit_group", "unit_spec"]
