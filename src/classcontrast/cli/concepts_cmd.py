"""``classcontrast concepts DATA --target A --foil B --layer L --out DIR``: the concept atlas of a dataset — the
layer's channels that most make the model say A rather than B, and the images and crops where each is most relevant
(`classcontrast.crp.atlas`), as ``atlas.json`` and ``atlas.html``. Every image's relevance is computed here or in Ray
workers (``--engine ray``); resumable: a run started again with the same folder computes only the images no part
holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ..errors import ClassContrastError
from . import engine_opts
from .checks import check_number
from .common import console
from .engine_opts import CONCURRENCY, ENGINE, NUM_GPUS, RAY_ADDRESS
from .evaluate_cmd import BATCH, DEVICE, LIMIT, MODEL, NUM_CLASSES, PREPROCESS, SEED, SPLIT, TRUST, WEIGHTS, setup_run
from .explain_concepts import CONCEPT_METHODS


def _concepts(
    data: list[str] = typer.Argument(None, help="Class folders, a labels.csv, a datasets folder, imagenet:ROOT... "
                                     "(as for audit); none: the bundled photos"),
    target: str = typer.Option(None, help="Class A (index or name): why A"),
    foil: str = typer.Option(None, help="Class B (index or name): why A rather than B (the contrast foil:B)"),
    contrast: str = typer.Option(None, help="Another contrast instead of --foil (weighted, max, mean, original, "
                                 "probability); default weighted without --foil"),
    audit: Path = typer.Option(None, help="An audit folder: its most confused pair as A rather than B (the "
                               "prediction rather than the label)"),
    layer: str = typer.Option(None, help="The layer whose channels are the concepts (a module name); default: the "
                              "model's CAM layer"),
    method: str = typer.Option("lrp", help="lrp (relevance through zennit's rules) | gradcam (weighted activations)"),
    concepts: int = typer.Option(6, help="How many concepts to show"),
    references: int = typer.Option(8, help="Reference images per concept (where it is most relevant)"),
    crop: float = typer.Option(0.5, help="The crops' side, a fraction of the image's"),
    out: Path = typer.Option(Path("concepts"), help="Output folder (re-running it resumes)"),
    engine: str = ENGINE, ray_address: str = RAY_ADDRESS, concurrency: int = CONCURRENCY,
    num_gpus_per_worker: float = NUM_GPUS,
    model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE,
    split: str = SPLIT, preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
) -> None:
    """The concept atlas: which learned concepts make it A rather than B, and where (atlas.html)."""
    if method not in CONCEPT_METHODS:
        raise ClassContrastError(f"unknown --method {method!r}; choose {' or '.join(CONCEPT_METHODS)}")
    for value, option in ((concepts, "--concepts"), (references, "--references")):
        check_number(value, option, minimum=1)
    check_number(crop, "--crop", minimum=0.05, maximum=1)
    if audit is not None:
        target, foil = _audit_pair(audit)
    if target is None:
        raise ClassContrastError("concepts: give --target A (and --foil B), or --audit DIR")
    if foil is not None and contrast is not None:
        raise ClassContrastError("give --foil or --contrast, not both")
    from ..crp.atlas import build_atlas
    from ..crp.page import write_atlas_page
    from ..distributed import local_device
    from ..scale.run import need_pyarrow

    need_pyarrow("concepts")  # before any work: one line
    on = engine_opts.workers(engine, ray_address, concurrency, num_gpus_per_worker)
    on.start()  # Ray joined before the model loads: one line without Ray
    bundle, source, _ = setup_run(data, model, weights, num_classes, limit, seed, local_device(device), preprocess,
                                  out, trust_remote_code, batch_size)
    req = _request(bundle, target, foil, contrast, layer, method, (concepts, references, crop, batch_size),
                   {"model": model, "weights": weights, "preprocess": preprocess})
    path = build_atlas(bundle, source, req, out, report=lambda line: console.print(f"[yellow]{line}[/]"), workers=on)
    console.print(f"wrote {path}")
    console.print(f"wrote {write_atlas_page(path)}")


def _audit_pair(folder: Path) -> tuple[str, str]:
    """The most confused pair of an audit: (what was predicted, what it should have been), as class indices."""
    try:
        first = json.loads((folder / "audit.json").read_text())["pairs"][0]
    except FileNotFoundError as e:
        raise ClassContrastError(f"--audit {folder}: no audit.json (run classcontrast audit first)") from e
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ClassContrastError(f"--audit {folder}: audit.json holds no confused pair") from e
    if "predicted_index" in first:
        return str(first["predicted_index"]), str(first["true_index"])
    if "first_index" in first:
        return str(first["first_index"]), str(first["second_index"])
    raise ClassContrastError(f"--audit {folder}: its pairs are not a classifier's (A, B)")


def _request(bundle: Any, target: str, foil: str | None, contrast: str | None, layer: str | None, method: str,
             numbers: tuple[int, int, float, int], settings: dict[str, Any]) -> Any:
    """The atlas' request: the classes resolved with the model's names, the layer (default: the model's)."""
    from ..classes import class_index
    from ..contrasts import Foil, get_contrast
    from ..crp.atlas import AtlasRequest

    a = class_index(target, bundle.categories, "--target")
    chosen = Foil(class_index(foil, bundle.categories, "--foil")) if foil is not None else \
        get_contrast(contrast or "weighted")
    where = layer or getattr(bundle, "layer", None)
    if where is None:
        raise ClassContrastError("concepts: give --layer (a module name: classcontrast models lists the model's)")
    concepts, references, crop, batch = numbers
    return AtlasRequest(a, chosen, where, method, concepts, references, crop, batch, settings)


concepts_command = _concepts

__all__ = ["concepts_command"]
