"""``classcontrast evaluate ...``: the paper's experiments from the command line.

Multi-value options follow the one rule of `classcontrast.cli.options` (space-separated, commas
too); the old plural spellings (``--contrasts``, ``--methods``) are accepted as aliases.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from ..errors import ClassContrastError
from ..text import count
from . import manifest
from . import method_flags as flags
from .checks import check_number, check_out_dir
from .common import console, progress_bar, resolve_device
from .engine_opts import CONCURRENCY, ENGINE, NUM_GPUS, RAY_ADDRESS, workers
from .method_flags import with_method_options
from .options import CONTRASTS_HELP, METHODS_HELP, check_names, method_names, split_numbers, split_values

evaluate_app = typer.Typer(help="The paper's experiments: perturbation, masking, figures, norm-logit, faithfulness; "
                           "class sensitivity.",
                           no_args_is_help=True)

DATA = typer.Option(None, "--data", help="Class folders, a flat folder, imagenet:ROOT, cub200:ROOT, food101:ROOT. "
                    "Default: the bundled photos")
MODEL = typer.Option(manifest.DEFAULT_MODEL, help=" | ".join(f["spec"] for f in manifest.FAMILIES) +
                     " (classcontrast models: what each is)")
WEIGHTS = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path")
NUM_CLASSES = typer.Option(None, help="Class count of a checkpoint with a new head")
LIMIT = typer.Option(None, help="Use at most N samples")
BATCH = typer.Option(16, help="Images per batch")
SEED = typer.Option(0, help="Seed for the sample order and random baselines")
DEVICE = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
OUT = typer.Option(Path("results"), help="Output folder")
PREPROCESS = typer.Option("model", help="model (its own resize/crop) | study-imagenet | study-cub")
SPLIT = typer.Option(None, help="A datasets folder's split (train, test...; default: its only one)")
TRUST = typer.Option(False, "--trust-remote-code", help=manifest.FAMILY_OPTIONS["trust_remote_code"]["help"])


def setup_run(data: list[str] | None, model: str, weights: str, num_classes: int | None, limit: int | None,
              seed: int, device: str, preprocess: str = "model", out: Path | None = None,
              trust_remote_code: bool = False, batch_size: int | None = None, head: str | None = None,
              classes: list[str] | None = None, template: str = "a photo of a {}.", prompt: str | None = None,
              answers: list[str] | None = None, split: str | None = None) -> tuple[Any, Any, Any]:
    """(bundle, source, device) for an experiment command; the source's description is printed. The
    output folder and numbers are checked first (one line, before the model loads); the output folder
    is never read as data. ``classes``: a zero-shot (CLIP-style) model over these prompts' classes; ``prompt``
    (and ``answers``): a vision-language model's candidate answers to the question as its classes;
    ``head``: override the model's (``sigmoid`` for a multi-label model); ``split``: a datasets folder's."""
    from ..data.specs import open_source

    bundle, dev = setup_model(model, weights, num_classes, device, preprocess, out, trust_remote_code, batch_size,
                              head, classes, template, prompt, answers, limit)
    source = open_source(data, bundle.categories, exclude=[out] if out is not None else [], split=split).select(
        limit=limit, seed=seed)
    if len(source) == 0:
        raise ClassContrastError(f"{source.description}: no images to evaluate" + (
            f" (--limit {limit})" if limit is not None and limit < 1 else ""))
    console.print(f"{bundle.name} on {source.description}: {count(len(source), 'sample')}; "
                  f"labels from {source.labels_from}")
    return bundle, source, dev


def setup_model(model: str, weights: str, num_classes: int | None, device: str, preprocess: str = "model",
                out: Path | None = None, trust_remote_code: bool = False, batch_size: int | None = None,
                head: str | None = None, classes: list[str] | None = None, template: str = "a photo of a {}.",
                prompt: str | None = None, answers: list[str] | None = None,
                limit: int | None = None) -> tuple[Any, Any]:
    """(bundle, device) for an experiment command, the numbers and options checked first (see `setup_run`)."""
    import dataclasses

    from ..models import load_model, set_preprocess

    check_common(out, limit, batch_size, num_classes)
    if head not in (None, "softmax", "sigmoid"):
        raise ClassContrastError(f"unknown --head {head!r}; choose softmax or sigmoid")
    dev = resolve_device(device)
    if answers and prompt is None:
        raise ClassContrastError("--answers needs --prompt (the question they answer)")
    if prompt is not None and classes:
        raise ClassContrastError("give --prompt (a vision-language model's answers) or --classes (zero-shot)")
    if prompt is not None:
        from ..models.answers import load_answers

        loaded = load_answers(model, prompt, answers or None, trust_remote_code).to(dev)
    elif classes:
        from ..models.zero_shot import load_zero_shot

        loaded = load_zero_shot(model, classes, template, trust_remote_code).to(dev)
    else:
        loaded = load_model(model, weights=weights, num_classes=num_classes, device=dev,
                            trust_remote_code=trust_remote_code)
    return set_preprocess(loaded if head is None else dataclasses.replace(loaded, head=head), preprocess), dev


def check_common(out: Path | None, limit: int | None = None, batch_size: int | None = None,
                 num_classes: int | None = None) -> None:
    """The options every experiment command shares, checked before any work."""
    if out is not None:
        check_out_dir(out)
    if limit is not None and limit < 1:
        raise ClassContrastError(f"--limit must be at least 1, got {limit}")
    if batch_size is not None and batch_size < 1:
        raise ClassContrastError(f"--batch-size must be at least 1, got {batch_size}")
    if num_classes is not None and num_classes < 1:
        raise ClassContrastError(f"--num-classes must be at least 1, got {num_classes}")


def whole_numbers(values: list[float], option: str) -> list[int]:
    """Counts given as numbers: each a whole number of at least 1."""
    if any(not math.isfinite(v) or v != int(v) or v < 1 for v in values):
        given = " ".join(f"{v:g}" for v in values)
        raise ClassContrastError(f"{option} takes whole numbers of at least 1, got {given}")
    return [int(v) for v in values]


def _done(paths: list[Path]) -> None:
    for p in paths:
        console.print(f"wrote {p}")


@evaluate_app.command("perturbation")
def perturbation_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    contrast: list[str] = typer.Option(["weighted", "original", "mean", "max"], "--contrast", "--contrasts",
                                       help=CONTRASTS_HELP),
    epsilon: list[str] = typer.Option(["0.001", "0.003"], "--epsilon", "--epsilons",
                                      help="Perturbation limits ε (pixel space)"),
    steps: list[str] = typer.Option(["1", "2", "10"], "--steps", help="Iteration counts"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
) -> None:
    """Gradient-sign perturbation (paper §5.1): Δaccuracy, Δy_t, Δp_t per contrast, ε and step count."""
    check_names(contrasts=split_values(contrast))  # before torch loads
    from ..data.sources import LABELS_FROM_PREDICTION
    from ..evaluation import run_perturbation, write_perturbation
    from ..reproduce.config import MAX_STEPS

    contrasts = split_values(contrast)
    epsilons = split_numbers(epsilon, "--epsilon")
    for e in epsilons:
        check_number(e, "--epsilon", above=0)
    grid_steps = whole_numbers(split_numbers(steps, "--steps"), "--steps")
    if max(grid_steps, default=0) > MAX_STEPS:
        raise ClassContrastError(f"--steps {max(grid_steps):,}: at most {MAX_STEPS:,} gradient steps per setting "
                                 f"(the study's largest is 10; each step is a forward and backward pass per image)")
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    with progress_bar(len(source), "perturbation") as tick:
        records = run_perturbation(bundle, source, contrasts, epsilons, grid_steps,
                                   batch_size, dev, out / "perturbation_samples.jsonl", tick)
    if source.labels_from == LABELS_FROM_PREDICTION:
        console.print("note: targets are the model's clean top-1 predictions (no labels given)")
    _done(write_perturbation(records, out, bundle.name))
    for r in records:
        console.print(f"{r['contrast']:>9} ε={r['epsilon']:<6g} steps={r['steps']:<3} n={r['n']:<5} "
                      f"Δacc={r['delta_accuracy']:+.3f} Δp_t={r['delta_probability']:+.3f} "
                      f"Δy_t={r['delta_logit']:+.3f}")


@evaluate_app.command("masking")
def masking_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["linear_approx", "gradcam", "xgradcam"], "--method", "--methods",
                                     help=METHODS_HELP),
    baseline: list[str] = typer.Option(["blur", "zeros", "mean"], "--baseline", "--baselines",
                                       help="Baselines: blur zeros mean"),
    rule: str = typer.Option("equal", help="Area rule: sign | equal | legacy"),
    threshold: float = typer.Option(0.1, help="Keep images with p_t2 > threshold"),
    below: bool = typer.Option(False, "--below", help="Keep images with p_t2 < threshold instead"),
    sigma: list[str] = typer.Option(["15"], help="Blur σ, or LO HI for σ ~ U(LO, HI) per call"),
    layer: str = typer.Option(None, help="Layer for the CAM methods (e.g. features.40)"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
) -> None:
    """Blurring / masking (paper Table 1): relative probability when keeping positive or negative features."""
    methods = method_names(method)  # before torch loads
    from ..evaluation import markdown_table, run_masking

    if rule not in {"sign", "equal", "legacy"}:
        raise ClassContrastError(f"unknown --rule {rule!r}; choose sign, equal or legacy")
    sig = split_numbers(sigma, "--sigma")
    if len(sig) not in (1, 2):
        raise ClassContrastError(f"--sigma takes one value or two (LO HI), got {len(sig)}")
    for s in sig:
        check_number(s, "--sigma", above=0)
    check_number(threshold, "--threshold", minimum=0, maximum=1)
    sig_value = sig[0] if len(sig) == 1 else (sig[0], sig[1])
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    with progress_bar(len(source), "masking") as tick:
        records, info = run_masking(bundle, source, methods, split_values(baseline),
                                    rule=rule,  # type: ignore[arg-type]
                                    threshold=threshold, below=below, sigma=sig_value, seed=seed, layer=layer,
                                    batch_size=batch_size, device=dev, log_path=out / "masking_samples.jsonl",
                                    progress=tick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masking.json").write_text(json.dumps({"records": records, "info": info}, indent=2))
    from ..evaluation.masking import coinciding_note

    note = coinciding_note(records)
    table = markdown_table(records, info) + (f"\n{note}\n" if note else "")
    (out / "masking.md").write_text(table)
    console.print(table)
    _done([out / "masking.json", out / "masking.md"])


@evaluate_app.command("figures")
def figures_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["gradcam", "linear_approx", "xgradcam"], "--method", "--methods",
                                     help="CNN methods for original vs weighted"),
    layer: str = typer.Option(None, help="Layer (CNN module name, or ViT block index)"),
    threshold: float = typer.Option(0.1, help="p_t2 (and p_t3) threshold for choosing images"),
    images: int = typer.Option(4, help="Images per figure kind"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
) -> None:
    """Figures of maps: original vs weighted (t1, t2), original/mean/max/weighted (t1–t3), ViT layout."""
    methods = method_names(method)  # before torch loads
    check_number(threshold, "--threshold", minimum=0, maximum=1)
    check_number(images, "--images", minimum=1)
    from ..evaluation.figures import is_transformer, mean_max_weighted, original_vs_weighted, select, vit_comparison

    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    written: list[Path] = []
    ids2, px2 = select(bundle, source, 2, threshold, images, batch_size, dev)
    if is_transformer(bundle.model):
        block = int(layer) if layer is not None and layer.lstrip("-").isdigit() else layer
        written += vit_comparison(bundle, ids2, px2, out, layer=block)
    else:
        written += original_vs_weighted(bundle, ids2, px2, out, methods, layer)
        ids3, px3 = select(bundle, source, 3, threshold, images, batch_size, dev)
        written += mean_max_weighted(bundle, ids3, px3, out, layer=layer)
    if not written:
        console.print(f"no image passes the threshold p > {threshold}; try --threshold or more --data")
    _done(written)


@evaluate_app.command("norm-logit")
def norm_logit_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    limit: int = LIMIT, batch_size: int = typer.Option(4, help="Images per batch"), seed: int = SEED,
    device: str = DEVICE, out: Path = OUT, preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
) -> None:
    """Explanation norm ‖∇_x y_t‖ against the logit y_t (study Figure 6)."""
    from ..evaluation import run_norm_logit, write_norm_logit

    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    with progress_bar(len(source), "norm-logit") as tick:
        rows, summary = run_norm_logit(bundle, source, batch_size, dev, out / "norm_logit_samples.jsonl", tick)
    _done(write_norm_logit(rows, summary, out))
    console.print(summary)


def _faithfulness(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["gradcam", "linear_approx", "gradient_x_input"], "--method", "--methods",
                                     help=METHODS_HELP),
    contrast: list[str] = typer.Option(["original", "mean", "max", "weighted"], "--contrast", "--contrasts",
                                       help=CONTRASTS_HELP),
    baseline: list[str] = typer.Option(["blur", "zeros", "mean"], "--baseline", "--baselines",
                                       help="Baselines: blur zeros mean road (road: ROAD's noisy linear "
                                       "imputation, a linear solve per curve point)"),
    score: list[str] = typer.Option(["probability", "logit", "contrast"], "--score", "--scores",
                                    help="Scores: probability (p_t) logit (y_t) contrast (the contrast's objective)"),
    fractions: list[str] = typer.Option(None, help="Fractions of pixels in (0, 1] (default: 20 equal steps)"),
    layer: str = typer.Option(None, help="Layer for the CAM methods"),
    road_noise: float = typer.Option(0.01, help="ROAD: noise added to imputed pixels"),
    engine: str = ENGINE, ray_address: str = RAY_ADDRESS, concurrency: int = CONCURRENCY,
    num_gpus_per_worker: float = NUM_GPUS,
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
    **options: Any,
) -> None:
    """Deletion / insertion (MoRF / LeRF) and ROAD curves, and average drop / increase, per method × contrast."""
    methods = method_names(method)  # before torch loads
    check_names(contrasts=split_values(contrast))
    from ..evaluation.faithfulness import (
        check_grid,
        default_fractions,
        markdown_tables,
        run_faithfulness,
        write_faithfulness,
    )

    check_number(road_noise, "--road-noise", minimum=0)
    grid = split_numbers(fractions, "--fractions") if fractions else default_fractions()
    check_grid(split_values(baseline), split_values(score), grid)  # bad input: one line, before any work
    given = flags.method_flags(methods, options)
    on = workers(engine, ray_address, concurrency, num_gpus_per_worker)
    on.start()  # Ray joined before the model loads: one line without Ray
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    with progress_bar(len(source), "faithfulness") as tick:
        result = run_faithfulness(bundle, source, methods, split_values(contrast),
                                  split_values(baseline), split_values(score), grid, batch_size, dev, seed, layer,
                                  road_noise, out / "faithfulness_samples.jsonl", tick,
                                  method_options=given, workers=on)
    _done(write_faithfulness(result, out))
    console.print(markdown_tables(result))



faithfulness_command = evaluate_app.command("faithfulness")(
    with_method_options(_faithfulness, exclude=("layer", "relu", "baseline", "baselines", "seed")))


def _class_sensitivity(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    method: list[str] = typer.Option(["gradient", "gradcam", "eigencam"], "--method", "--methods", help=METHODS_HELP),
    contrast: list[str] = typer.Option(["original", "weighted"], "--contrast", "--contrasts", help=CONTRASTS_HELP),
    top_k: int = typer.Option(5, "--top-k", help="The top classes compared (a foil: t_1 rather than each other)"),
    top: float = typer.Option(0.1, help="The share of positions counted as a map's top"),
    layer: str = typer.Option(None, help="Layer for the CAM methods"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS, trust_remote_code: bool = TRUST,
    **options: Any,
) -> None:
    """Class sensitivity (CASE): how much each method's map changes with the class asked, per contrast."""
    methods = method_names(method)  # before torch loads
    check_names(contrasts=split_values(contrast))
    check_number(top, "--top", above=0, maximum=1)
    check_number(top_k, "--top-k", minimum=2)
    from ..evaluation.sensitivity import markdown_table, run_class_sensitivity, write_class_sensitivity

    given = {**flags.method_flags(methods, options), **({"layer": layer} if layer else {})}
    bundle, source, dev = setup_run(data, model, weights, num_classes, limit, seed, device, preprocess, out,
                                    trust_remote_code, batch_size)
    with progress_bar(len(source), "class sensitivity") as tick:
        rows = run_class_sensitivity(bundle, source, methods, split_values(contrast), k=top_k, top=top,
                                     batch_size=batch_size, device=dev, method_options=given, tick=tick)
    _done(write_class_sensitivity(rows, out))
    console.print(markdown_table(rows))


class_sensitivity_command = evaluate_app.command("class-sensitivity")(
    with_method_options(_class_sensitivity, exclude=("layer", "relu", "seed")))
