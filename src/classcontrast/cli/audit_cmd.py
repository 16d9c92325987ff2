"""``classcontrast audit DATA --out DIR``: the model's confusions across a dataset, as files and a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..text import count, printable
from . import engine_opts
from . import method_flags as flags
from .checks import check_number
from .common import console, progress_tasks, shard_progress
from .engine_opts import CONCURRENCY, ENGINE, NUM_GPUS, RAY_ADDRESS
from .evaluate_cmd import BATCH, DEVICE, LIMIT, MODEL, NUM_CLASSES, PREPROCESS, SEED, SPLIT, TRUST, WEIGHTS, setup_run
from .method_flags import with_method_options
from .options import METHODS_HELP, method_names, split_values


def _audit(
    data: list[str] = typer.Argument(None, help="Class folders, a flat folder (no labels), a labels.csv "
                                     "(path,label;label: multi-label), a datasets folder (save_to_disk or the "
                                     "hub's Parquet), "
                                     "imagenet:ROOT, cub200:ROOT, food101:ROOT, or image files. "
                                     "None: the bundled photos. A segmenter: a mask folder (images/ and masks/ "
                                     "of class ids). A detector: a COCO json (instances.json)"),
    out: Path = typer.Option(Path("audit"), help="Output folder (re-running it resumes)"),
    model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["gradcam"], "--method", "--methods", help=METHODS_HELP),
    pairs: int = typer.Option(12, help="How many confused pairs to show"),
    examples: int = typer.Option(6, help="Images per pair (mistakes, and as many correct ones)"),
    top_k: int = typer.Option(3, "--top-k", help="Top classes offered in the explorer besides the pair"),
    layer: str = typer.Option(None, help="Layer for CAM methods (module name)"),
    ambiguity: float = typer.Option(0.25, help="Without labels: count an image in its top-1 vs top-2 pair only "
                                    "when p(top-2) / p(top-1) is at least this"),
    head: str = typer.Option(None, help="softmax | sigmoid (multi-label: each class its own decision); "
                             "default: the model's"),
    threshold: float = typer.Option(0.5, help="Multi-label: a label counts as predicted when sigma(y) >= this"),
    classes: list[str] = typer.Option(None, "--classes", help="Zero-shot (a CLIP-style model): the class names, "
                                      "put into --template as the prompts"),
    template: str = typer.Option("a photo of a {}.", help="Zero-shot: the prompt, {} marking the class name"),
    prompt: str = typer.Option(None, help="A vision-language model (a folder): the question; its candidate "
                               "answers (--answers) are the classes, the class folders named after them"),
    answers: list[str] = typer.Option(None, "--answers", help="With --prompt: the candidate answers"),
    iou: float = typer.Option(0.5, help="COCO boxes: the IoU at which a detection matches a true box"),
    min_score: float = typer.Option(0.5, "--min-score", help="COCO boxes: the detections counted score this"),
    engine: str = ENGINE, ray_address: str = RAY_ADDRESS, concurrency: int = CONCURRENCY,
    num_gpus_per_worker: float = NUM_GPUS,
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE,
    split: str = SPLIT, preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
    **options: Any,
) -> None:
    """Audit the model's confusions: "why A and not B" for the most confused pairs, in audit.html."""
    methods = method_names(method)  # a misspelling is reported before torch loads
    from ..confusion import audit
    from ..confusion.run import check_counts
    from ..distributed import local_device, setup

    given = flags.method_flags(methods, options)
    shard = setup(device)
    check_counts(pairs, examples, top_k)  # before the model loads
    check_number(ambiguity, "--ambiguity", minimum=0, maximum=1)
    check_number(threshold, "--threshold", minimum=0, maximum=1)
    check_number(iou, "--iou", minimum=0, maximum=1)
    check_number(min_score, "--min-score", minimum=0, maximum=1)
    from ..data.annotated import is_annotated

    on = engine_opts.workers(engine, ray_address, concurrency, num_gpus_per_worker)
    if is_annotated(data):
        on.start()  # Ray joined before the model loads: one line without Ray
        _units(data, out, methods, given, on, pairs=pairs, examples=examples, iou=iou, min_score=min_score,
               model=model, weights=weights, num_classes=num_classes, device=device, preprocess=preprocess,
               trust_remote_code=trust_remote_code, limit=limit, layer=layer)
        return
    on.start()  # Ray joined before the model loads: one line without Ray
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, local_device(device), preprocess,
                                    out, trust_remote_code, batch_size, head, split_values(classes) if classes
                                    else None, template, prompt, split_values(answers) if answers else None, split)

    with shard_progress(shard) as progress:
        result = audit(bundle, source, out, methods, pairs=pairs, examples=examples, top_k=top_k,
                       batch_size=batch_size, device=dev, seed=None, shard=shard, progress=progress, layer=layer,
                       ambiguity=ambiguity, threshold=threshold, workers=on, **given)
    if shard.main:
        _summary(result)


def _units(data: list[str], out: Path, methods: list[str], given: dict[str, Any], workers: Any, *, pairs: int,
           examples: int, iou: float, min_score: float, model: str, weights: str, num_classes: int, device: str,
           preprocess: str, trust_remote_code: bool, limit: int, layer: str | None) -> None:
    """The audit of a segmenter on a mask folder or of a detector on a COCO json
    (`classcontrast.confusion.units_audit`): counted here or on Ray (``workers``), resumable."""
    from ..confusion.units_audit import unit_audit
    from ..data.annotated import open_annotated
    from .evaluate_cmd import setup_model

    bundle, dev = setup_model(model, weights, num_classes, device, preprocess, out, trust_remote_code, limit=limit)
    source = open_annotated(data, bundle.categories, limit)
    console.print(f"{bundle.name} on {source.description}")
    options = {**given, **({"layer": layer} if layer else {})}
    with progress_tasks() as progress:
        result = unit_audit(bundle, source, out, methods, pairs=pairs, examples=examples, iou=iou,
                            min_score=min_score, device=dev, progress=progress, workers=workers,
                            settings={"spec": model, "weights": weights, "preprocess": preprocess}, **options)
    console.print(printable(f"{count(result.n, 'image')}; {json_line(result.metrics)}; "
                            f"{count(len(result.pairs), 'confused pair')} shown"))
    for i, p in enumerate(result.pairs[:5], 1):
        console.print(printable(f"  {i}. {result.classes[p.true]} taken for {result.classes[p.predicted]}: "
                                f"{p.count:g} {result.measure}"))
    for path in result.paths:
        console.print(f"wrote {path}")


def json_line(metrics: dict[str, Any]) -> str:
    """The metrics as one line: numbers to three decimals, per-class dictionaries left to audit.json."""
    return ", ".join(f"{k.replace('_', ' ')} {v:.3f}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in metrics.items() if not isinstance(v, dict) and v is not None)


def _summary(result: Any) -> None:
    """The audit's summary: its images and accuracy, the pairs shown (the first five), the files written."""
    acc = "" if result.accuracy is None else f", accuracy {result.accuracy:.3f}"
    if result.multilabel:
        console.print(f"{count(result.n, 'image')}, label sets; exact match {result.accuracy:.3f}; "
                      f"{count(len(result.pairs), 'pair')} "
                      f"shown (a label present but missed, another predicted instead; predicted: sigma >= "
                      f"{result.threshold})")
        for s in result.label_stats[:5]:
            console.print(printable(f"  {s['class']}: {count(s['false_positives'], 'false positive')}, "
                                    f"{count(s['false_negatives'], 'false negative')} of {s['support']}"))
    elif result.labelled:
        console.print(f"{count(result.n, 'image')}{acc}; {count(len(result.pairs), 'confused pair')} shown "
                      "(true label taken for "
                      "a prediction)")
    else:
        console.print(f"{count(result.n, 'image')}, no labels; {count(len(result.pairs), 'pair')} shown: each "
                      "image's top-1 vs top-2, "
                      f"counted when p(top-2) / p(top-1) >= {result.ambiguity}")
    for i, p in enumerate(result.pairs[:5], 1):
        if result.multilabel:
            console.print(printable(f"  {i}. {result.classes[p.true]} present, {result.classes[p.predicted]} "
                                    f"predicted instead: {count(p.count, 'image')}"))
        elif result.labelled:
            console.print(printable(f"  {i}. {result.classes[p.true]} taken for {result.classes[p.predicted]}: "
                                    f"{count(p.count, 'image')}"))
        else:
            console.print(printable(f"  {i}. {result.classes[p.first]} vs {result.classes[p.second]} (top-1 vs "
                                    f"top-2): {count(p.count, 'image')}"))
    for method, by in result.class_sensitivity().items():
        console.print(f"class sensitivity, {method} (its shown maps; 0: class-blind): "
                      + ", ".join(f"{c} {v:.2f}" for c, v in by.items()))
    for path in result.paths:
        console.print(f"wrote {path}")
    for note in result.notes:
        console.print(note)


audit_command = with_method_options(_audit, exclude=("layer", "relu", "seed"))
