"""Explanation norm against logit (study Figure 6, "dominating classes")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.sources import SampleSource
from ..distributed import Dist
from ..engine import explain
from ..models import ModelBundle
from ..state import predict
from .runner import batches, run_setup, sample_log


def rank_selection(num_classes: int) -> list[int]:
    """Logit ranks to explain: the top and bottom 5% and every 2% in between. For C = 1000 this is the
    study's 145 ranks: 0–49, 50, 70, …, 930, and 950–999."""
    head = max(1, round(0.05 * num_classes))
    step = max(1, round(0.02 * num_classes))
    ranks = [*range(head), *range(head, num_classes - head, step), *range(num_classes - head, num_classes)]
    return sorted(set(ranks))


def run_norm_logit(bundle: ModelBundle, source: SampleSource, batch_size: int = 4,
                   device: torch.device | str = "cpu", log_path: Path | None = None,
                   progress: Any = None, shard: Dist | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """‖∇_x y_t‖₂ (gradient w.r.t. the model input) for the selected logit ranks of every image.

    Returns the per-(image, rank) rows and a summary with the quadratic fit ``norm ≈ a·y² + b·y + c``
    and the ratio of the mean norm of the top class to that of all explained classes.
    """
    ranks = rank_selection(bundle.num_classes)
    shard = shard or Dist()
    with sample_log(log_path, ("id", "rank"), shard, run_setup(bundle), source, batch_size) as log:
        skip = lambda ids: all(log.has(id=i, rank=r) for i in ids for r in ranks)  # noqa: E731
        for batch in batches(source, bundle, batch_size, device, skip=skip, shard=shard):
            x = bundle.normalize(batch.pixels)
            order = predict(bundle.model, x).argsort(1, descending=True)
            targets = order[:, ranks]
            ex = explain(bundle, x, "gradient", "original", targets, keep_channels=True)
            norms = ex.maps.flatten(2).norm(dim=2)  # (B, K)
            logits = ex.logits.gather(1, targets)
            log.add({"id": sid, "rank": r, "class": int(targets[b, j]), "logit": float(logits[b, j]),
                     "norm": float(norms[b, j])}
                    for b, sid in enumerate(batch.ids) for j, r in enumerate(ranks))
            if progress is not None:
                progress(len(batch.ids))
    rows = sorted(log.rows, key=lambda r: (r["id"], r["rank"]))  # one order, however the rows were produced
    y = np.array([r["logit"] for r in rows])
    n = np.array([r["norm"] for r in rows])
    coeffs = np.polyfit(y, n, 2) if len(rows) >= 3 else np.array([np.nan] * 3)
    top = np.array([r["norm"] for r in rows if r["rank"] == 0])
    summary = {"images": len({r["id"] for r in rows}), "ranks_per_image": len(ranks),
               "quadratic_fit": [float(c) for c in coeffs],
               "top_class_norm_over_mean_norm": float(top.mean() / n.mean()) if len(rows) else float("nan")}
    return rows, summary


def write_norm_logit(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> list[Path]:
    import json

    from .plots import norm_logit_chart
    from .runner import write_table

    paths = write_table(rows, out, "norm_logit")
    (out / "norm_logit_summary.json").write_text(json.dumps(summary, indent=2))
    ids = {s: i for i, s in enumerate(dict.fromkeys(r["id"] for r in rows))}
    paths.append(norm_logit_chart(np.array([r["logit"] for r in rows]), np.array([r["norm"] for r in rows]),
                                  np.array([ids[r["id"]] for r in rows]), np.array(summary["quadratic_fit"]),
                                  out / "norm_logit.png"))
    return paths
