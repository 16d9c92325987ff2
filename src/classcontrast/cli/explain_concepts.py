"""``classcontrast explain --concepts N``: beside each input's figure, a figure of the N concepts (channels of the
layer) most relevant to each explained target under each asked contrast — the same targets and contrasts as the
maps (`classcontrast.crp`). Torch is imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import output_path

CONCEPT_METHODS = ("lrp", "gradcam")


def concept_paths(out: Path, positions: list[int], names: list[str], count: int) -> list[Path]:
    """The concepts' figures: ``<out stem>_concepts<suffix>`` (one input), else one per input beside the maps'."""
    return [output_path(out, at, name, count, "concepts") for at, name in zip(positions, names, strict=True)]


def write_concepts(bundle: Any, contrasts: list[Any], columns: dict[tuple[str, str], list[Any]], inputs: list[Any],
                   pixels: list[Any], names: list[str], paths: list[Path], *, top: int, method: str,
                   layer: str | None) -> list[Path]:
    """Explain each batch's explained targets by their concepts and draw one figure per input; returns the files."""
    from ..crp import concepts
    from ..layers import default_feature_layer
    from ..viz.concepts import plot_concepts

    first = next(iter(columns.values()))  # (a model other than a classifier is refused by concepts: one line)
    written, at = [], 0
    for x, ex in zip(inputs, first, strict=True):
        where = layer or getattr(bundle, "layer", None) or default_feature_layer(bundle.model, x)
        found = concepts(bundle, x, list(contrasts), ex.targets, layer=where, method=method, top=top)
        for i in range(x.shape[0]):
            one = {key: c[i] for key, c in found.items()}
            plot_concepts([pixels[at]], one, bundle.categories, titles=[names[at]], path=paths[at])
            written.append(paths[at])
            at += 1
    return written


__all__ = ["CONCEPT_METHODS", "concept_paths", "write_concepts"]
