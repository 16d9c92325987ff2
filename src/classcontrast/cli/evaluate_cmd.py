"""``classcontrast evaluate ...``: the paper's experiments from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.sources import LABELS_FROM_PREDICTION, SampleSource, open_source
from ..errors import ClassContrastError
from ..models import ModelBundle, load_model, set_preprocess
from .common import console, resolve_device

evaluate_app = typer.Typer(help="The paper's experiments: perturbation, masking, figures, norm-logit.",
                           no_args_is_help=True)

DATA = typer.Option(None, "--data", help="Class folders, a flat folder, imagenet:ROOT, cub200:ROOT, food101:ROOT. "
                    "Default: the bundled photos")
MODEL = typer.Option("efficientnet_lite0", help="efficientnet_lite0 | torchvision:<arch> | timm:<arch>")
WEIGHTS = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path")
NUM_CLASSES = typer.Option(None, help="Class count of a checkpoint with a new head")
LIMIT = typer.Option(None, help="Use at most N samples")
BATCH = typer.Option(16, help="Images per batch")
SEED = typer.Option(0, help="Seed for the sample order and random baselines")
DEVICE = typer.Option("cpu", help="cpu | cuda | cuda:N | auto")
OUT = typer.Option(Path("results"), help="Output folder")
PREPROCESS = typer.Option("model", help="model (its own resize/crop) | study-imagenet | study-cub")


def _setup(data: list[str] | None, model: str, weights: str, num_classes: int | None, limit: int | None,
           seed: int, device: str, preprocess: str = "model") -> tuple[ModelBundle, SampleSource, object]:
    dev = resolve_device(device)
    bundle = set_preprocess(load_model(model, weights=weights, num_classes=num_classes, device=dev), preprocess)
    source = open_source(data, bundle.categories).select(limit=limit, seed=seed)
    if len(source) == 0:
        raise ClassContrastError("no samples to evaluate")
    console.print(f"[bold]{bundle.name}[/] on {source.description}: {len(source)} samples; "
                  f"labels from {source.labels_from}")
    return bundle, source, dev


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ClassContrastError(f"--{name} takes comma-separated numbers, got {text!r}") from e


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _done(paths: list[Path]) -> None:
    for p in paths:
        console.print(f"wrote {p}")


@evaluate_app.command("perturbation")
def perturbation_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    contrasts: str = typer.Option("weighted,original,mean,max", help="Comma-separated contrasts"),
    epsilons: str = typer.Option("0.001,0.003", help="Comma-separated perturbation limits ε (pixel space)"),
    steps: str = typer.Option("1,2,10", help="Comma-separated iteration counts"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS,
) -> None:
    """Gradient-sign perturbation (paper §5.1): Δaccuracy, Δy_t, Δp_t per contrast, ε and step count."""
    from ..evaluation import run_perturbation, write_perturbation

    bundle, source, dev = _setup(data, model, weights, num_classes, limit, seed, device, preprocess)
    grid_steps = [int(s) for s in _floats(steps, "steps")]
    with _progress(len(source), "perturbation") as tick:
        records = run_perturbation(bundle, source, _names(contrasts), _floats(epsilons, "epsilons"), grid_steps,
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
    methods: str = typer.Option("linear_approx,gradcam,xgradcam", help="Comma-separated methods"),
    baselines: str = typer.Option("blur,zeros,mean", help="Comma-separated baselines"),
    rule: str = typer.Option("equal", help="Area rule: sign | equal | legacy"),
    threshold: float = typer.Option(0.1, help="Keep images with p_t2 > threshold"),
    below: bool = typer.Option(False, "--below", help="Keep images with p_t2 < threshold instead"),
    sigma: str = typer.Option("15", help="Blur σ, or LO,HI for σ ~ U(LO, HI) per call"),
    layer: str = typer.Option(None, help="Layer for the CAM methods (e.g. features.40)"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS,
) -> None:
    """Blurring / masking (paper Table 1): relative probability when keeping positive or negative features."""
    from ..evaluation import markdown_table, run_masking

    if rule not in {"sign", "equal", "legacy"}:
        raise ClassContrastError(f"unknown --rule {rule!r}; choose sign, equal or legacy")
    sig = _floats(sigma, "sigma")
    sig_value = sig[0] if len(sig) == 1 else (sig[0], sig[1])
    bundle, source, dev = _setup(data, model, weights, num_classes, limit, seed, device, preprocess)
    with _progress(len(source), "masking") as tick:
        records, info = run_masking(bundle, source, _names(methods), _names(baselines),
                                    rule=rule,  # type: ignore[arg-type]
                                    threshold=threshold, below=below, sigma=sig_value, seed=seed, layer=layer,
                                    batch_size=batch_size, device=dev, log_path=out / "masking_samples.jsonl",
                                    progress=tick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masking.json").write_text(json.dumps({"records": records, "info": info}, indent=2))
    table = markdown_table(records, info)
    (out / "masking.md").write_text(table)
    console.print(table)
    _done([out / "masking.json", out / "masking.md"])


@evaluate_app.command("figures")
def figures_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    methods: str = typer.Option("gradcam,linear_approx,xgradcam", help="CNN methods for original vs weighted"),
    layer: str = typer.Option(None, help="Layer (CNN module name, or ViT block index)"),
    threshold: float = typer.Option(0.1, help="p_t2 (and p_t3) threshold for choosing images"),
    images: int = typer.Option(4, help="Images per figure kind"),
    limit: int = LIMIT, batch_size: int = BATCH, seed: int = SEED, device: str = DEVICE, out: Path = OUT,
    preprocess: str = PREPROCESS,
) -> None:
    """Figures of maps: original vs weighted (t1, t2), original/mean/max/weighted (t1–t3), ViT layout."""
    from ..evaluation.figures import is_transformer, mean_max_weighted, original_vs_weighted, select, vit_comparison

    bundle, source, dev = _setup(data, model, weights, num_classes, limit, seed, device, preprocess)
    written: list[Path] = []
    ids2, px2 = select(bundle, source, 2, threshold, images, batch_size, dev)
    if is_transformer(bundle.model):
        block = int(layer) if layer is not None and layer.lstrip("-").isdigit() else layer
        written += vit_comparison(bundle, ids2, px2, out, layer=block)
    else:
        written += original_vs_weighted(bundle, ids2, px2, out, _names(methods), layer)
        ids3, px3 = select(bundle, source, 3, threshold, images, batch_size, dev)
        written += mean_max_weighted(bundle, ids3, px3, out, layer=layer)
    if not written:
        console.print(f"no image passes the threshold p > {threshold}; try --threshold or more --data")
    _done(written)


@evaluate_app.command("norm-logit")
def norm_logit_command(
    data: list[str] = DATA, model: str = MODEL, weights: str = WEIGHTS, num_classes: int = NUM_CLASSES,
    limit: int = LIMIT, batch_size: int = typer.Option(4, help="Images per batch"), seed: int = SEED,
    device: str = DEVICE, out: Path = OUT, preprocess: str = PREPROCESS,
) -> None:
    """Explanation norm ‖∇_x y_t‖ against the logit y_t (study Figure 6)."""
    from ..evaluation import run_norm_logit, write_norm_logit

    bundle, source, dev = _setup(data, model, weights, num_classes, limit, seed, device, preprocess)
    with _progress(len(source), "norm-logit") as tick:
        rows, summary = run_norm_logit(bundle, source, batch_size, dev, out / "norm_logit_samples.jsonl", tick)
    _done(write_norm_logit(rows, summary, out))
    console.print(summary)
