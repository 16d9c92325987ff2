r"""Contrast-aware faithfulness: deletion, insertion, ROAD and average drop / increase in confidence, for
every method × contrast, scored on the contrast's own objective as well as p_t and y_t.

For each image and map (target t = the label, or the clean top-1 without labels), pixels are ranked by
the signed map, most relevant first (ties broken by pixel index). At removal fractions f ∈ {0} ∪
``fractions``:

* deletion (MoRF): the round(f·HW) most relevant pixels replaced by the baseline;
* insertion: the baseline with the round(f·HW) most relevant pixels put back (LeRF read backwards: the
  least relevant removed first).

Each curve is scored three ways: p_t, y_t and the contrast's objective O (``weighted``: logit(p_t) =
y_t − log Σ_{s≠t} e^{y_s}). Summaries: the area under each curve (trapezoid over f ∈ [0, 1]) and
MoRF − LeRF = AUC(deletion) − AUC(LeRF) (LeRF at f is insertion at 1 − f; for fractions symmetric in
[0, 1], AUC(LeRF) = AUC(insertion)). A seeded random map gives the "chance" row of every table.

Average drop and increase in confidence (Chattopadhyay et al., WACV 2018), with the map as a soft mask
M = ReLU(map) / max ReLU(map) on the model input: mean of max(0, p − p_masked) / p, and the share of images
whose p rises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..baselines import KINDS, baseline
from ..contrasts import get_contrast
from ..data.sources import SampleSource
from ..distributed import Dist
from ..engine import explain
from ..errors import ClassContrastError
from ..methods import check_options, options_for
from ..models import ModelBundle
from ..scale.workers import Workers
from ..state import predict
from .road import road_impute
from .runner import (
    batch_at,
    batch_generator,
    batch_ranges,
    markdown_rows,
    mean,
    model_device,
    run_setup,
    sample_log,
    write_table,
)
from .sensitivity import class_sensitivities

METHODS = ("gradcam", "linear_approx", "gradient_x_input")
CONTRASTS = ("original", "mean", "max", "weighted")
BASELINES = KINDS  # blur, zeros, mean; add "road" for ROAD's noisy linear imputation (slower)
ALL_BASELINES = (*KINDS, "road")
SCORES = ("probability", "logit", "contrast")
RANDOM = "random"


def default_fractions(steps: int = 20) -> list[float]:
    """``steps`` equal steps of the image area: 1/steps, 2/steps, ..., 1."""
    return [(i + 1) / steps for i in range(steps)]


def check_grid(baselines: Sequence[str], scores: Sequence[str], fractions: Sequence[float]) -> list[float]:
    """Validate the grid; the fractions sorted with 0 in front (the clean image)."""
    for b in baselines:
        if b not in ALL_BASELINES:
            raise ClassContrastError(f"unknown baseline {b!r}; choose from {', '.join(ALL_BASELINES)}")
    for s in scores:
        if s not in SCORES:
            raise ClassContrastError(f"unknown score {s!r}; choose from {', '.join(SCORES)}")
    if not fractions:
        raise ClassContrastError("give at least one fraction")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ClassContrastError(f"fractions must be in (0, 1], got {bad[0]}")
    return [0.0, *sorted(set(float(f) for f in fractions))]


def ranking(maps: Tensor) -> Tensor:
    """Each pixel's rank (0 = most relevant) in (B, H, W) signed maps; ties: the lower pixel index first."""
    order = torch.argsort(-maps.flatten(1), dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks.view_as(maps)


def counts(fractions: Sequence[float], pixels: int) -> list[int]:
    """Pixels removed (deletion) or put back (insertion) at each fraction."""
    return [round(f * pixels) for f in fractions]


def curve_images(x: Tensor, base: Tensor | None, ranks: Tensor, ks: Sequence[int], kind: str,
                 road: dict[str, Any] | None = None) -> Tensor:
    """(B, S, C, H, W): for each of the S counts k, the image with its k most relevant pixels replaced by
    the baseline (``deletion``) or the baseline with them put back (``insertion``). With ``road`` (noise,
    generator), replaced pixels are imputed from the kept ones instead of taken from ``base``."""
    k = torch.tensor(ks, device=x.device).view(1, -1, 1, 1)
    top = ranks[:, None] < k  # (B, S, H, W): the k most relevant pixels
    removed = top if kind == "deletion" else ~top
    if road is not None:
        flat = road_impute(x[:, None].expand(-1, len(ks), -1, -1, -1).flatten(0, 1), removed.flatten(0, 1),
                           road["noise"], road["generator"])
        return flat.view(x.shape[0], len(ks), *x.shape[1:])
    assert base is not None
    return torch.where(removed[:, :, None], base[:, None], x[:, None])


def auc(values: Sequence[float], fractions: Sequence[float]) -> float:
    """Trapezoid area under ``values`` over ``fractions`` (which run from 0 to at most 1)."""
    return math.fsum((fractions[i + 1] - fractions[i]) * (values[i] + values[i + 1]) / 2
                     for i in range(len(values) - 1))


def _scores(logits: Tensor, t: Tensor, contrast: str) -> dict[str, Tensor]:
    y = logits.double()
    return {"probability": torch.softmax(y, 1).gather(1, t[:, None])[:, 0],
            "logit": y.gather(1, t[:, None])[:, 0],
            "contrast": get_contrast(contrast).score(y, t)}


def soft_mask(maps: Tensor) -> Tensor:
    """ReLU(map) scaled to [0, 1] per image (an all-negative map masks everything)."""
    pos = maps.clamp_min(0)
    return pos / pos.flatten(1).amax(1).clamp_min(torch.finfo(pos.dtype).tiny).view(-1, 1, 1)


def run_faithfulness(
    bundle: ModelBundle,
    source: SampleSource | str | Sequence[str] | None,
    methods: Sequence[str] = METHODS,
    contrasts: Sequence[str] = CONTRASTS,
    baselines: Sequence[str] = BASELINES,
    scores: Sequence[str] = SCORES,
    fractions: Sequence[float] | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    seed: int = 0,
    layer: str | None = None,
    road_noise: float = 0.01,
    log_path: Path | None = None,
    progress: Any = None,
    shard: Dist | None = None,
    method_options: dict[str, Any] | None = None,
    limit: int | None = None,
    workers: Workers | None = None,
) -> dict[str, Any]:
    """Deletion / insertion curves for methods × contrasts (+ a random map) × baselines.

    ``source`` is a `SampleSource` or any ``--data`` value (class folders, a flat folder, image files,
    ``imagenet:`` / ``cub200:`` / ``food101:``; None: the bundled photos), as for the audit; ``limit``
    keeps its first images.

    Returns ``{"records": [...], "confidence": [...], "info": {...}}``: one record per method × contrast ×
    baseline × score (``auc_deletion``, ``auc_insertion``, ``morf_minus_lerf`` with standard errors, the
    mean curves, ``n``), and one confidence record per method × contrast (``average_drop``,
    ``increase_in_confidence``, in %). Per-sample rows go to ``log_path`` (resumable, torchrun-sharded).
    ``method_options`` (e.g. ``{"steps": 16}``) go to the methods that accept them; rows are kept per
    method and options, so a resumed run with other options recomputes instead of mixing. ``workers``: where the
    batches run (`classcontrast.scale.workers.Workers`: this process by default, or Ray Data workers); this process
    writes the rows either way.
    """
    if not isinstance(source, SampleSource):
        from ..data.specs import open_source

        source = open_source(source, bundle.categories)
    if limit is not None:
        source = source.select(limit=limit, seed=None)
    grid = check_grid(baselines, scores, fractions or default_fractions())
    for c in contrasts:
        get_contrast(c)
    if len(source) == 0:
        raise ClassContrastError(f"{source.description}: no images to evaluate" + (
            f" (--limit {limit})" if limit is not None and limit < 1 else ""))
    check_options(methods, method_options or {})
    shard = shard or Dist()
    opts = {m: options_for(m, {"layer": layer, **(method_options or {})}) for m in methods}
    label = {m: json.dumps(o, sort_keys=True, default=str) for m, o in opts.items()} | {RANDOM: "{}"}
    key = ("id", "method", "options", "contrast", "baseline")
    combos = [(m, c) for m in (*methods, RANDOM) for c in contrasts]
    # the random map is drawn per batch: the batch size is part of what a row depends on
    setup = run_setup(bundle, fractions=list(grid), scores=list(scores), seed=seed, road_noise=road_noise,
                      batch_size=batch_size)
    workers = workers or Workers()
    if workers.engine != "local" and shard.world > 1:
        raise ClassContrastError("--engine ray runs the batches on Ray's workers: start it once, not under torchrun")
    workers.start()
    with sample_log(log_path, key, shard, setup, source, batch_size) as log:
        todo, logged = [], {}
        chunks = batch_ranges(len(source), batch_size)
        for k, chunk in enumerate(chunks):
            ids = [source.samples[i].id for i in chunk]
            have = frozenset((i, m, c, b) for i in ids for m, c in combos for b in baselines
                             if log.has(id=i, method=m, options=label[m], contrast=c, baseline=b))
            if shard.owns(k) and len(have) < len(ids) * len(combos) * len(baselines):
                todo.append(k)
                logged[k] = have
        job = _Job(source, batch_size, device if workers.engine == "local" else None, seed, road_noise,
                   list(methods), list(contrasts), list(baselines), list(scores), grid, opts, label, logged)
        for k, rows in workers.map(todo, bundle, partial(_curves_of_batch, job)):
            log.add(rows)
            if progress is not None:
                progress(len(chunks[k]))
    current = [r for r in log.rows if r.get("options") == label.get(r["method"])]  # not other options' rows
    result = summarize(current, combos, baselines, scores, grid)
    result["info"]["method_options"] = {m: json.loads(label[m]) for m in methods}
    return result


@dataclass(frozen=True)
class _Job:
    """What every batch of a faithfulness run needs (shipped once to each Ray worker): the data and its batching,
    the settings, each method's options and their label, and per batch the rows logged before."""

    source: SampleSource
    batch_size: int
    device: Any
    seed: int
    road_noise: float
    methods: list[str]
    contrasts: list[str]
    baselines: list[str]
    scores: list[str]
    grid: list[float]
    opts: dict[str, dict[str, Any]]
    label: dict[str, str]
    logged: dict[int, frozenset[tuple[str, str, str, str]]]


def _curves_of_batch(job: _Job, bundle: ModelBundle, k: int) -> list[dict[str, Any]]:
    """Batch ``k``'s rows: each method's maps under every contrast (and the random map), then their curves."""
    batch = batch_at(job.source, bundle, job.batch_size, k, job.device or model_device(bundle.model))
    x = bundle.normalize(batch.pixels)
    t = batch.labels
    b_, _, h, w = x.shape
    random_map = torch.rand((b_, h, w), generator=batch_generator(job.seed, batch), dtype=torch.float64).to(x.device)
    maps: dict[tuple[str, str], Tensor] = {}
    sensitivity: dict[tuple[str, str], list[float]] = {}
    clean = predict(bundle.model, x)  # the images' own logits: their probability, and the classes sensitivity compares
    for m in job.methods:
        ex = explain(bundle, x, m, list(job.contrasts), t, **job.opts[m])
        maps.update({(m, c): ex[c].maps[:, 0].detach() for c in job.contrasts})
        if ex.logits.shape[1] >= 3:  # (a foil compares the top-1 rather than two others)
            found = class_sensitivities(bundle, x, m, list(job.contrasts), logits=clean, **job.opts[m])
            sensitivity.update({(m, c): got.sensitivity.tolist() for c, got in zip(job.contrasts, found, strict=True)})
    maps.update({(RANDOM, c): random_map for c in job.contrasts})
    rows = _batch_curves(bundle, x, t, batch, maps, job, counts(job.grid, h * w), job.logged[k], clean)
    place = {sid: i for i, sid in enumerate(batch.ids)}
    for row in rows:
        got = sensitivity.get((row["method"], row["contrast"]))
        row["class_sensitivity"] = None if got is None else got[place[row["id"]]]
    return rows


def _batch_curves(bundle: ModelBundle, x: Tensor, t: Tensor, batch: Any, maps: dict[tuple[str, str], Tensor],
                  job: _Job, ks: Sequence[int], logged: frozenset[tuple[str, str, str, str]], clean: Tensor
                  ) -> list[dict[str, Any]]:
    """One batch's rows (``clean``: the images' own logits): for every map (method, contrast), its masked probability
    and, per baseline not logged yet, each image's deletion and insertion curves. The random map is the same for
    every contrast (only the score differs), so its images are made and run once (``seen``)."""
    bases = {b: baseline(x, b) for b in job.baselines if b != "road"}
    p_clean = _scores(clean, t, "original")["probability"]
    seen: dict[tuple[Any, ...], Tensor] = {}
    rows: list[dict[str, Any]] = []
    for (m, c), smap in maps.items():
        ranks = ranking(smap)
        if (id(smap), "masked") not in seen:
            seen[id(smap), "masked"] = predict(bundle.model, x * soft_mask(smap)[:, None].to(x.dtype))
        p_masked = _scores(seen[id(smap), "masked"], t, c)["probability"]
        for b in job.baselines:
            if all((i, m, c, b) in logged for i in batch.ids):
                continue
            road = {"noise": job.road_noise, "generator": batch_generator(job.seed, batch)} if b == "road" else None
            for i, sid in enumerate(batch.ids):  # one image's curves at a time: memory stays bounded
                row: dict[str, Any] = {"id": sid, "label": int(t[i]), "method": m, "options": job.label[m],
                                       "contrast": c, "baseline": b, "p": float(p_clean[i]),
                                       "p_masked": float(p_masked[i])}
                for kind in ("deletion", "insertion"):
                    base = bases[b][i : i + 1] if b in bases else None
                    if (id(smap), b, i, kind) not in seen:
                        images = curve_images(x[i : i + 1], base, ranks[i : i + 1], ks, kind, road)[0]
                        seen[id(smap), b, i, kind] = torch.cat([
                            predict(bundle.model, images[j : j + job.batch_size])
                            for j in range(0, len(images), job.batch_size)])
                    got = _scores(seen[id(smap), b, i, kind], t[i : i + 1].expand(len(ks)), c)
                    row[kind] = {s: got[s].tolist() for s in job.scores}
                rows.append(row)
    return rows


def _se(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def summarize(rows: list[dict[str, Any]], combos: Sequence[tuple[str, str]], baselines: Sequence[str],
              scores: Sequence[str], fractions: Sequence[float]) -> dict[str, Any]:
    """Per method × contrast × baseline × score: AUCs (mean ± standard error) and mean curves."""
    lerf_x = [1 - f for f in reversed(fractions)]
    records, confidence = [], []
    for m, c in combos:
        for b in baselines:
            rs = sorted((r for r in rows if (r["method"], r["contrast"], r["baseline"]) == (m, c, b)),
                        key=lambda r: r["id"])
            for s in scores:
                dele = [auc(r["deletion"][s], fractions) for r in rs]
                ins = [auc(r["insertion"][s], fractions) for r in rs]
                lerf = [auc(list(reversed(r["insertion"][s])), lerf_x) for r in rs]
                diff = [d - e for d, e in zip(dele, lerf, strict=True)]
                records.append({
                    "method": m, "contrast": c, "baseline": b, "score": s, "n": len(rs),
                    "auc_deletion": mean(dele), "auc_deletion_se": _se(dele),
                    "auc_insertion": mean(ins), "auc_insertion_se": _se(ins),
                    "morf_minus_lerf": mean(diff), "morf_minus_lerf_se": _se(diff),
                    "deletion_curve": [mean(r["deletion"][s][i] for r in rs) for i in range(len(fractions))],
                    "deletion_curve_se": [_se([r["deletion"][s][i] for r in rs]) for i in range(len(fractions))],
                    "insertion_curve": [mean(r["insertion"][s][i] for r in rs) for i in range(len(fractions))],
                    "insertion_curve_se": [_se([r["insertion"][s][i] for r in rs]) for i in range(len(fractions))],
                })
        rs = {r["id"]: r for r in rows if (r["method"], r["contrast"]) == (m, c)}.values()
        drops = [max(0.0, r["p"] - r["p_masked"]) / r["p"] for r in rs if r["p"] > 0]
        sens = [r["class_sensitivity"] for r in rs if r.get("class_sensitivity") is not None]
        confidence.append({"method": m, "contrast": c, "n": len(rs),
                           "average_drop": 100 * mean(drops),
                           "increase_in_confidence": 100 * mean(float(r["p_masked"] > r["p"]) for r in rs),
                           "class_sensitivity": mean(sens) if sens else None})
    return {"records": records, "confidence": confidence,
            "info": {"fractions": list(fractions), "baselines": list(baselines), "scores": list(scores),
                     "images": len({r["id"] for r in rows})}}


def tables(result: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    """(caption, rows) per table: one per score, rows method × contrast (random last), columns baseline ×
    deletion ↓ / insertion ↑ / MoRF−LeRF ↓, the best of each column in bold (per contrast for the
    contrast's own objective, whose scale differs between contrasts); then average drop / increase."""
    records = result["records"]
    baselines = result["info"]["baselines"]
    out = []
    for score in result["info"]["scores"]:
        rows = [r for r in records if r["score"] == score]
        combos = list(dict.fromkeys((r["method"], r["contrast"]) for r in rows))
        cells = {(r["method"], r["contrast"], r["baseline"]): r for r in rows}
        head = ["method", "contrast"] + [f"{b} {k}" for b in baselines for k in ("del ↓", "ins ↑", "MoRF−LeRF ↓")]

        def group(c: str, score: str = score) -> str:  # each contrast has its own objective: like with like
            return c if score == "contrast" else ""

        best = {}
        for b in baselines:
            for g in {group(c) for _, c in combos}:
                col = [cells[(m, c, b)] for m, c in combos if (m, c, b) in cells and group(c) == g]
                best[(b, g, "d")] = min(r["auc_deletion"] for r in col)
                best[(b, g, "i")] = max(r["auc_insertion"] for r in col)
                best[(b, g, "m")] = min(r["morf_minus_lerf"] for r in col)
        table = [head]
        for m, c in combos:
            row = [m, c]
            for b in baselines:
                r = cells[(m, c, b)]
                for k, field in (("d", "auc_deletion"), ("i", "auc_insertion"), ("m", "morf_minus_lerf")):
                    v = f"{r[field]:.3f}"
                    row.append(f"**{v}**" if r[field] == best[(b, group(c), k)] else v)
            table.append(row)
        label = {"probability": "p_t", "logit": "y_t",
                 "contrast": "the contrast's own objective; bold: the best per contrast"}[score]
        out.append((f"Scored on {label} (areas under the curves, x = fraction of pixels, n = "
                    f"{rows[0]['n'] if rows else 0}):", table))
    conf = [["method", "contrast", "average drop % ↓", "increase in confidence % ↑", "class sensitivity"]]
    conf += [[r["method"], r["contrast"], f"{r['average_drop']:.1f}", f"{r['increase_in_confidence']:.1f}",
              "—" if r.get("class_sensitivity") is None else f"{r['class_sensitivity']:.3f}"]
             for r in result["confidence"]]
    out.append(("Average drop / increase in confidence (the map's positive part as a soft mask); class sensitivity "
                "(1 − mean Spearman ρ between the top-1's map and the other top-5 classes'; 0: class-blind):", conf))
    return out


def markdown_tables(result: dict[str, Any]) -> str:
    """`tables` as Markdown."""
    return "\n".join(f"{caption}\n\n{markdown_rows(rows)}\n" for caption, rows in tables(result))


def write_faithfulness(result: dict[str, Any], out: Path) -> list[Path]:
    """``faithfulness.json`` / ``.csv`` (the records), ``faithfulness_confidence.json`` / ``.csv``,
    ``faithfulness.md`` and one curve plot per baseline × score."""
    from .plots import faithfulness_chart

    out.mkdir(parents=True, exist_ok=True)
    flat = [{k: v for k, v in r.items() if not k.endswith("curve") and not k.endswith("curve_se")}
            for r in result["records"]]
    paths = write_table(flat, out, "faithfulness_summary")
    (out / "faithfulness.json").write_text(json.dumps(result["records"], indent=1))
    paths.insert(0, out / "faithfulness.json")
    paths += write_table(result["confidence"], out, "faithfulness_confidence")
    (out / "faithfulness.md").write_text(markdown_tables(result))
    paths.append(out / "faithfulness.md")
    for b in result["info"]["baselines"]:
        for s in result["info"]["scores"]:
            rows = [r for r in result["records"] if r["baseline"] == b and r["score"] == s]
            paths.append(faithfulness_chart(rows, result["info"]["fractions"], out / f"faithfulness_{b}_{s}.png",
                                            f"{b} baseline, scored on {s}"))
    return paths
