"""Run a whole configuration: every experiment, resumable and sharded across torchrun processes,
then one report placing our numbers beside the study's."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.specs import open_source
from ..distributed import Dist
from ..evaluation import masking_rows, run_masking, run_norm_logit, run_perturbation, write_norm_logit
from ..evaluation.figures import is_transformer, mean_max_weighted, original_vs_weighted, select, vit_comparison
from ..evaluation.masking import coinciding_note
from ..evaluation.perturbation import write_perturbation
from ..models import load_model, set_preprocess
from ..text import count
from . import study
from .config import Config, Experiment
from .report import Block, write_report

Progress = Callable[[str, int], Callable[[int], None]]


def versions() -> dict[str, str]:
    import timm
    import torchvision

    return {"classcontrast": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__, "platform": platform.platform()}


def _fmt(v: float) -> str:
    return f"{v:+.3f}" if abs(v) < 100 else f"{v:+.1f}"


def run_experiment(exp: Experiment, out: Path, shard: Dist, progress: Progress | None) -> list[Block]:
    """Run one experiment into ``out / exp.name`` and return its report blocks (on the main rank)."""
    where = out / exp.name
    if exp.kind == "networks":
        return run_networks(exp, where, shard, progress)
    bundle = set_preprocess(load_model(exp.model, weights=exp.weights, num_classes=exp.num_classes,
                                       device=exp.device), exp.preprocess)
    source = open_source(exp.data, bundle.categories).select(limit=exp.limit, seed=exp.seed)
    tick = progress(exp.name, len(source)) if progress and shard.main and exp.kind != "figures" else None
    blocks = [Block("h2", f"{exp.kind}: {exp.name}"),
              Block("p", f"{bundle.name} on {source.description}: {count(len(source), 'sample')}; labels from "
                         f"{source.labels_from}.")]
    made = KINDS[exp.kind](bundle, source, exp, where, tick, shard)
    return [] if made is None else blocks + made  # None: not the main rank's


def _perturbation(bundle: Any, source: Any, exp: Experiment, where: Path, tick: Any, shard: Dist
                  ) -> list[Block] | None:
    o = exp.options
    records = run_perturbation(bundle, source, o.get("contrasts", ("weighted", "original", "mean", "max")),
                               o.get("epsilons", (1e-3, 3e-3)), o.get("steps", (1, 2, 10)), exp.batch_size,
                               exp.device, where / "perturbation_samples.jsonl", tick, shard)
    if not shard.main:
        return None
    paths = write_perturbation(records, where, bundle.name)
    return _perturbation_blocks(records, exp.model.split(":")[-1]) + [Block("image", p) for p in paths[2:]]


def _masking(bundle: Any, source: Any, exp: Experiment, where: Path, tick: Any, shard: Dist) -> list[Block] | None:
    o = exp.options
    records, info = run_masking(bundle, source, o.get("methods", ("linear_approx", "gradcam", "xgradcam")),
                                o.get("baselines", ("blur", "zeros", "mean")), o.get("modes", ("positive",
                                                                                               "negative")),
                                rule=o.get("rule", "equal"), threshold=o.get("threshold", 0.1),
                                below=o.get("below", False), sigma=_sigma(o.get("sigma", 15.0)),
                                seed=exp.seed, layer=o.get("layer"), batch_size=exp.batch_size,
                                device=exp.device, log_path=where / "masking_samples.jsonl", progress=tick,
                                shard=shard)
    if not shard.main:
        return None
    where.mkdir(parents=True, exist_ok=True)
    (where / "masking.json").write_text(json.dumps({"records": records, "info": info}, indent=2))
    return [Block("table", masking_rows(records)),
            Block("p", f"{info['images_selected']} of {count(info['images_seen'], 'image')} with p_t2 "
                       f"{'<' if info['below'] else '>'} {info['threshold']}; area rule {info['rule']}."),
            *([Block("p", note)] if (note := coinciding_note(records)) else []),
            Block("p", "The study's Table 1 (CUB-200, vgg16_bn, p_t2 > 0.1, equal blurring):"),
            Block("table", _study_masking_rows())]


def _figures(bundle: Any, source: Any, exp: Experiment, where: Path, tick: Any, shard: Dist) -> list[Block] | None:
    if not shard.main:
        return None
    o, n = exp.options, int(exp.options.get("images", 4))
    ids2, px2 = select(bundle, source, 2, o.get("threshold", 0.1), n, exp.batch_size, exp.device)
    if is_transformer(bundle.model):
        paths = vit_comparison(bundle, ids2, px2, where, layer=o.get("layer"))
    else:
        paths = original_vs_weighted(bundle, ids2, px2, where, o.get("methods", ("gradcam", "linear_approx",
                                                                               "xgradcam")), o.get("layer"))
        ids3, px3 = select(bundle, source, 3, o.get("threshold", 0.1), n, exp.batch_size, exp.device)
        paths += mean_max_weighted(bundle, ids3, px3, where, layer=o.get("layer"))
    return [Block("image", p) for p in paths] or [Block("p", "No image passed the threshold.")]


def _norm_logit(bundle: Any, source: Any, exp: Experiment, where: Path, tick: Any, shard: Dist
                ) -> list[Block] | None:
    rows, summary = run_norm_logit(bundle, source, exp.batch_size, exp.device, where / "norm_logit_samples.jsonl",
                                   tick, shard)
    if not shard.main:
        return None
    paths = write_norm_logit(rows, summary, where)
    a, b, c = summary["quadratic_fit"]
    return [Block("p", f"{count(summary['images'], 'image')} × {count(summary['ranks_per_image'], 'class', 'classes')}"
                       f"; quadratic fit ‖∇y‖ ≈ {a:.4f}·y² + {b:.4f}·y + {c:.3f}; the top class's norm is "
                       f"{summary['top_class_norm_over_mean_norm']:.2f}× the mean."),
            Block("p", study.NORM_LOGIT), Block("image", paths[-1])]


def _faithfulness(bundle: Any, source: Any, exp: Experiment, where: Path, tick: Any, shard: Dist
                  ) -> list[Block] | None:
    from ..evaluation.faithfulness import (
        BASELINES,
        CONTRASTS,
        METHODS,
        SCORES,
        default_fractions,
        run_faithfulness,
        tables,
        write_faithfulness,
    )

    o = exp.options
    result = run_faithfulness(bundle, source, o.get("methods", METHODS), o.get("contrasts", CONTRASTS),
                              o.get("baselines", BASELINES), o.get("scores", SCORES),
                              o.get("fractions") or default_fractions(), exp.batch_size, exp.device, exp.seed,
                              o.get("layer"), o.get("road_noise", 0.01), where / "faithfulness_samples.jsonl",
                              tick, shard, o.get("method_options"))
    if not shard.main:
        return None
    paths = write_faithfulness(result, where)
    blocks = [Block("p", f"Deletion / insertion areas (fractions {result['info']['fractions'][1:]}); "
                         "a random map gives the chance row.")]
    for caption, rows in tables(result):
        blocks += [Block("p", caption), Block("table", rows)]
    return blocks + [Block("image", p) for p in paths if p.suffix == ".png"]


# an experiment's kind -> what runs it and gives its report blocks (None on the ranks that are not the main one)
KINDS = {"perturbation": _perturbation, "masking": _masking, "figures": _figures, "norm_logit": _norm_logit,
         "faithfulness": _faithfulness}


NETWORKS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def run_networks(exp: Experiment, where: Path, shard: Dist, progress: Progress | None) -> list[Block]:
    """The §5.1 grid (contrasts × ε × steps) on several networks (``models``, default the three embedded
    EfficientNet-Lites), each resumable in its own folder, then the study's multi-network figure and one table.
    The grid's time is estimated (one timed gradient step per network) and printed before it starts."""
    from ..evaluation.perturbation import CONTRASTS, EPSILONS, STEPS
    from ..evaluation.plots import networks_chart

    o = exp.options
    models = o.get("models", NETWORKS)
    grid = (o.get("contrasts", CONTRASTS), o.get("epsilons", EPSILONS), o.get("steps", STEPS))
    bundles = [set_preprocess(load_model(m, weights=exp.weights, num_classes=exp.num_classes, device=exp.device),
                              exp.preprocess) for m in models]
    source = open_source(exp.data, bundles[0].categories).select(limit=exp.limit, seed=exp.seed)
    if shard.main:
        batch = min(exp.batch_size, len(source))
        seconds = sum(_step_seconds(b, exp.device, batch) for b in bundles) * math.ceil(len(source) / batch)
        passes = len(grid[0]) * len(grid[1]) * (sum(grid[2]) + 1)
        print(f"{exp.name}: {len(models)} networks × {count(len(source), 'image')} × {len(grid[0])} contrasts × "
              f"{len(grid[1])} ε × steps {list(grid[2])}: about {seconds * passes / 60:.1f} min here", flush=True)
    records: dict[str, list[dict[str, Any]]] = {}
    for name, bundle in zip(models, bundles, strict=True):
        tick = progress(f"{exp.name} {name}", len(source)) if progress and shard.main else None
        records[name] = run_perturbation(bundle, source, *grid, exp.batch_size, exp.device,
                                         where / name.replace(":", "_") / "perturbation_samples.jsonl", tick, shard)
    if not shard.main:
        return []
    where.mkdir(parents=True, exist_ok=True)
    (where / "networks.json").write_text(json.dumps(records, indent=2))
    rows = [["network", "contrast", "ε", "steps", "n", "clean acc", "Δacc", "Δp_t", "Δy_t"]]
    rows += [[name, r["contrast"], f"{r['epsilon']:g}", str(r["steps"]), str(r["n"]), f"{r['clean_accuracy']:.3f}",
              _fmt(r["delta_accuracy"]), _fmt(r["delta_probability"]), _fmt(r["delta_logit"])]
             for name, rs in records.items() for r in rs]
    figures = [networks_chart(records, where / f"networks_eps{e:g}_steps{n}.png", e, n)
               for e in grid[1] for n in grid[2]]
    return [Block("h2", f"networks: {exp.name}"),
            Block("p", f"{', '.join(models)} on {source.description}: {count(len(source), 'sample')}; labels from "
                       f"{source.labels_from}."), Block("table", rows), *[Block("image", f) for f in figures]]


def _step_seconds(bundle: Any, device: str, batch: int) -> float:
    """Seconds of one gradient step (forward and backward) of a batch through ``bundle``, measured once."""
    import time

    from ..evaluation.perturbation import perturb

    size = bundle.preprocess.crop or 224
    x = torch.rand(batch, 3, size, size, device=device)
    model = bundle.pixel_model()
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    perturb(model, x[:1], labels[:1], "weighted", 1e-3, 1)  # warm-up
    start = time.perf_counter()
    perturb(model, x, labels, "weighted", 1e-3, 1)
    return time.perf_counter() - start


def _sigma(value: Any) -> float | tuple[float, float]:
    return (float(value[0]), float(value[1])) if isinstance(value, (list, tuple)) else float(value)


def _perturbation_blocks(records: list[dict[str, Any]], arch: str) -> list[Block]:
    ref = study.PERTURBATION.get(arch)
    head = ["contrast", "ε", "steps", "n", "clean acc", "Δacc", "Δp_t", "Δy_t"]
    if ref:
        head += ["study Δacc", "study Δp_t", "study Δy_t"]
    rows = [head]
    for r in records:
        row = [r["contrast"], f"{r['epsilon']:g}", str(r["steps"]), str(r["n"]), f"{r['clean_accuracy']:.3f}",
               _fmt(r["delta_accuracy"]), _fmt(r["delta_probability"]), _fmt(r["delta_logit"])]
        if ref:
            s = ref.get((r["epsilon"], r["steps"]), {}).get(r["contrast"])
            row += [_fmt(v) for v in s] if s else ["–"] * 3
        rows.append(row)
    blocks = [Block("table", rows)]
    if ref:
        blocks.append(Block("p", f"Study numbers: {arch} on the full ImageNet validation set (Appendix G1)."))
    return blocks


def _study_masking_rows() -> list[list[str]]:
    head = ["Method", "Target", "p_t"] + [f"{b} {m} {w}" for b in ("Gaussian Blur", "Zeros", "Channel-wise Mean")
                                         for m in ("Pos.", "Neg.") for w in ("ori.", "wtd.")]
    rows = [head]
    names = {"linear_approx": "LA", "gradcam": "GC", "xgradcam": "XC"}
    for (method, tgt), (clean, cells) in study.MASKING.items():
        row = [names[method], tgt, f"{clean:.3f}"]
        for b in ("blur", "zeros", "mean"):
            row += [f"{v:.3f}" for v in cells[b]]
        rows.append(row)
    return rows


def run_suite(config: Config, out: Path, shard: Dist, progress: Progress | None = None) -> list[Path]:
    """Every experiment of ``config``; on the main rank, the report. Returns the report paths."""
    out.mkdir(parents=True, exist_ok=True)
    blocks = [Block("h1", f"classcontrast reproduction: {config.path.name}")]
    for exp in config.experiments:
        blocks += run_experiment(exp, out, shard, progress)
        shard.barrier()
    if not shard.main:
        return []
    (out / "config.toml").write_text(config.text)
    info = versions() | {"processes": str(shard.world)}
    (out / "versions.json").write_text(json.dumps(info, indent=2))
    blocks += [Block("h2", "Configuration"), Block("code", config.text), Block("h2", "Versions"),
               Block("table", [["package", "version"], *[[k, v] for k, v in info.items()]])]
    return write_report(blocks, out, f"classcontrast: {config.path.name}")
