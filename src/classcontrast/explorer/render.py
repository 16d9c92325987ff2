"""The explorer's renderer: the page's data from explanations already computed. It never runs a model, picks a head,
resolves targets or tests which kind a unit is: what an entry offers (its units, its contrasts, the page's default)
was decided by the request that explained them (`classcontrast.explorer.offers` for the page and the command line,
`explanations_groups` for one call's result in Jupyter); the units' records draw themselves (`Unit.page`).

A group is one call's results per method (the same inputs and units under every contrast); an entry shows some of
its units (the page's targets L) of one input under some contrast keys (M): the named contrasts by their result key,
``foil:s`` for the result whose foil is class s on that input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ClassContrastError
from .encode import display_pixels, fit
from .page import entry, image_entry

if TYPE_CHECKING:
    from ..explanation import Explanation

MAX_VIEWS = 32  # slices (frames) a page holds per volume (clip), spread evenly

Results = Mapping[str, Mapping[str, "Explanation"]]  # method -> result key -> Explanation


@dataclass(frozen=True)
class PageEntry:
    """One entry of a group: its id on the page, its input, the units it offers as targets (indices on the results' K
    axis), its contrast keys in the page's order, the target and contrast it opens on, its title."""

    eid: str
    input: int
    units: tuple[int, ...]
    keys: tuple[str, ...]
    default: tuple[int, str]
    title: str


@dataclass(frozen=True)
class PageGroup:
    """One call's results per method and the entries the page shows of them; ``names`` each input's name,
    ``first`` the group's first input's number on the page; ``words`` per input, a vision-language model's prompt
    words and their results under the same units and contrasts (None: no prompt); ``view`` "slice" or "frame" for
    volumes and clips (an entry per slice, a slider between them); ``asked``: the places on the results' K axis of
    the units the call itself asked for (what a command line's figure draws: `Explanation.columns`), or None when
    they are not among them (a region named with a mask the page does not show)."""

    results: Results
    entries: tuple[PageEntry, ...]
    names: tuple[str, ...]
    first: int = 0
    words: tuple[tuple[list[str], Results] | None, ...] = field(default_factory=tuple)
    view: str | None = None
    asked: tuple[int, ...] | None = None

    @property
    def ref(self) -> Explanation:
        """The first result: its inputs, targets and units are every result's of the group."""
        return next(iter(next(iter(self.results.values())).values()))


def shown_groups(groups: Sequence[PageGroup]) -> list[PageGroup]:
    """The groups with an entry to show; none is one line."""
    shown = [g for g in groups if g.entries]
    if not shown:
        raise ClassContrastError("the explorer has nothing to show: no input has a unit (a region, an object)")
    return shown


def _by_key(results: Mapping[str, Explanation], b: int) -> dict[str, str]:
    """Page key -> result key on input ``b``: a foil contrast is ``foil:s`` for its class s there."""
    keys: dict[str, str] = {}
    for key, e in results.items():
        shown = f"foil:{int(e.foils[b])}" if e.foils is not None else key
        keys.setdefault(shown, key)
    return keys


def _stack(results: Mapping[str, Explanation], tensors: Mapping[str, torch.Tensor], b: int, units: Sequence[int],
           keys: Sequence[str]) -> torch.Tensor:
    """(L, M, ...) the per-result tensors (B, K, ...) of input ``b``'s ``units`` under the page ``keys``."""
    lookup = _by_key(results, b)
    return torch.stack([tensors[lookup[k]][b, list(units)] for k in keys], 1)


def _notes(results: Mapping[str, Explanation]) -> dict[str, torch.Tensor] | None:
    flags = {k: e.disagreeing() for k, e in results.items()}
    return None if any(f is None for f in flags.values()) else {k: f.cpu() for k, f in flags.items() if f is not None}


def _group_entries(group: PageGroup) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(images, entries) of one group."""
    ref = group.ref
    volume = group.view is not None
    assert ref.inputs is not None, "the page draws explanations that kept their inputs"
    pixels = display_pixels(ref.inputs, ref.to_pixels)
    # a volume's maps at its own size (shown a slice at a time), an image's at the layer's; `fit` per entry
    maps = {m: {k: e.shown(layer=not volume).detach().float().cpu() for k, e in res.items()}
            for m, res in group.results.items()}
    notes = {m: _notes(res) for m, res in group.results.items()}
    images: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    for e in group.entries:
        b, number = e.input, group.first + e.input
        if volume:
            _views(group, e, pixels[b], maps, notes, images, entries)
            continue
        images.setdefault(f"i{number}", image_entry(pixels[b], group.names[b]))
        entries.append(_entry(group, e, e.eid, f"i{number}", e.title, maps, notes, lambda t: t))
        shown = ref.units[b][e.units[0]].page(*ref.inputs.shape[-2:], False)
        if shown:
            entries[-1]["unit"] = shown
    return images, entries


def _entry(group: PageGroup, e: PageEntry, eid: str, image: str, title: str, maps: Mapping[str, Any],
           notes: Mapping[str, Any], at: Any) -> dict[str, Any]:
    """The page entry of ``e`` (``at`` picks a slice of the maps)."""
    ref = group.ref
    b = e.input
    record = ref.units[b][e.units[0]]
    p = record.class_probabilities(ref.head)
    top = p.topk(min(5, p.shape[0]))
    classes = [int(ref.targets[b, u]) for u in e.units]
    probabilities = ref.target_probabilities[b, list(e.units)].tolist()
    out = entry(eid, image, title, classes, probabilities,
                {m: fit(at(_stack(group.results[m], v, b, e.units, e.keys))).numpy() for m, v in maps.items()},
                top=list(zip(top.indices.tolist(), top.values.tolist(), strict=True)), keys=e.keys,
                notes={m: _stack(group.results[m], v, b, e.units, e.keys).numpy() for m, v in notes.items()
                       if v is not None},
                default=e.default)
    words = group.words[b] if len(group.words) > b else None
    if words is not None:  # the same targets and contrasts on the prompt's words
        tokens, results = words
        out["words"] = {"tokens": tokens, "values": {
            m: _stack(res, {k: w.shown(layer=True).detach().float().cpu() for k, w in res.items()}, 0, e.units,
                      e.keys).numpy().tolist() for m, res in results.items()}}
    return out


def _views(group: PageGroup, e: PageEntry, pixels: torch.Tensor, maps: Mapping[str, Any], notes: Mapping[str, Any],
           images: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """A volume's (clip's) entry on each shown slice (frame), a slider between them: its unit drawn there."""
    from ..viz.views import evenly

    ref = group.ref
    b, number = e.input, group.first + e.input
    depth = pixels.shape[1]
    chosen = evenly(depth, MAX_VIEWS)
    record = ref.units[b][e.units[0]]
    for i, d in enumerate(chosen):
        where = f"{group.view} {d + 1} of {depth}"
        images.setdefault(f"i{number}_{d}", image_entry(pixels[:, d], f"{group.names[b]}: {where}"))
        # an input's entry is named as the input (a clip's, a scan's classes), a unit's by its own title (a region)
        title = f"{e.title}: {where}" if e.title == group.names[b] else f"{e.title}, {where}"
        out = _entry(group, e, f"{e.eid}_{d}", f"i{number}_{d}", title, maps, notes, lambda t, d=d: t[..., d, :, :])
        shown = record.viewed(lambda m, d=d: m[d]).page(*pixels.shape[-2:], False)
        if shown:
            out["unit"] = shown
        out["view"] = {"group": "g" + e.eid[1:], "index": i, "count": len(chosen), "label": where}
        entries.append(out)


def page_data(groups: Sequence[PageGroup], title: str, subtitle: str,
              categories: Sequence[str] | None = None) -> dict[str, Any]:
    """The page's data (`classcontrast.explorer.page.page`) for every group's entries; ``categories``: the class
    names (default: the results', else ``class i``)."""
    shown = shown_groups(groups)
    ref = shown[0].ref
    names = list(categories or ref.categories or [f"class {i}" for i in range(ref.logits.shape[-1])])
    images: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    for group in shown:
        more_images, more_entries = _group_entries(group)
        images.update(more_images)
        entries += more_entries
    return {"kind": "explain", "title": title, **({"subtitle": subtitle} if subtitle else {}), "classes": names,
            "images": images, "entries": entries}


def explanations_groups(results: Mapping[str, Explanation]) -> list[PageGroup]:
    """One call's result (its contrasts, for every input and target) as a page group: each input one entry offering
    its targets under the call's contrasts, in the call's order."""
    first = next(iter(results.values()))
    entries = []
    for b in range(first.targets.shape[0]):
        keys = tuple(dict.fromkeys(f"foil:{int(e.foils[b])}" if e.foils is not None else k
                                   for k, e in results.items()))
        entries.append(PageEntry(f"e{b}", b, tuple(range(first.targets.shape[1])), keys,
                                 (int(first.targets[b, 0]), keys[0]), f"image {b}"))
    return [PageGroup({first.method: results}, tuple(entries), tuple(f"image {b}" for b in range(len(entries))))]


__all__ = ["MAX_VIEWS", "PageEntry", "PageGroup", "explanations_groups", "page_data", "shown_groups"]
