"""``classcontrast explain-dataset``: every image of a dataset explained into a folder of Parquet parts (one schema,
one row per image, unit, target, contrast and method), resumable, on the local engine or Ray
(`classcontrast.scale.run`). The command only declares its options and parses them; no torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import manifest
from .engine_opts import CONCURRENCY, ENGINE, NUM_GPUS, RAY_ADDRESS
from .method_flags import with_method_options
from .options import CONTRASTS_HELP, METHODS_HELP, check_names, method_names, split_values

DATA_HELP = ("Images: a folder (class folders give labels), files, a labels.csv, a datasets folder (save_to_disk "
             "or the hub's Parquet), imagenet:ROOT, cub200:ROOT or food101:ROOT; none: the bundled photos")


def _explain_dataset(
    data: list[str] = typer.Argument(None, help=DATA_HELP),
    out: Path = typer.Option(..., help="The folder of Parquet parts (created; a run started again with it adds only "
                             "what is missing)"),
    model: str = typer.Option(manifest.DEFAULT_MODEL, help="The model (classcontrast models: the sources)"),
    weights: str = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path"),
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    contrast: list[str] = typer.Option(None, "--contrast", "--contrasts", help=f"{CONTRASTS_HELP} (default: "
                                       "original weighted)"),
    foil: list[str] = typer.Option(None, "--foil", help="Add 'target rather than FOIL' (class names or indices)"),
    target: list[str] = typer.Option(None, help="Explain these classes (index or name) instead of --top-k"),
    top_k: int = typer.Option(None, "--top-k", help="Explain the k first units of the model's kind (default 1)"),
    maps: str = typer.Option("input", help="input (at the model's input size) | layer | none"),
    map_dtype: str = typer.Option("float32", help="float32 | float16"),
    engine: str = ENGINE, ray_address: str = RAY_ADDRESS, concurrency: int = CONCURRENCY,
    num_gpus_per_worker: float = NUM_GPUS,
    split: str = typer.Option(None, help="A datasets folder's split (default: its only one)"),
    batch_size: int = typer.Option(8, help="Images per batch (a block of rows, a Parquet part)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and warnings"),
    **options: Any,
) -> None:
    """Explain every image of a dataset into Parquet (one row per image, unit, target, contrast, method)."""
    from .checks import check_number
    from .common import console

    methods = method_names(method)
    contrasts = split_values(contrast) or ["original", "weighted"]
    check_names(contrasts=contrasts)
    for value, option in ((top_k, "--top-k"), (concurrency, "--concurrency"), (batch_size, "--batch-size")):
        check_number(value, option, minimum=1)
    check_number(num_gpus_per_worker, "--num-gpus-per-worker", minimum=0)
    console.quiet = quiet
    from .dataset_run import run_dataset

    run_dataset(data=list(data or []), out=out, model=model, weights=weights, methods=methods, contrasts=contrasts,
                foils=split_values(foil), targets=split_values(target), top_k=top_k, maps=maps, map_dtype=map_dtype,
                engine=engine, ray_address=ray_address, concurrency=concurrency,
                num_gpus_per_worker=num_gpus_per_worker, batch_size=batch_size, options=options, split=split)


explain_dataset_command = with_method_options(_explain_dataset)

__all__ = ["explain_dataset_command"]
