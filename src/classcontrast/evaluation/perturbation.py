r"""Gradient-sign input perturbation (paper §5.1; study Figures 1–2), with the corrected equations:

$$x^{n+1} = \operatorname{clamp}\big(x^n + \alpha\,\operatorname{sign}(\phi^t(x^n)),\
\max(x^0-\epsilon, 0),\ \min(x^0+\epsilon, 1)\big),\qquad \alpha = \epsilon / n_{tot}$$

in pixel space [0, 1], the model's normalisation inside the forward pass, $\phi^t$ the input
gradient of the contrast's objective for the ground-truth target, recomputed at every iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..contrasts import get_contrast
from ..data.sources import SampleSource
from ..distributed import Dist
from ..engine import explain
from ..errors import ClassContrastError
from ..models import ModelBundle
from ..state import predict
from .runner import batches, mean, run_setup, sample_log, write_table

CONTRASTS = ("weighted", "original", "mean", "max")
EPSILONS = (1e-3, 3e-3)
STEPS = (1, 2, 10)


def clamp_box(x: Tensor, x0: Tensor, epsilon: float) -> Tensor:
    """Project onto $[\\max(x^0-\\epsilon, 0), \\min(x^0+\\epsilon, 1)]$."""
    return torch.minimum(torch.maximum(x, (x0 - epsilon).clamp_min(0)), (x0 + epsilon).clamp_max(1))


def perturb(pixel_model: nn.Module, x0: Tensor, targets: Tensor, contrast: Any, epsilon: float, steps: int) -> Tensor:
    """``steps`` signed-gradient ascent steps of size ε/steps on the contrast's objective for ``targets``
    (one class per image), starting from ``x0`` in [0, 1]; returns the perturbed images."""
    if steps < 1 or epsilon < 0:
        raise ClassContrastError(f"need steps >= 1 and epsilon >= 0, got steps={steps}, epsilon={epsilon}")
    alpha = epsilon / steps
    x = x0
    for _ in range(steps):
        g = explain(pixel_model, x, "gradient", contrast, targets, keep_channels=True).maps[:, 0]
        x = clamp_box(x + alpha * g.sign(), x0, epsilon)
    return x


def measure(pixel_model: nn.Module, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image: correct (0/1), logit y_t and probability p_t of the label."""
    y = predict(pixel_model, x).double()
    yt = y.gather(1, labels[:, None])[:, 0]
    pt = torch.softmax(y, 1).gather(1, labels[:, None])[:, 0]
    return (y.argmax(1) == labels).double(), yt, pt


def run_perturbation(
    bundle: ModelBundle,
    source: SampleSource,
    contrasts: Sequence[str] = CONTRASTS,
    epsilons: Sequence[float] = EPSILONS,
    steps: Sequence[int] = STEPS,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    log_path: Path | None = None,
    progress: Any = None,
    shard: Dist | None = None,
) -> list[dict[str, Any]]:
    """Run the grid contrasts × ε × steps; per-sample rows go to ``log_path`` (resumable).

    Returns one summary record per (contrast, ε, steps): ``contrast, epsilon, steps, n,
    clean_accuracy, clean_logit, clean_probability, delta_accuracy, delta_logit, delta_probability``,
    means over samples (each sample weighs the same, whatever the batch).
    """
    for c in contrasts:
        get_contrast(c)
    model = bundle.pixel_model()
    grid = [(c, float(e), int(n)) for c in contrasts for e in epsilons for n in steps]
    shard = shard or Dist()
    with sample_log(log_path, ("id", "contrast", "epsilon", "steps"), shard, run_setup(bundle), source,
                    batch_size) as log:
        def done(ids: list[str], config: tuple[str, float, int]) -> bool:
            c, e, n = config
            return all(log.has(id=i, contrast=c, epsilon=e, steps=n) for i in ids)

        for batch in batches(source, bundle, batch_size, device, skip=lambda ids: all(done(ids, g) for g in grid),
                             shard=shard):
            clean = measure(model, batch.pixels, batch.labels)
            for c, e, n in grid:
                if done(batch.ids, (c, e, n)):
                    continue
                # the whole batch, always: results never depend on what an interrupted run had finished
                x = perturb(model, batch.pixels, batch.labels, c, e, n)
                after = measure(model, x, batch.labels)
                log.add(
                    {"id": sid, "label": int(batch.labels[i]), "label_predicted": batch.predicted[i],
                     "contrast": c, "epsilon": e, "steps": n,
                     "clean_correct": float(clean[0][i]), "clean_logit": float(clean[1][i]),
                     "clean_probability": float(clean[2][i]),
                     "correct": float(after[0][i]), "logit": float(after[1][i]), "probability": float(after[2][i])}
                    for i, sid in enumerate(batch.ids)
                )
            if progress is not None:
                progress(len(batch.ids))
    return summarize(log.rows, grid)


def summarize(rows: list[dict[str, Any]], grid: Sequence[tuple[str, float, int]]) -> list[dict[str, Any]]:
    """Per-configuration means of the per-sample rows."""
    out = []
    for c, e, n in grid:
        rs = [r for r in rows if r["contrast"] == c and r["epsilon"] == e and r["steps"] == n]
        out.append({
            "contrast": c, "epsilon": e, "steps": n, "n": len(rs),
            "clean_accuracy": mean(r["clean_correct"] for r in rs),
            "clean_logit": mean(r["clean_logit"] for r in rs),
            "clean_probability": mean(r["clean_probability"] for r in rs),
            "delta_accuracy": mean(r["correct"] - r["clean_correct"] for r in rs),
            "delta_logit": mean(r["logit"] - r["clean_logit"] for r in rs),
            "delta_probability": mean(r["probability"] - r["clean_probability"] for r in rs),
        })
    return out


def write_perturbation(records: list[dict[str, Any]], out: Path, title: str = "") -> list[Path]:
    """``perturbation.json``, ``perturbation.csv`` and the study-style bar chart(s)."""
    from .plots import perturbation_chart

    paths = write_table(records, out, "perturbation")
    for eps in sorted({r["epsilon"] for r in records}):
        path = out / f"perturbation_eps{eps:g}.png"
        perturbation_chart([r for r in records if r["epsilon"] == eps], path, f"{title} ε = {eps:g}".strip())
        paths.append(path)
    return paths
