"""The study's fine-tuning recipe (spec B.7), every value overridable, resumable from checkpoints."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from ..data.sources import SampleSource
from ..errors import ClassContrastError, first_line
from ..evaluation.runner import write_table
from ..models import ModelBundle
from ..outputs import logits_of


@dataclass
class Recipe:
    """Defaults = the study's CUB-200 fine-tuning of vgg16_bn. The scheduler, MultiStepLR with a
    milestone at epoch 200 and γ = 0.5, never fires within 200 epochs: the learning rate is in effect
    constant. That is kept as the faithful default."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [200])
    gamma: float = 0.5
    seed: int = 0
    image_size: int = 224
    workers: int = 0


def study_train_transform(size: int = 224) -> T.Compose:
    """The study's augmentation list, in order (spec B.7), without the final normalisation."""
    return T.Compose([
        T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.RandomRotation(30),
        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
        T.RandomAffine(degrees=0, translate=(0.1, 0.1)),
        T.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.75, 1.3333), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomPerspective(distortion_scale=0.2, p=0.5, interpolation=T.InterpolationMode.BICUBIC, fill=0),
        T.RandomGrayscale(p=0.2), T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.2), T.ToTensor(),
    ])


def study_test_transform(size: int = 224) -> T.Compose:
    """The study's CUB test transform: Resize((224, 224)) (aspect not kept), ToTensor."""
    return T.Compose([T.Resize((size, size)), T.ToTensor()])


class _Images(Dataset):
    def __init__(self, source: SampleSource, transform: Callable[[Any], torch.Tensor], normalize: nn.Module) -> None:
        if any(s.label is None for s in source.samples):
            raise ClassContrastError(f"training needs labelled data; {source.description} has no labels")
        self.samples, self.transform, self.normalize = source.samples, transform, normalize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        return self.normalize(s.prepared(self.transform)), int(s.label)  # type: ignore[arg-type]


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Swap the last ``nn.Linear`` for a fresh one with ``num_classes`` outputs (vgg16_bn: classifier.6),
    initialised from ``seed`` so that a run can be repeated exactly."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    if last is None:
        raise ClassContrastError(f"{type(model).__name__} has no linear classifier head to replace")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if old.out_features != num_classes:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return model


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """The random states as tensors, numbers and lists only, so the checkpoint loads with
    ``weights_only=True`` (numpy's state holds an array, which that refuses)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": list(random.getstate()), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                         has_gauss, cached], "torch": torch.get_rng_state()}


def _resume(last: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
            device: torch.device | str) -> tuple[int, float, list[dict[str, Any]]]:
    """Restore a run from ``last.pth``, loaded with ``weights_only=True`` (a crafted file runs no code);
    a corrupt, foreign or mismatched checkpoint is a one-line error naming it."""
    try:
        ck = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best, metrics = int(ck["epoch"]), float(ck["best_accuracy"]), list(ck["metrics"])
        rng = ck["rng"]
        name, keys, pos, has_gauss, cached = rng["numpy"]
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(rng["torch"])
    except Exception as e:  # pickle, zip, key, shape and type errors alike: the file is not our checkpoint
        raise ClassContrastError(f"--resume: {last} is not a usable checkpoint of this run "
                                 f"({type(e).__name__}: {first_line(e)}); remove it or train into another --out") from e
    return start, best, metrics


def train(bundle: ModelBundle, train_source: SampleSource, test_source: SampleSource, out: Path,
          recipe: Recipe | None = None, resume: bool = False, device: torch.device | str = "cpu",
          progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """Fine-tune ``bundle.model`` (head already sized). Writes ``last.pth`` and ``best.pth`` every epoch,
    ``metrics.csv`` / ``metrics.json``; ``resume`` continues from ``last.pth`` (model, optimiser,
    scheduler, epoch, random states). Returns the metrics rows."""
    recipe = recipe or Recipe()
    out.mkdir(parents=True, exist_ok=True)
    model = bundle.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=recipe.milestones, gamma=recipe.gamma)
    _seed_all(recipe.seed)
    start, best, metrics = 0, -1.0, []
    last = out / "last.pth"
    if resume and last.exists():
        start, best, metrics = _resume(last, model, opt, sched, device)
    elif resume:
        raise ClassContrastError(f"--resume: no checkpoint at {last}")
    gen = torch.Generator().manual_seed(recipe.seed)
    train_set = _Images(train_source, study_train_transform(recipe.image_size), bundle.normalize)
    test_set = _Images(test_source, study_test_transform(recipe.image_size), bundle.normalize)
    for epoch in range(start, recipe.epochs):
        gen.manual_seed(recipe.seed + epoch)  # the epoch's shuffle does not depend on a resume
        loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=gen,
                            num_workers=recipe.workers)
        model.train()
        total_loss, seen = 0.0, 0
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(logits_of(model(x)), y)
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
            total_loss += float(loss.detach()) * len(y)
            seen += len(y)
            if progress is not None:
                progress(f"epoch {epoch + 1}/{recipe.epochs}", i + 1, len(loader))
        for p in params:
            p.grad = None
        sched.step()
        acc = evaluate_accuracy(model, test_set, recipe.batch_size, device)
        row = {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1), "test_accuracy": acc,
               "lr": opt.param_groups[0]["lr"]}
        metrics.append(row)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch + 1, "best_accuracy": max(best, acc), "metrics": metrics,
                 "recipe": asdict(recipe), "num_classes": bundle.num_classes, "arch": bundle.name,
                 "rng": _rng_state()}
        torch.save(state, out / "last.tmp")
        (out / "last.tmp").replace(last)  # atomic: a crash never leaves a half-written checkpoint
        if acc > best:
            best = acc
            torch.save({"state_dict": model.state_dict(), "epoch": epoch + 1, "test_accuracy": acc}, out / "best.pth")
        write_table(metrics, out, "metrics")
    model.eval()
    return metrics


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: Dataset, batch_size: int, device: torch.device | str) -> float:
    model.eval()
    correct = n = 0
    for x, y in DataLoader(data, batch_size=batch_size):
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
        n += len(y)
    return correct / max(n, 1)
