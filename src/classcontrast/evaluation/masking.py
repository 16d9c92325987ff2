r"""Blurring / masking (paper Table 1; the study's Table 1 and its under-threshold table).

For images whose second class is plausible ($p_{t_2} > \tau$ on the clean image), each of the
top two classes $t_i$ is explained with the original ($y_t$) and the weighted contrast;
only the positive (or only the negative) features of a map are kept, the rest replaced by a baseline
image, and the relative probability $r_i = e^{y'_{t_i}} / (e^{y'_{t_1}} + e^{y'_{t_2}})$ is
measured on the clean $t_1, t_2$. Everything happens in the model's normalised input space.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..baselines import KINDS, baseline
from ..data.sources import SampleSource
from ..distributed import Dist
from ..engine import explain
from ..errors import ClassContrastError
from ..models import ModelBundle
from ..state import predict
from ..text import count
from .runner import batch_generator, batches, markdown_rows, mean, run_setup, sample_log

Rule = Literal["sign", "equal", "legacy"]
Mode = Literal["positive", "negative"]
METHODS = ("linear_approx", "gradcam", "xgradcam")
BASELINES = KINDS
MODES = ("positive", "negative")


def keep_masks(s_orig: Tensor, s_wtd: Tensor, mode: Mode, rule: Rule) -> tuple[Tensor, Tensor]:
    """Masks (1 = keep the pixel) for two maps of shape (..., H, W).

    * ``sign``: keep where the map is > 0 (positive) or < 0 (negative): the paper's basic protocol.
    * ``equal``: keep the top-k (positive) / bottom-k (negative) pixels of each map, k = the smaller of
      the two maps' positive (negative) areas, so both keep the same number of pixels.
    * ``legacy``: the study's exact ``equal_blur``: pixels ranked ascending with argsort().argsort();
      positive replaces the n lowest (n = the smaller positive count); negative replaces ranks > N − n
      (n = the larger negative count), i.e. n − 1 pixels, off by one as in the original code.
    """
    if mode not in MODES:
        raise ClassContrastError(f"unknown mode {mode!r}; choose positive or negative")
    flat_o, flat_w = s_orig.flatten(-2), s_wtd.flatten(-2)
    n_pix = flat_o.shape[-1]
    if rule == "sign":
        keep = [(f > 0) if mode == "positive" else (f < 0) for f in (flat_o, flat_w)]
    elif rule in ("equal", "legacy"):
        rank = [f.argsort(dim=-1, stable=True).argsort(dim=-1, stable=True) for f in (flat_o, flat_w)]
        if mode == "positive":
            n = torch.minimum((flat_o > 0).sum(-1), (flat_w > 0).sum(-1))[..., None]
            keep = [r >= n_pix - n for r in rank] if rule == "equal" else [r >= n for r in rank]
        else:
            if rule == "equal":
                n = torch.minimum((flat_o < 0).sum(-1), (flat_w < 0).sum(-1))[..., None]
                keep = [r < n for r in rank]
            else:
                n = torch.maximum((flat_o < 0).sum(-1), (flat_w < 0).sum(-1))[..., None]
                keep = [r <= n_pix - n for r in rank]
    else:
        raise ClassContrastError(f"unknown area rule {rule!r}; choose sign, equal or legacy")
    return keep[0].reshape(s_orig.shape), keep[1].reshape(s_wtd.shape)


def relative_probability(logits: Tensor, t1: Tensor, t2: Tensor, i: int) -> Tensor:
    """$r_i = e^{y_{t_i}}/(e^{y_{t_1}} + e^{y_{t_2}})$, computed stably as a sigmoid."""
    y1, y2 = logits.gather(1, t1[:, None])[:, 0], logits.gather(1, t2[:, None])[:, 0]
    return torch.sigmoid(y1 - y2) if i == 1 else torch.sigmoid(y2 - y1)


def run_masking(
    bundle: ModelBundle,
    source: SampleSource,
    methods: Sequence[str] = METHODS,
    baselines: Sequence[str] = BASELINES,
    modes: Sequence[Mode] = MODES,
    rule: Rule = "equal",
    threshold: float = 0.1,
    below: bool = False,
    sigma: float | tuple[float, float] = 15.0,
    seed: int = 0,
    layer: str | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    log_path: Path | None = None,
    progress: Any = None,
    shard: Dist | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the masking table. Returns (records, info): one record per method × target index ×
    baseline × mode with ``r_clean``, ``r_original`` and ``r_weighted`` means, and the sample counts."""
    model = bundle.model
    shard = shard or Dist()
    # σ is drawn per batch: the batch size is part of what a row depends on
    setup = run_setup(bundle, threshold=threshold, below=below, sigma=sigma, seed=seed, layer=layer,
                      batch_size=batch_size)
    key = ("id", "method", "target_index", "baseline", "mode", "rule")
    with sample_log(log_path, key, shard, setup, source, batch_size) as log:
        for batch in batches(source, bundle, batch_size, device, shard=shard):
            gen = batch_generator(seed, batch)  # σ ~ U(lo, hi), if asked
            x = bundle.normalize(batch.pixels)
            y = predict(model, x)
            p = torch.softmax(y.double(), 1)
            top = p.topk(2, 1)
            sel = (top.values[:, 1] < threshold) if below else (top.values[:, 1] > threshold)
            if not sel.any():
                continue
            idx = sel.nonzero()[:, 0]
            xs, t = x[idx], top.indices[idx]
            ids = [batch.ids[i] for i in idx.tolist()]
            r_clean = {i: relative_probability(y[idx].double(), t[:, 0], t[:, 1], i) for i in (1, 2)}
            bases = {b: baseline(xs, b, sigma, generator=gen) for b in baselines}
            for method in methods:
                opts = {"layer": layer} if layer is not None and method != "gradient" else {}
                ex = explain(bundle, xs, method, ["original", "weighted"], t, **opts)
                for i in (1, 2):
                    s_o, s_w = ex["original"].maps[:, i - 1], ex["weighted"].maps[:, i - 1]
                    for mode in modes:
                        m_o, m_w = keep_masks(s_o, s_w, mode, rule)
                        for b, base in bases.items():
                            if all(log.has(id=s, method=method, target_index=i, baseline=b, mode=mode, rule=rule)
                                   for s in ids):
                                continue
                            x_o = torch.where(m_o[:, None], xs, base)
                            x_w = torch.where(m_w[:, None], xs, base)
                            y2 = predict(model, torch.cat([x_o, x_w])).double()
                            n = len(ids)
                            r_o = relative_probability(y2[:n], t[:, 0], t[:, 1], i)
                            r_w = relative_probability(y2[n:], t[:, 0], t[:, 1], i)
                            log.add({"id": s, "method": method, "target_index": i, "baseline": b, "mode": mode,
                                     "rule": rule, "t1": int(t[j, 0]), "t2": int(t[j, 1]),
                                     "r_clean": float(r_clean[i][j]), "r_original": float(r_o[j]),
                                     "r_weighted": float(r_w[j]),
                                     "kept_original": int(m_o[j].sum()), "kept_weighted": int(m_w[j].sum())}
                                    for j, s in enumerate(ids))
            if progress is not None:
                progress(len(batch.ids))
    records = []
    for method in methods:
        for i in (1, 2):
            for b in baselines:
                for mode in modes:
                    rs = [r for r in log.rows if r["method"] == method and r["target_index"] == i
                          and r["baseline"] == b and r["mode"] == mode and r["rule"] == rule]
                    records.append({"method": method, "target": f"t{i}", "baseline": b, "mode": mode,
                                    "rule": rule, "n": len(rs), "r_clean": mean(r["r_clean"] for r in rs),
                                    "r_original": mean(r["r_original"] for r in rs),
                                    "r_weighted": mean(r["r_weighted"] for r in rs)})
    selected = {r["id"] for r in log.rows if r["rule"] == rule}
    info = {"images_seen": len(source), "images_selected": len(selected), "threshold": threshold, "below": below,
            "rule": rule, "sigma": sigma}
    return records, info


_NAMES = {"linear_approx": "LA", "gradcam": "GC", "xgradcam": "XC", "gradient": "Grad", "fullgrad": "FG"}
_BASE = {"blur": "Gaussian Blur", "zeros": "Zeros", "mean": "Channel-wise Mean"}


def masking_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """The study's Table 1 layout as rows (header first): method × t1/t2, then p_t and baseline ×
    pos/neg × ori/wtd; the better value of each pair in bold (higher when keeping positive features,
    lower when keeping negative ones)."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    baselines = list(dict.fromkeys(r["baseline"] for r in records))
    modes = list(dict.fromkeys(r["mode"] for r in records))
    rows = [["Method", "Target", "p_t"] + [f"{_BASE.get(b, b)} {'Pos.' if m == 'positive' else 'Neg.'} {w}"
                                           for b in baselines for m in modes for w in ("ori.", "wtd.")]]
    for method in methods:
        for tgt in ("t1", "t2"):
            cells = {(r["baseline"], r["mode"]): r for r in records if r["method"] == method and r["target"] == tgt}
            if not cells:
                continue
            row = [_NAMES.get(method, method), tgt, f"{next(iter(cells.values()))['r_clean']:.3f}"]
            for b in baselines:
                for m in modes:
                    o, w = cells[(b, m)]["r_original"], cells[(b, m)]["r_weighted"]
                    row += [_mark(o, w, m), _mark(w, o, m)]
            rows.append(row)
    return rows


COINCIDE = ("GradCAM, Linear Approximation and XGradCAM give the same rows here: at the last feature map before "
            "global average pooling the three coincide (the gradient is the same at every position; see the concepts "
            "page, \"When maps coincide\"). A layer inside the network separates them: the study's vgg16_bn "
            "features.40, or layer=\"conv_head\" on the embedded model.")


def coinciding_note(records: list[dict[str, Any]]) -> str | None:
    """`COINCIDE` when two or more of Linear Approximation, GradCAM and XGradCAM have identical rows (every target,
    baseline and mode): the one sentence a reader of identical rows needs; None otherwise."""
    def row(method: str) -> list[tuple[Any, ...]]:
        return sorted((r["target"], r["baseline"], r["mode"], round(r["r_original"], 9), round(r["r_weighted"], 9))
                      for r in records if r["method"] == method)

    rows = [row(m) for m in ("linear_approx", "gradcam", "xgradcam")]
    rows = [r for r in rows if r]
    return COINCIDE if len(rows) >= 2 and all(r == rows[0] for r in rows[1:]) else None


def _mark(value: float, other: float, mode: str) -> str:
    better = value > other if mode == "positive" else value < other
    return f"**{value:.3f}**" if better else f"{value:.3f}"


def markdown_table(records: list[dict[str, Any]], info: dict[str, Any] | None = None) -> str:
    """`masking_rows` as a Markdown table, with the sample counts below it."""
    lines = [markdown_rows(masking_rows(records))]
    if info:
        sel = "p_t2 < " if info.get("below") else "p_t2 > "
        lines.append("")
        lines.append(f"{info['images_selected']} of {count(info['images_seen'], 'image')} with "
                     f"{sel}{info['threshold']}; "
                     f"area rule: {info['rule']}.")
    return "\n".join(lines) + "\n"
