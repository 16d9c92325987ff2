"""``classcontrast reproduce`` and ``classcontrast train``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import ClassContrastError
from ..text import count, shown
from .checks import check_number, check_out_dir
from .common import console, shard_progress
from .evaluate_cmd import TRUST, check_common
from .options import split_numbers


def reproduce_command(
    config: Path = typer.Argument(..., help="A TOML configuration (see configs/smoke.toml, configs/study.toml)"),
    out: Path = typer.Option(Path("report"), help="Report folder (re-running it resumes)"),
) -> None:
    """Run a whole configuration (resumable; shards across processes under torchrun) and write a report."""
    from ..distributed import setup
    from ..reproduce import load_config, run_suite

    check_out_dir(out)
    cfg = load_config(config)
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    from .common import resolve_device

    for i, exp in enumerate(cfg.experiments):  # every device present, before the first experiment runs
        try:
            resolve_device(exp.device)
        except ClassContrastError as e:
            raise ClassContrastError(f"{config}: experiment {i + 1} ({exp.kind}): {e}") from e
    for exp in cfg.experiments:  # the size of each gradient grid, before the first runs
        if exp.kind == "perturbation":
            o = exp.options
            per_image = len(o.get("contrasts", "1234")) * len(o.get("epsilons", "12")) * sum(o.get("steps", (1, 2, 10)))
            images = f" × {count(exp.limit, 'image')} = {per_image * exp.limit:,}" if exp.limit \
                else " × the number of images"
            console.print(f"{exp.name}: {per_image:,} forward+backward passes per image{images} "
                          "(the progress bar estimates the time)")
    shard = setup(cfg.experiments[0].device)
    with shard_progress(shard) as progress:
        paths = run_suite(cfg, out, shard, progress)
    for p in paths:
        console.print(f"wrote {p}")


def train_command(
    data: str = typer.Option(..., help="cub200:ROOT, food101:ROOT, or a folder with train/ and test/ class folders"),
    model: str = typer.Option("torchvision:vgg16_bn", help="torchvision:<arch> or timm:<arch>"),
    weights: str = typer.Option("DEFAULT", help="Starting weights: DEFAULT (ImageNet), none, or a state-dict path"),
    out: Path = typer.Option(Path("runs/train"), help="Checkpoints and metrics"),
    epochs: int = typer.Option(200), batch_size: int = typer.Option(128), lr: float = typer.Option(1e-3),
    momentum: float = typer.Option(0.9), weight_decay: float = typer.Option(5e-4),
    milestones: list[str] = typer.Option(["200"], help="MultiStepLR milestones, epochs (the study's never fires)"),
    gamma: float = typer.Option(0.5), seed: int = typer.Option(0), image_size: int = typer.Option(224),
    workers: int = typer.Option(0, help="DataLoader workers"),
    limit: int = typer.Option(None, help="Use at most N training and N test images"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pth"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh in an OUT that already holds a run"),
    device: str = typer.Option("auto", help="auto (CUDA when available) | cpu | cuda | cuda:N"),
    trust_remote_code: bool = TRUST,
) -> None:
    """Fine-tune a classifier with the study's recipe (vgg16_bn on CUB-200 by default)."""
    from ..data.specs import training_sources
    from ..models import load_model
    from ..training import Recipe, replace_head, train
    from .common import resolve_device

    check_common(out, limit, batch_size)
    if resume and overwrite:
        raise ClassContrastError("--resume and --overwrite contradict each other; give one")
    if (out / "last.pth").exists() and not (resume or overwrite):
        raise ClassContrastError(f"--out {shown(out)} already holds a training run (last.pth); pass --resume to "
                                 "continue it or --overwrite to start afresh")
    for value, option in ((epochs, "--epochs"), (image_size, "--image-size")):
        check_number(value, option, minimum=1)
    check_number(lr, "--lr", above=0)
    for value, option in ((momentum, "--momentum"), (weight_decay, "--weight-decay"), (gamma, "--gamma"),
                          (workers, "--workers")):
        check_number(value, option, minimum=0)
    dev = resolve_device(device)
    stones = split_numbers(milestones, "--milestones")
    if any(m != int(m) for m in stones):
        raise ClassContrastError(f"--milestones takes whole epochs, got {' '.join(f'{m:g}' for m in stones)}")
    train_src, test_src, classes = training_sources(data)
    if limit is not None:
        train_src, test_src = train_src.select(limit=limit, seed=seed), test_src.select(limit=limit, seed=seed)
    bundle = load_model(model, weights=weights, trust_remote_code=trust_remote_code)
    replace_head(bundle.model, len(classes), seed)
    bundle.categories = classes
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    milestones=[int(m) for m in stones], gamma=gamma, seed=seed, image_size=image_size, workers=workers)
    console.print(f"training {bundle.name} on {train_src.description} ({count(len(train_src), 'image')}), testing on "
                  f"{len(test_src)}; {count(len(classes), 'class', 'classes')}")
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("training", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        metrics = train(bundle, train_src, test_src, out, recipe, resume=resume, device=dev, progress=progress)
    if metrics:
        console.print(f"epoch {metrics[-1]['epoch']}: test accuracy {metrics[-1]['test_accuracy']:.3f}; "
                      f"checkpoints in {out}")
