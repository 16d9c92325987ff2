r"""A concept atlas of a dataset: the concepts (channels of a layer) that most make it A rather than B, and where each
is most relevant — CRP's relevance maximisation under a contrast.

1. Relevance (resumable): every image's channel relevances $R_c$ for target A under the contrast (`concepts`), one
   Parquet part per batch under ``out/relevance`` (`classcontrast.scale.store.PartStore`: a run started again with
   the same folder computes only the images no part holds, and refuses a folder of other settings).
2. The concepts: the ``concepts`` channels of highest mean relevance over the images labelled A (an image without
   a label: the class the model predicts; all images when none is A), with their means over A's images, B's images
   and all.
3. References (CRP's relevance maximisation, for the pair): per concept, the ``references`` images of the whole
   dataset of highest $R_c(x)\,(p_A(x) + p_B(x))$ — the concept's relevance to "A rather than B" weighted by the
   probability that the image is one of the two, the question's stake in it ($p_A$ alone for a contrast without a
   foil). Unweighted, the images of highest $R_c$ are those of other classes whose logits happen to differ most
   between A and B (a 9's $y_3 - y_8$), where the question is not asked: on the digits, 4 to 25% of the references
   were 3s or 8s unweighted, all of them weighted (three seeds). Only images with a positive weighted relevance and
   a stake of at least `MIN_STAKE` (1%) are shown: fewer references rather than images the question is not about.
   Each reference with its conditional heatmap for
   that channel and a square crop of side ``crop`` × the image's around the heatmap's peak (the positive heatmap
   smoothed over an eighth of the crop), written under ``out/atlas``.
4. ``atlas.json`` (everything the page shows) and ``atlas.html`` (`classcontrast.crp.page`, drawn from the
   json and the crops alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClassContrastError
from ..scale.store import PartStore, write_atomic

ATLAS = "atlas.json"
MIN_STAKE = 0.01  # a reference must be A or B with at least this probability (else the question is not asked there)


@dataclass(frozen=True)
class AtlasRequest:
    """What ``classcontrast concepts`` is asked: target A (a class index), the contrast (`Contrast`; ``Foil(B)``
    for "A rather than B"), the layer, the method, how many concepts and references, the crop's side (a fraction of
    the image's), images per batch, and what the relevance depends on (``settings``)."""

    target: int
    contrast: Any
    layer: str
    method: str = "lrp"
    concepts: int = 6
    references: int = 8
    crop: float = 0.5
    batch_size: int = 16
    settings: dict[str, Any] = field(default_factory=dict)


def build_atlas(bundle: Any, source: Any, req: AtlasRequest, out: Path, report: Callable[[str], None] = print,
                workers: Any = None) -> Path:
    """Steps 1–4 of the module docstring; returns ``atlas.json``'s path. ``workers``: a
    `classcontrast.scale.workers.Workers` (None: this process), step 1 running on its engine."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    store = PartStore(out / "relevance", {**req.settings, "target": req.target, "contrast": repr(req.contrast),
                                          "layer": req.layer, "method": req.method})
    done = store.done()
    todo = [s for s in source if s.stamp() not in done]
    for table in _relevance_blocks(bundle, todo, req, report, workers):
        store.write(table)
    rows = _read(store)
    if not rows["stamp"]:
        raise ClassContrastError("no image could be read: no atlas")
    chosen = _choose(rows, req, bundle.categories)
    by_stamp = {s.stamp(): s for s in source}
    for concept in chosen["concepts"]:
        concept["references"] = _references(bundle, by_stamp, rows, concept["channel"], req, out)
    path = out / ATLAS
    write_atomic(path, json.dumps(chosen, indent=1).encode())
    return path


def _relevance_blocks(bundle: Any, todo: list[Any], req: AtlasRequest, report: Callable[[str], None],
                      workers: Any) -> Iterator[Any]:
    """One pyarrow table per batch (`classcontrast.crp.stage.Relevance`): here, or in Ray workers each loading the
    model once (from ``req.settings``' model and weights)."""
    from ..scale.run import DatasetDone, local_blocks, ray_blocks
    from .stage import ReadAndRelevance, Relevance

    names = bundle.categories
    if workers is not None and workers.engine == "ray":
        # the workers load the model from its spec, or are sent the bundle itself (one made in Python)
        args = (req.settings.get("model") or bundle, req.target, req.contrast, req.layer, req.method)
        yield from ray_blocks(todo, names, DatasetDone(), report, workers=workers, batch_size=req.batch_size,
                              stages=(ReadAndRelevance, Relevance), args=args,
                              kwargs={"weights": req.settings.get("weights", "DEFAULT")})
        return
    yield from local_blocks(Relevance(bundle, req.target, req.contrast, req.layer, req.method), todo, req.batch_size,
                            DatasetDone(), report)


def _read(store: PartStore) -> dict[str, list[Any]]:
    """Every part's columns, joined (one row per image, the first part holding it)."""
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {}
    seen: set[str] = set()
    for part in store.parts():
        table = pq.read_table(part).to_pydict()
        for i, stamp in enumerate(table["stamp"]):
            if stamp in seen:
                continue
            seen.add(stamp)
            for k, v in table.items():
                rows.setdefault(k, []).append(v[i])
    rows.setdefault("stamp", [])
    return rows


def _choose(rows: dict[str, list[Any]], req: AtlasRequest, names: Any) -> dict[str, Any]:
    """The atlas' header and its concepts: the channels of highest mean relevance over A's images."""
    r = np.asarray(rows["relevance"], dtype=np.float64)  # (N, C)
    labels = np.asarray([p if v is None else v for v, p in zip(rows["label"], rows["predicted"], strict=True)])
    foil = getattr(req.contrast, "foil", None)
    foil = int(foil) if isinstance(foil, (int, np.integer)) else None
    over = labels == req.target if (labels == req.target).any() else np.ones(len(labels), dtype=bool)
    mean = r[over].mean(0)
    order = np.argsort(-mean, kind="stable")[: req.concepts]

    def name(c: int | None) -> str | None:
        return None if c is None else (names[c] if names is not None else str(c))

    concepts = []
    for c in order.tolist():
        stats = {"target": float(mean[c]), "all": float(r[:, c].mean())}
        if foil is not None and (labels == foil).any():
            stats["foil"] = float(r[labels == foil, c].mean())
        concepts.append({"channel": int(c), "mean_relevance": stats})
    return {"target": req.target, "target_name": name(req.target), "foil": foil, "foil_name": name(foil),
            "contrast": req.contrast.key(names), "layer": req.layer, "method": req.method, "images": len(r),
            "channels": int(r.shape[1]), "chosen_over": "target" if (labels == req.target).any() else "all",
            "concepts": concepts}


def _references(bundle: Any, by_stamp: dict[str, Any], rows: dict[str, list[Any]], channel: int,
                req: AtlasRequest, out: Path) -> list[dict[str, Any]]:
    """The images where ``channel`` is most relevant to the pair (weighted by its stake: the module docstring), each
    with its heatmap (one `concepts` call for the references of one size) and crop written under ``out/atlas``."""
    import torch

    from ..evaluation.runner import model_device
    from ..scale.stage import by_size
    from .relevance import concepts

    r = np.asarray([v[channel] for v in rows["relevance"]])
    stake = np.asarray(rows["stake"])
    ranked = r * stake
    at_stake = [i for i in np.argsort(-ranked, kind="stable").tolist() if ranked[i] > 0 and stake[i] >= MIN_STAKE]
    chosen = [(rank, i) for rank, i in enumerate(at_stake[: req.references])
              if rows["stamp"][i] in by_stamp]  # (not one of a part of an earlier run over other images)
    device = model_device(bundle.model)
    xs = [by_stamp[rows["stamp"][i]].prepared(bundle.transform).to(device) for _, i in chosen]
    heats: dict[int, Any] = {}
    for group in by_size(xs):
        got = concepts(bundle, torch.stack([xs[g] for g in group]), req.contrast, [req.target] * len(group),
                       layer=req.layer, method=req.method, channels=[channel]).heatmaps[:, 0, 0]
        heats.update({g: got[j] for j, g in enumerate(group)})
    refs = []
    for g, (rank, i) in enumerate(chosen):
        files = _crop(bundle, xs[g][None], heats[g], req.crop, out / "atlas", f"c{channel}_r{rank}")
        label = rows["label"][i]
        shown = label if label is not None else rows["predicted"][i]  # (no label: the model's prediction)
        refs.append({"id": rows["id"][i], "path": rows["path"][i], "label": label, "predicted": rows["predicted"][i],
                     "label_name": bundle.categories[shown] if bundle.categories is not None else str(shown),
                     "relevance": float(r[i]), "stake": float(rows["stake"][i]), **files})
    return refs


def _crop(bundle: Any, x: Any, heat: Any, side: float, folder: Path, stem: str) -> dict[str, Any]:
    """The square crop around the heatmap's peak, as two PNG files (the image, the heatmap over it)."""
    import torch
    from PIL import Image

    from ..viz.overlay import overlay_rgb

    pixels = bundle.normalize.inverse(x)[0] if getattr(bundle, "normalize", None) is not None else x[0]
    image = (pixels.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
    image = np.repeat(image, 3, 2) if image.shape[2] == 1 else image[..., :3]  # grey scans and photos alike
    h, w = heat.shape
    size = max(1, round(side * min(h, w)))
    k = max(1, size // 8) | 1
    smooth = torch.nn.functional.avg_pool2d(heat.clamp_min(0)[None, None].float(), k, 1, k // 2)[0, 0]
    peak = int(smooth.flatten().argmax())
    top = min(max(peak // w - size // 2, 0), h - size)
    left = min(max(peak % w - size // 2, 0), w - size)
    box = (left, top, left + size, top + size)
    folder.mkdir(parents=True, exist_ok=True)
    crop, over = folder / f"{stem}.png", folder / f"{stem}_heat.png"
    Image.fromarray(image).crop(box).save(crop)
    Image.fromarray(overlay_rgb(image, heat.float().cpu().numpy())).crop(box).save(over)
    return {"crop": f"atlas/{crop.name}", "heatmap": f"atlas/{over.name}", "box": list(box)}


__all__ = ["ATLAS", "AtlasRequest", "build_atlas"]
