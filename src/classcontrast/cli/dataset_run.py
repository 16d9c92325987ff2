"""What ``explain-dataset`` does once parsed: its request, the run, one line of what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import console


def run_dataset(*, data: list[str], out: Path, model: str, weights: str, methods: list[str], contrasts: list[str],
                foils: list[str], targets: list[str], top_k: int | None, maps: str, map_dtype: str, engine: str,
                ray_address: str | None, concurrency: int, num_gpus_per_worker: float, batch_size: int,
                options: dict[str, Any], split: str | None = None) -> None:
    """Explain the data into ``out`` (`classcontrast.scale.run.explain_dataset`) and say what was done."""
    from ..scale.run import DatasetRequest, explain_dataset
    from ..text import count
    from .method_flags import method_flags

    given = method_flags(methods, options)
    spec: Any = list(targets) or None  # classes for every image, by name or index (resolved by explain)
    req = DatasetRequest(model=model, data=data or None, out=out, methods=methods,
                         contrasts=[*contrasts, *(f"foil:{f}" for f in foils)], targets=spec, maps=maps,
                         map_dtype=map_dtype, options=given, engine=engine, ray_address=ray_address,
                         concurrency=concurrency, num_gpus_per_worker=num_gpus_per_worker, batch_size=batch_size,
                         weights=None if weights.lower() == "none" else weights, top_k=top_k, split=split)
    done = explain_dataset(req, report=lambda line: console.print(line))
    before = f" ({done.before} done before)" if done.before else ""
    skipped = f"; {len(done.skipped)} skipped" if done.skipped else ""
    console.print(f"explained {count(done.explained, 'image')} into {count(len(done.parts), 'Parquet part')} under "
                  f"{out}{before}{skipped}")


__all__ = ["run_dataset"]
