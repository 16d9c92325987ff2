"""``classcontrast audit DATA --out DIR``: the model's confusions across a dataset, as files and a page."""

from __future__ import annotations

from pathlib import Path

import typer

from . import method_flags as flags
from .common import console, shard_progress
from .evaluate_cmd import BATCH, DEVICE, LIMIT, MODEL, NUM_CLASSES, PREPROCESS, SEED, TRUST, WEIGHTS, setup_run
from .options import METHODS_HELP, split_values


def audit_command(
    data: list[str] = typer.Argument(None, help="Class folders, a flat folder (no labels), imagenet:ROOT, "
                                     "cub200:ROOT, food101:ROOT, or image files. None: the bundled photos"),
    out: Path = typer.Option(Path("audit"), help="Output folder (re-running it resumes)"),
    model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    pairs: int = typer.Option(12, help="How many confused pairs to show"),
    examples: int = typer.Option(6, help="Images per pair (mistakes, and as many correct ones)"),
    top_k: int = typer.Option(3, "--top-k", help="Top classes offered in the explorer besides the pair"),
    layer: str = typer.Option(None, help="Layer for CAM methods (module name)"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
    steps: int = flags.STEPS, baseline: str = flags.BASELINE, integration: str = flags.INTEGRATION,
    samples: int = flags.SAMPLES, sigma: float = flags.SIGMA, squared: bool = flags.SQUARED,
    internal_batch_size: int = flags.INTERNAL_BATCH_SIZE, composite: str = flags.COMPOSITE,
    canonizer: str = flags.CANONIZER, discard_ratio: float = flags.DISCARD_RATIO, abs_: bool = flags.ABS,
) -> None:
    """Audit the model's confusions: "why A and not B" for the most confused pairs, in audit.html."""
    from ..confusion import audit
    from ..confusion.run import check_counts
    from ..distributed import local_device, setup

    methods = split_values(method)
    given = flags.method_flags(methods, steps=steps, baseline=baseline, integration=integration, samples=samples,
                         sigma=sigma, squared=squared, internal_batch_size=internal_batch_size, composite=composite,
                         canonizer=canonizer, discard_ratio=discard_ratio, abs=abs_)
    shard = setup(device)
    check_counts(pairs, examples, top_k)  # before the model loads
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, local_device(device), preprocess,
                                    out, trust_remote_code, batch_size)

    with shard_progress(shard) as progress:
        result = audit(bundle, source, out, methods, pairs=pairs, examples=examples, top_k=top_k,
                       batch_size=batch_size, device=dev, seed=None, shard=shard, progress=progress, layer=layer,
                       **given)
    if not shard.main:
        return
    acc = "" if result.accuracy is None else f", accuracy {result.accuracy:.3f}"
    console.print(f"{result.n} images{acc}; {len(result.pairs)} confused pairs shown")
    for i, p in enumerate(result.pairs[:5], 1):
        arrow = "taken for" if result.labelled else "or"
        console.print(f"  {i}. {result.classes[p.true]} {arrow} {result.classes[p.predicted]}: {p.count}")
    for path in result.paths:
        console.print(f"wrote {path}")
