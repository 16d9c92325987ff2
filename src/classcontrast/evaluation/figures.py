"""Figures of maps (paper Figures 4–5, study Figures 3–5), built on the public API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.sources import SampleSource
from ..engine import explain
from ..methods import options_for
from ..methods.transformer import transformer_blocks
from ..models import ModelBundle
from ..state import predict
from ..targets import TopK
from ..viz import plot_explanations
from .runner import batches

CNN_METHODS = ("gradcam", "linear_approx", "xgradcam")


def is_transformer(model: torch.nn.Module) -> bool:
    try:
        transformer_blocks(model)
    except ValueError:
        return False
    return True


def select(bundle: ModelBundle, source: SampleSource, k: int, threshold: float, limit: int,
           batch_size: int, device: Any) -> tuple[list[str], torch.Tensor]:
    """The first ``limit`` images whose k-th most probable class has p > threshold (pixels in [0, 1])."""
    ids, pixels = [], []
    for batch in batches(source, bundle, batch_size, device):
        p = torch.softmax(predict(bundle.model, bundle.normalize(batch.pixels)).double(), 1)
        ok = p.topk(k, 1).values[:, k - 1] > threshold
        for i in ok.nonzero()[:, 0].tolist():
            ids.append(batch.ids[i])
            pixels.append(batch.pixels[i])
        if len(ids) >= limit:
            break
    return ids[:limit], (torch.stack(pixels[:limit]) if pixels else torch.empty(0))


def original_vs_weighted(bundle: ModelBundle, ids: Sequence[str], pixels: torch.Tensor, out: Path,
                         methods: Sequence[str] = CNN_METHODS, layer: str | None = None,
                         scale: str = "map") -> list[Path]:
    """Study Figure 3: original vs weighted maps of t1 and t2, for each method; one PNG per image."""
    paths = []
    for i, sid in enumerate(ids):
        x = bundle.normalize(pixels[i : i + 1])
        cols = {}
        for m in methods:
            opts = options_for(m, {"layer": layer})
            res = explain(bundle, x, m, ["original", "weighted"], TopK(2), **opts)
            cols.update({f"{m} · {c}": e for c, e in res.items()})
        path = out / f"original_vs_weighted_{i:03d}.png"
        plot_explanations(pixels[i : i + 1].cpu(), cols, bundle.categories, scale=scale, titles=[sid], path=path)
        paths.append(path)
    return paths


def mean_max_weighted(bundle: ModelBundle, ids: Sequence[str], pixels: torch.Tensor, out: Path,
                      method: str = "gradcam", layer: str | None = None, scale: str = "map") -> list[Path]:
    """Study Figure 4: original, mean, max and weighted maps for t1, t2, t3; one PNG per image."""
    paths = []
    opts = options_for(method, {"layer": layer})
    for i, sid in enumerate(ids):
        x = bundle.normalize(pixels[i : i + 1])
        res = explain(bundle, x, method, ["original", "mean", "max", "weighted"], TopK(3), **opts)
        path = out / f"mean_max_weighted_{i:03d}.png"
        plot_explanations(pixels[i : i + 1].cpu(), dict(res), bundle.categories, scale=scale, titles=[sid],
                          path=path)
        paths.append(path)
    return paths


def vit_comparison(bundle: ModelBundle, ids: Sequence[str], pixels: torch.Tensor, out: Path,
                   layer: int | str | None = None, contrast: str = "weighted") -> list[Path]:
    """Study Figure 5 layout for a ViT: input | standard | without ReLU | contrastive, for token
    GradCAM and attention rollout, top-2 classes; one PNG per image."""
    paths = []
    for i, sid in enumerate(ids):
        x = bundle.normalize(pixels[i : i + 1])
        cols = {}
        for m, extra in (("vit_gradcam", {"layer": layer}), ("attention_rollout", {})):
            std = explain(bundle, x, m, "original", TopK(2), relu=True, **extra)
            raw = explain(bundle, x, m, ["original", contrast], TopK(2), **extra)
            cols[f"{m} · standard"] = std
            cols[f"{m} · w/o ReLU"] = raw["original"]
            cols[f"{m} · contrastive ({contrast})"] = raw[contrast]
        path = out / f"vit_{i:03d}.png"
        plot_explanations(pixels[i : i + 1].cpu(), cols, bundle.categories, titles=[sid], path=path)
        paths.append(path)
    return paths
