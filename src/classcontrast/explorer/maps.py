"""The explorer's maps: every method's maps of some targets under some contrasts, at the stored
resolution, with their sign notes (shared by the image, region and object pages)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..engine import explain
from ..errors import ClassContrastWarning
from ..methods import options_for
from .encode import fit


def grid(model: Any, x: torch.Tensor, methods: Sequence[str], contrasts: Sequence[Any], targets: Any,
         head: str | None = None, at_input: bool = False,
         **options: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
    """Per method the maps (B, L, M, h, w) of ``targets`` under ``contrasts`` at the stored resolution
    and the (B, L, M) sign notes, with the last method's result (one `explain` call per method; "t
    rather than t" is part of a grid on purpose, so its warning is not shown); ``head``: as for `explain`;
    ``at_input``: the maps at the input's resolution, every spatial dimension (a volume, shown a slice at a time)."""
    out, notes, res = {}, {}, None
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClassContrastWarning)
            res = explain(model, x, method, list(contrasts), targets, head=head, **options_for(method, options))
        maps = torch.stack([e.shown(layer=not at_input) for e in res.values()], 2).detach().float().cpu()
        out[method] = maps if at_input else fit(maps)
        notes[method] = torch.stack([e.disagreeing() for e in res.values()], 2).cpu()  # type: ignore[misc]
    assert res is not None, "no method given"
    return out, notes, res
