r"""Class sensitivity (CASE, arXiv 2506.07327): does a method's map change when the class asked changes?

For each image, the maps of its top classes $t_1, \dots, t_k$ under one method and contrast are compared with the
map of $t_1$: Spearman's rank correlation $\rho_j$ over positions and the overlap of their top positions
$o_j = |T_1 \cap T_j| / |T_1|$ ($T$: the ``top`` share of positions with the largest values). Per image,

$$\text{sensitivity} = 1 - \frac{1}{k-1}\sum_{j \ge 2} \rho_j, \qquad
\text{top\_overlap} = \frac{1}{k-1}\sum_{j \ge 2} o_j,$$

0 and 1 for a class-blind method (the same map whatever is asked), near 1 and 0 for maps that follow the class.
With a foil contrast the target stays $t_1$ and the foil changes: "$t_1$ rather than $t_2$" against "$t_1$ rather
than $t_j$". Two constant maps correlate 1 when equal, else 0 (Spearman's ρ is undefined for them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ClassContrastError

TOP = 0.1  # the share of positions counted as a map's top


@dataclass(frozen=True)
class ClassSensitivity:
    """`class_sensitivity`'s result: per image (B,) ``sensitivity`` and ``top_overlap``, their means, and the
    per-class terms ``rho`` and ``overlap`` (B, k - 1) against the top-1's map."""

    method: str
    contrast: str
    classes: Tensor  # (B, k) the top classes compared
    rho: Tensor
    overlap: Tensor
    sensitivity: Tensor
    top_overlap: Tensor

    @property
    def mean_sensitivity(self) -> float:
        return float(self.sensitivity.mean())

    @property
    def mean_top_overlap(self) -> float:
        return float(self.top_overlap.mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of two flat maps (ties ranked by their mean rank); constant maps: 1 when equal, else 0."""
    from scipy.stats import rankdata

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def top_share(a: np.ndarray, b: np.ndarray, top: float = TOP) -> float:
    """The share of ``a``'s top positions (the ``top`` share with the largest values, ties by place) among ``b``'s."""
    n = max(1, round(top * a.size))
    first = set(np.argsort(-a, kind="stable")[:n].tolist())
    return len(first & set(np.argsort(-b, kind="stable")[:n].tolist())) / n


def _maps(model: Any, x: Tensor, method: str, contrasts: Sequence[Any], classes: Tensor, options: dict[str, Any]
          ) -> list[Tensor]:
    """Per contrast, (B, k', *S) the maps compared: each top class's (k' = k), or for a foil t_1 rather than each
    other class (k' = k - 1). The contrasts without a foil share one call (one forward pass, shared backward passes)."""
    from ..contrasts import Foil
    from ..engine import explain

    plain = [c for c in contrasts if not isinstance(c, Foil)]
    shared = explain(model, x, method, plain, classes, **options) if plain else {}
    out = []
    for c in contrasts:
        if isinstance(c, Foil):
            foils = [Foil(classes[:, j]) for j in range(1, classes.shape[1])]
            got = explain(model, x, method, foils, classes[:, :1], **options)
            out.append(torch.cat([ex.maps for ex in got.values()], 1))
        else:
            out.append(shared[c].maps)
    return out


def class_sensitivity(model: Any, x: Tensor, method: str = "gradcam", contrast: Any = "original", *, k: int = 5,
                      top: float = TOP, **options: Any) -> ClassSensitivity:
    """How much ``method``'s map under ``contrast`` changes with the class asked, on the inputs ``x`` (module
    docstring): each image's top ``k`` classes by the model's logits (a foil contrast compares "t_1 rather than t_j"
    for j = 2..k, so ``k`` ≥ 3 then)."""
    return class_sensitivities(model, x, method, [contrast], k=k, top=top, **options)[0]


def class_sensitivities(model: Any, x: Tensor, method: str, contrasts: Sequence[Any], *, k: int = 5, top: float = TOP,
                        logits: Tensor | None = None, **options: Any) -> list[ClassSensitivity]:
    """`class_sensitivity` of several contrasts of one method from one forward pass for the top classes (none when the
    caller has the model's plain ``logits`` for ``x``: `classcontrast.state.predict`'s) and one `explain` call for the
    contrasts without a foil (a foil's maps: a call of their own)."""
    from ..contrasts import Foil, get_contrast
    from ..engine import unwrap_model
    from ..state import predict

    asked = [get_contrast(c) for c in contrasts]
    foil = any(isinstance(c, Foil) for c in asked)
    if k < (3 if foil else 2):
        raise ClassContrastError(f"class_sensitivity needs k >= {3 if foil else 2} (compared maps), got {k}")
    if not 0 < top <= 1:
        raise ClassContrastError(f"class_sensitivity(top=...) is a share of positions in (0, 1], got {top}")
    y = logits if logits is not None else predict(unwrap_model(model), x)
    classes = y.detach().topk(min(k, y.shape[1]), dim=1).indices
    out = []
    for c, got in zip(asked, _maps(model, x, method, asked, classes, options), strict=True):
        maps = got.detach().double().cpu().flatten(2).numpy()
        rho = torch.tensor([[spearman(m[0], m[j]) for j in range(1, m.shape[0])] for m in maps], dtype=torch.float64)
        overlap = torch.tensor([[top_share(m[0], m[j], top) for j in range(1, m.shape[0])] for m in maps],
                               dtype=torch.float64)
        name = c.key(getattr(model, "categories", None))
        out.append(ClassSensitivity(method, name, classes.cpu(), rho, overlap, 1 - rho.mean(1), overlap.mean(1)))
    return out


def run_class_sensitivity(bundle: Any, source: Any, methods: Sequence[str], contrasts: Sequence[str], *, k: int = 5,
                          top: float = TOP, batch_size: int = 16, device: Any = "cpu",
                          method_options: dict[str, Any] | None = None,
                          tick: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """`class_sensitivity` of every method × contrast over a source's images, batch by batch: one row per pair with
    the images, the mean sensitivity and top-pixel overlap, and the share of images whose sensitivity is below 0.1
    (nearly class-blind). ``method_options``: options meant for several methods, each method taking its own."""
    from ..methods import options_for
    from .runner import batches

    got: dict[tuple[str, str], list[ClassSensitivity]] = {(m, c): [] for m in methods for c in contrasts}
    for batch in batches(source, bundle, batch_size, device):
        x = bundle.normalize(batch.pixels)
        for m in methods:
            options = options_for(m, method_options or {})
            for c, one in zip(contrasts, class_sensitivities(bundle, x, m, contrasts, k=k, top=top, **options),
                              strict=True):
                got[(m, c)].append(one)
        if tick is not None:
            tick(len(batch.ids))
    rows = []
    for (m, c), parts in got.items():
        sens = torch.cat([p.sensitivity for p in parts])
        rows.append({"method": m, "contrast": parts[0].contrast if parts else c, "images": len(sens),
                     "sensitivity": float(sens.mean()), "top_overlap": float(torch.cat([p.top_overlap for p in
                                                                                        parts]).mean()),
                     "class_blind_share": float((sens < 0.1).double().mean())})
    return rows


def write_class_sensitivity(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``class_sensitivity.csv`` and ``class_sensitivity.md`` (the table as printed) in ``out``."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "class_sensitivity.csv", out / "class_sensitivity.md"]
    with open(paths[0], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths[1].write_text(markdown_table(rows) + "\n", encoding="utf-8")
    return paths


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Method × contrast: mean sensitivity, top-pixel overlap, share of nearly class-blind images."""
    from .runner import markdown_rows

    return markdown_rows([["method", "contrast", "images", "sensitivity", "top overlap", "class-blind share"]] + [
        [r["method"], r["contrast"], str(r["images"]), f"{r['sensitivity']:.3f}", f"{r['top_overlap']:.3f}",
         f"{r['class_blind_share']:.2f}"] for r in rows])


__all__ = [
    "TOP",
    "ClassSensitivity",
    "class_sensitivities",
    "class_sensitivity",
    "markdown_table",
    "run_class_sensitivity",
    "spearman",
    "top_share",
    "write_class_sensitivity",
]
