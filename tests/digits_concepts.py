"""The trained check of contrastive concepts on scikit-learn's digits (the small CNN of `tests.digits`): for "3 rather
than 8", where the top concepts' conditional heatmaps lie against where the two digits differ, and what the atlas'
reference crops of those concepts show. Used by tests/test_concepts.py and docs/scripts/digits_concepts.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import classcontrast as cc
from classcontrast.crp.atlas import AtlasRequest, build_atlas

from .digits import train_digits

LAYER = "features.5"  # the second conv block's ReLU: 32 channels at 8 × 8
A, B = 3, 8


def difference_mask(source: Any, quantile: float = 0.75) -> torch.Tensor:
    """(8, 8) True where the mean held-out 3 and the mean held-out 8 differ most (the top quarter of |m3 − m8|)."""
    def mean(label: int) -> torch.Tensor:
        return torch.stack([torch.from_numpy(np.asarray(s.load(), dtype=np.float64) / 255)
                            for s in source if s.label == label]).mean(0)

    diff = (mean(A) - mean(B)).abs()
    return diff >= diff.flatten().quantile(quantile)


def concentration(heatmaps: torch.Tensor, mask: torch.Tensor) -> float:
    """The share of the heatmaps' positive mass inside ``mask`` divided by the mask's share of the pixels (1: no
    preference; above 1: the evidence lies where the digits differ), averaged over heatmaps (…, 8, 8)."""
    pos = heatmaps.clamp_min(0).flatten(0, -3)
    inside = (pos * mask).flatten(1).sum(1) / pos.flatten(1).sum(1).clamp_min(1e-12)
    return float(inside.mean() / mask.double().mean())


def check(seed: int, out: Path, top: int = 3, references: int = 8) -> dict[str, float]:
    """For one training seed, on the held-out 3s: the concentration of the top concepts' heatmaps under "3 rather
    than 8", of the channels ranked 11th to 22nd (the middle of the 32) and of the last three, of the top concepts
    under "3" alone (original) and of the 3s' own ink; and the share of 3s and 8s among the atlas' references."""
    bundle, source = train_digits(seed=seed)
    mask = difference_mask(source)
    threes = [s for s in source if s.label == A]
    x = torch.stack([s.prepared(bundle.transform) for s in threes])
    ranked = cc.concepts(bundle, x, cc.Foil(B), A, layer=LAYER, method="lrp", top=32).heatmaps.double()
    original = cc.concepts(bundle, x, "original", A, layer=LAYER, method="lrp", top=top).heatmaps.double()
    ink = torch.stack([torch.from_numpy(np.asarray(s.load(), dtype=np.float64) / 255) for s in threes])
    out_ = {"rather than 8": concentration(ranked[:, :, :top], mask),
            "middle": concentration(ranked[:, :, 10:22], mask), "last": concentration(ranked[:, :, -top:], mask),
            "original": concentration(original, mask), "ink": concentration(ink[:, None], mask)}
    path = build_atlas(bundle, source, AtlasRequest(A, cc.Foil(B), LAYER, "lrp", top, references, 0.5, 64,
                                                    {"seed": seed}), out, report=lambda line: None)
    import json

    refs = [r for c in json.loads(path.read_text())["concepts"] for r in c["references"]]
    out_["references 3 or 8"] = sum(r["label"] in (A, B) for r in refs) / len(refs)
    out_["references 3"] = sum(r["label"] == A for r in refs) / len(refs)
    return out_
