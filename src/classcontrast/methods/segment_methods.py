r"""Segment-based gradient-free methods: feature ablation and KernelSHAP over superpixels (or a user's mask), and
RISE over random low-resolution masks — each with every contrast from the same perturbed forwards.

A segment is switched off by replacing it with ``baseline`` in every channel; a segment's attribution is written at
each of its pixels (one value for all channels: the feature is the whole segment).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import ClassContrastError
from ..spatial import resize
from ..targets import whole
from .base import Recording, check_internal_batch_size, row_chunks
from .perturbation import PerturbationMethod, Score, baseline_rows, check_baseline
from .segments import segments_of


def _spread(values: Tensor, seg: Tensor) -> Tensor:
    """(R, B, F) per-segment values -> (R, B, *S) at every pixel of each segment (``seg``: (B, *S))."""
    r, b = values.shape[:2]
    index = seg.flatten(1)[None].expand(r, -1, -1)
    return values.gather(2, index).reshape(r, b, *seg.shape[1:])


class _Segmented(PerturbationMethod):
    """A method over segments: ``segments`` (None: SLIC superpixels, a number of them, or an integer mask) and
    ``baseline`` (a number or a tensor broadcastable to the inputs)."""

    option_help: ClassVar[dict[str, str]] = {"segments": "SLIC superpixels per image",
                                             "baseline": "the value a segment takes when switched off"}

    def __init__(self, segments: int | Tensor | None = None, baseline: float | str | Tensor = 0.0,
                 internal_batch_size: int | None = None) -> None:
        self.segments = segments
        self.baseline = check_baseline(baseline)
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def coalition_scores(self, x: Tensor, seg: Tensor, plans: list[Tensor], score: Score) -> tuple[Tensor, int]:
        """(R, B, N) every objective on each image's coalitions (``plans[b]``: (N_b, F_b), True: the segment kept),
        and the most segments of any image."""
        n = max(z.shape[1] for z in plans)
        on = [torch.nn.functional.pad(z, (0, n - z.shape[1]), value=True).to(x.device) for z in plans]

        def make(x: Tensor, images: Tensor, which: Tensor) -> Tensor:
            rows = torch.stack([on[int(i)][int(w)] for i, w in zip(images, which, strict=True)])
            return self.switched(x, seg, rows, images)

        return self.sample_scores(x, [len(z) for z in plans], make, score).double(), n

    def switched(self, x: Tensor, seg: Tensor, on: Tensor, images: Tensor) -> Tensor:
        """The rows for ``images`` with segment f kept where ``on[row, f]`` and replaced by the baseline elsewhere."""
        keep = on.gather(1, seg[images].flatten(1)).reshape(len(images), 1, *seg.shape[1:]).to(x.dtype)
        return x[images] * keep + baseline_rows(self.baseline, x, images) * (1 - keep)


class FeatureAblation(_Segmented):
    r"""Feature ablation (Captum's ``FeatureAblation`` with a feature mask): segment f's attribution is
    $O(x) - O(x_{f \to \text{baseline}})$, for every contrast's objective O. One forward per segment and image.

    ``segments``: None (scikit-image's SLIC, 50 superpixels of the image), a number of superpixels, or an integer
    mask (*S) or (B, *S) — e.g. a segmenter's regions (``ex.units``' masks) to ask which region mattered.
    """

    name = "feature_ablation"

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        seg = segments_of(x, self.segments)
        counts = [int(s.max()) + 1 for s in seg]
        n = max(counts)

        def make(x: Tensor, images: Tensor, which: Tensor) -> Tensor:
            on = torch.ones(len(images), n, dtype=torch.bool, device=x.device)
            on[torch.arange(len(images), device=x.device), which] = False
            return self.switched(x, seg, on, images)

        drop = clean[..., None] - self.sample_scores(x, counts, make, score)
        return _spread(drop, seg)


def weighted_fit(z: Tensor, v: Tensor, weight: Tensor) -> Tensor:
    """(R, F) the coefficients of the weighted least-squares fit, with an intercept, of each objective's scores ``v``
    (R, N) on the coalitions ``z`` (N, F), each weighted by ``weight`` (N,)."""
    root = weight.sqrt()
    design = torch.cat([torch.ones_like(z[:, :1]), z], 1) * root[:, None]
    coef: Tensor = torch.linalg.pinv(design) @ (v * root).T  # (1 + F, R)
    return coef[1:].T


def _shapley_weights(f: int) -> Tensor:
    """w(s) = s! (F − s − 1)! / F! for coalitions of s = 0 … F − 1 other features."""
    return torch.tensor([math.factorial(s) * math.factorial(f - s - 1) / math.factorial(f) for s in range(f)],
                        dtype=torch.float64)


def coalitions(f: int, samples: int, seed: int) -> tuple[Tensor, bool]:
    """(N, F) coalitions (True: the segment kept) and whether they are all 2^F of them.

    All 2^F when that is at most ``samples`` (exact Shapley values); otherwise Captum's KernelShap sampler, draw for
    draw: all segments, none, then ``samples − 2`` coalitions of k segments, k drawn with probability ∝
    (F − 1)/(k (F − k)) and the k segments as the top k of F normal draws (a generator seeded with ``seed``).
    """
    if 2**f <= samples:
        bits = torch.arange(2**f)[:, None] >> torch.arange(f)[None]
        return (bits & 1).bool(), True
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(f, dtype=torch.float)
    probs = torch.tensor(float(f - 1)) / (k * (f - k))
    probs[0] = 0.0
    probs = probs / probs.sum(-1, keepdim=True)
    rows = [torch.ones(f, dtype=torch.bool), torch.zeros(f, dtype=torch.bool)]
    for _ in range(samples - 2):
        chosen = int(torch.multinomial(probs[None], 1, True, generator=g).T)
        values = torch.randn(1, f, generator=g)
        threshold = torch.kthvalue(values, f - chosen).values.item()
        rows.append((values > threshold)[0])
    return torch.stack(rows), False


class KernelShap(_Segmented):
    r"""KernelSHAP (Lundberg & Lee 2017) over segments, for every contrast's objective O.

    With $2^F \le$ ``samples`` (F segments) every coalition is scored and the values are the **exact Shapley
    values** $\phi_f = \sum_{S \not\ni f} \frac{|S|!(F-|S|-1)!}{F!}\,(v(S \cup f) - v(S))$, $v(S)$ = O of the input
    with the segments outside S at the baseline — so $\sum_f \phi_f = O(x) - O(\text{baseline})$ exactly. Otherwise
    Captum's ``KernelShap`` estimator, sample for sample (`coalitions`; seeded by ``seed``, each image drawing the
    same sequence): a linear regression with intercept of v on the coalitions, weighted $10^6$ for all and none
    and 1 otherwise (Captum's kernel; the sampling distribution carries the Shapley kernel).
    """

    option_help: ClassVar[dict[str, str]] = {
        "samples": "coalitions (all of them, exact Shapley values, when 2^segments is fewer)", "seed": "random seed"}

    name = "kernel_shap"

    def __init__(self, segments: int | Tensor | None = None, baseline: float | str | Tensor = 0.0, samples: int = 256,
                 seed: int = 0, internal_batch_size: int | None = None) -> None:
        super().__init__(segments, baseline, internal_batch_size)
        self.samples = whole(samples, "samples", 3)
        self.seed = whole(seed, "seed", 0)

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        seg = segments_of(x, self.segments)
        plans = [coalitions(int(s.max()) + 1, self.samples, self.seed) for s in seg]
        v, n = self.coalition_scores(x, seg, [z for z, _ in plans], score)
        phi = v.new_zeros(v.shape[0], x.shape[0], n)
        for b, (z, exact) in enumerate(plans):
            vb = v[:, b, :len(z)]
            f = z.shape[1]
            zd = z.to(v.device, torch.float64)
            if exact:
                w = _shapley_weights(f).to(v.device)
                size = zd.sum(1).long()
                gain = zd * w[(size - 1).clamp_min(0)][:, None] - (1 - zd) * w[size.clamp_max(f - 1)][:, None]
                phi[:, b, :f] = vb @ gain
            else:
                weight = torch.ones(len(z), dtype=torch.float64, device=v.device)
                weight[z.all(1) | ~z.any(1)] = 1e6
                phi[:, b, :f] = weighted_fit(zd, vb, weight)
        return _spread(phi.to(x.dtype), seg)


class Lime(_Segmented):
    r"""LIME (Ribeiro et al. 2016) over segments, for every contrast's objective O: ``samples`` random coalitions
    $z \in \{0, 1\}^F$ (each segment kept with probability ½, a generator seeded with ``seed``: every image draws the
    same sequence), each scored as O of the input with the segments outside z at ``baseline``, and weighted by
    Captum's default kernel $\pi(z) = \exp(-d^2/2)$, $d = 1 - \cos(x, x_z)$ the cosine distance of the perturbed
    input to the input; the attributions are the coefficients of the weighted least-squares fit (with intercept) of
    O on z. Captum's ``Lime`` with ``interpretable_model=SkLearnLinearRegression()`` (its default is a Lasso) and the
    same samples gives the same map. Every contrast and target is fitted on the same forwards.
    """

    option_help: ClassVar[dict[str, str]] = {"samples": "random coalitions", "seed": "random seed"}

    name = "lime"

    def __init__(self, segments: int | Tensor | None = None, baseline: float | str | Tensor = 0.0, samples: int = 256,
                 seed: int = 0, internal_batch_size: int | None = None) -> None:
        super().__init__(segments, baseline, internal_batch_size)
        self.samples = whole(samples, "samples", 2)
        self.seed = whole(seed, "seed", 0)

    def draws(self, f: int) -> Tensor:
        """(samples, F) the coalitions (True: the segment kept), the same for every image with F segments."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.bernoulli(torch.full((self.samples, f), 0.5, dtype=torch.float64), generator=g).bool()

    def similarity(self, x: Tensor, seg: Tensor, b: int, z: Tensor) -> Tensor:
        """(N,) the kernel weights of image ``b``'s coalitions ``z`` (N, F), from per-segment sums of x², x·x' and
        x'² (x' the baseline): no perturbed image is made for them."""
        f = z.shape[1]
        xb = x[b].double()
        base = baseline_rows(self.baseline, x, torch.tensor([b], device=x.device))
        xr = (base[0] if isinstance(base, Tensor) else torch.full_like(x[b], base)).double()
        index = seg[b].flatten()[None].expand(xb.shape[0], -1).flatten()
        sums = [torch.zeros(f, dtype=torch.float64, device=x.device).index_add_(0, index, v.flatten())
                for v in (xb * xb, xb * xr, xr * xr)]
        on = z.to(device=x.device, dtype=torch.float64)
        dot = on @ sums[0] + (1 - on) @ sums[1]
        norm = torch.sqrt(sums[0].sum() * (on @ sums[0] + (1 - on) @ sums[2]))
        distance = 1 - dot / norm.clamp_min(1e-8)
        return torch.exp(-(distance**2) / 2)

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        seg = segments_of(x, self.segments)
        plans = [self.draws(int(s.max()) + 1) for s in seg]
        v, n = self.coalition_scores(x, seg, plans, score)
        phi = v.new_zeros(v.shape[0], x.shape[0], n)
        for b, z in enumerate(plans):
            weight = self.similarity(x, seg, b, z).to(v.device)
            phi[:, b, : z.shape[1]] = weighted_fit(z.to(v.device, torch.float64), v[:, b], weight)
        return _spread(phi.to(x.dtype), seg)


class RISE(PerturbationMethod):
    r"""RISE (Petsiuk et al. 2018): ``samples`` random masks $M_n$ — a grid of ``cells`` per spatial side, each cell
    kept with probability ``keep`` (Petsiuk's p), upsampled linearly to (cells + 1) cell sizes and cropped at a
    random shift — scored by every contrast's objective O on $x \odot M_n$ (the masks blend the preprocessed input
    towards 0). The same masks for every image, drawn from a generator seeded with ``seed``.

    **Centred** (``centred=True``, the default): $\frac{1}{N\,\mathrm{keep}}\sum_n \big(O(x \odot M_n) -
    \bar O\big)\, M_n$, $\bar O$ the mean score over the masks — an estimate of
    $\mathbb E[O \mid \text{pixel kept}] - \mathbb E[O]$: positive where keeping a pixel raises the score above
    its average under the masks, negative where it lowers it, 0 for a pixel that does not matter. A signed map that
    means something (the original is that plus $\bar O$ times the masks' coverage: a large constant with a small
    variation, drawn as one flat colour). ``centred=False``: the original
    $\frac{1}{N\,\mathrm{keep}}\sum_n O(x \odot M_n)\, M_n$, Petsiuk's saliency (and Captum-free
    implementations').
    """

    option_help: ClassVar[dict[str, str]] = {
        "samples": "masks", "cells": "mask cells per side", "keep": "probability that a mask cell is kept",
        "seed": "random seed", "centred": "E[O | pixel kept] − E[O]; --no-centred: the original RISE"}

    name = "rise"

    def __init__(self, samples: int = 1000, cells: int = 7, keep: float = 0.5, seed: int = 0, centred: bool = True,
                 internal_batch_size: int | None = None) -> None:
        self.samples = whole(samples, "samples", 1)
        self.cells = whole(cells, "cells", 1)
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ClassContrastError(f"keep (the probability that a mask cell is kept) must be in (0, 1], got {keep!r}")
        self.keep = float(keep)
        self.seed = whole(seed, "seed", 0)
        self.centred = centred
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def plan(self, size: tuple[int, ...]) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        """The grids (N, cells, ...) of kept cells, the shifts (N, d) and the cell size per dimension."""
        g = torch.Generator().manual_seed(self.seed)
        grid = torch.rand(self.samples, *([self.cells] * len(size)), generator=g) < self.keep
        cell = tuple(-(-s // self.cells) for s in size)
        shifts = torch.stack([torch.randint(0, c, (self.samples,), generator=g) for c in cell], 1)
        return grid, shifts, cell

    def masks(self, which: Tensor, size: tuple[int, ...], like: Tensor,
              plan: tuple[Tensor, Tensor, tuple[int, ...]] | None = None) -> Tensor:
        """(Q, *S) masks number ``which`` for inputs of spatial size ``size``, in ``like``'s dtype and device."""
        grid, shifts, cell = plan or self.plan(size)
        big = tuple((self.cells + 1) * c for c in cell)
        up = resize(grid[which.cpu()].to(like.device, like.dtype)[:, None], big)[:, 0]
        out = []
        for m, shift in zip(up, shifts[which.cpu()], strict=True):
            out.append(m[tuple(slice(int(a), int(a) + s) for a, s in zip(shift, size, strict=True))])
        return torch.stack(out)

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        size = tuple(x.shape[2:])
        plan = self.plan(size)

        def make(x: Tensor, images: Tensor, which: Tensor) -> Tensor:
            return x[images] * self.masks(which, size, x, plan)[:, None]

        v = self.sample_scores(x, self.samples, make, score)  # (R, B, N)
        if self.centred:
            v = v - v.mean(-1, keepdim=True)
        out = x.new_zeros(*v.shape[:2], *size)
        for q in row_chunks(self.samples, max(self.internal_batch_size, 64), x.device):
            out += torch.einsum("rbq,q...->rb...", v[..., q], self.masks(q, size, x, plan))
        return out / (self.samples * self.keep)


__all__ = ["RISE", "FeatureAblation", "KernelShap", "coalitions"]
