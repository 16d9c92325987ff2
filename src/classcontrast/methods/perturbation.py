"""Gradient-free methods: maps from the contrast's score of perturbed inputs, no backward pass.

For a gradient-free method a contrast is one more score of the same perturbed forward passes: each perturbed
input is scored by **every contrast of every unit** from its own logits (``max``'s runner-up and ``weighted``'s α
chosen again for it, as Captum does when its forward function returns the contrast's score), while the targets stay
those of the unperturbed image. So 3 targets × 4 contrasts cost the forwards of one map.

Lifecycle (driven by the engine): the images' own forward (with the method's hooks from ``record``, e.g. a layer
to read) gives each objective's clean value; ``attribute`` then builds its perturbed inputs in batches of at most
``internal_batch_size`` rows, has them scored (``score``: every objective on every row) and combines the scores
into maps. ``perturb`` may add hooks to a perturbed pass (AblationCAM ablates a channel of its layer).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from contextlib import ExitStack, suppress
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from .base import Method, Pass, Recording, check_internal_batch_size, row_chunks

Score = Callable[[Pass], Tensor]  # one pass's perturbed inputs -> (R, B') every objective on every row
Make = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x, image of each row, sample of each row) -> perturbed rows


class PerturbationMethod(Method):
    """A gradient-free method (see the module docstring)."""

    option_help: ClassVar[dict[str, str]] = {
        "internal_batch_size": "perturbed inputs per forward pass: bounds memory, the maps are the same"}

    windows = True  # it only runs the model on inputs: a model run window by window is explained alike
    internal_batch_size: int

    @property
    def linear(self) -> bool:
        return False

    def options(self) -> dict[str, Any]:
        """The settings, a tensor (a baseline, a segment mask) shown by its shape."""
        return {k: f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else v for k, v in super().options().items()}

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        return Recording(input=x)

    def perturb(self, model: nn.Module, p: Pass, stack: ExitStack) -> None:
        """Hooks for one perturbed pass (removed when ``stack`` closes); none by default."""

    @abstractmethod
    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        """Maps (R, B, *S) (or (R, B, C, *S) per channel) from the images ``x``, the clean pass's recording, each
        objective's clean value ``clean`` (R, B) and ``score``."""

    def sample_scores(self, x: Tensor, samples: int | list[int], make: Make, score: Score, **state: Any) -> Tensor:
        """(R, B, N): every objective on ``samples`` perturbed versions of each image (a list: so many of image b;
        N the largest, zeros after an image's own), ``make`` building the rows of one forward — at most
        ``internal_batch_size`` of them, drawn from all images in turn."""
        b = x.shape[0]
        counts = torch.tensor([samples] * b if isinstance(samples, int) else samples, device=x.device)
        image_of = torch.repeat_interleave(torch.arange(b, device=x.device), counts)
        which = torch.arange(len(image_of), device=x.device) - torch.repeat_interleave(counts.cumsum(0) - counts,
                                                                                         counts)
        out: Tensor | None = None
        for q in row_chunks(len(image_of), self.internal_batch_size, x.device):
            images = image_of[q]
            s = score(Pass(make(x, images, which[q]), images, {"samples": which[q], **state}))
            out = s.new_zeros(s.shape[0], b, int(counts.max())) if out is None else out
            out[:, images, which[q]] = s
        assert out is not None
        return out

def baseline_rows(baseline: float | Tensor, x: Tensor, images: Tensor) -> float | Tensor:
    """The baseline of each perturbed row: a number, or a tensor broadcastable to one input (C, *S) or to the
    batch (B, C, *S)."""
    if not isinstance(baseline, Tensor):
        return float(baseline)
    base = baseline.to(device=x.device, dtype=x.dtype)
    if base.ndim == x.ndim:
        return base.expand_as(x)[images]
    try:
        return base.expand(x.shape[1:])
    except RuntimeError as e:
        raise ClassContrastError(f"baseline of shape {tuple(baseline.shape)} does not fit inputs of shape "
                                 f"{tuple(x.shape)}: give a number, a (C, *S) or a (B, C, *S) tensor") from e


def check_baseline(baseline: object) -> float | Tensor:
    """A baseline option: a finite number (``"zeros"`` or a number written out, from the command line) or a tensor of
    finite values (an infinite baseline makes every occluded score, and so every map, infinite or NaN)."""
    if isinstance(baseline, Tensor):
        if baseline.numel() and not bool(torch.isfinite(baseline).all()):
            raise ClassContrastError("baseline holds NaN or infinite values: give finite ones")
        return baseline
    if isinstance(baseline, str):
        with suppress(ValueError):
            baseline = 0.0 if baseline == "zeros" else float(baseline)
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
        raise ClassContrastError(f"baseline must be a finite number or a tensor, got {baseline!r}")
    return float(baseline)


def sizes(value: int | tuple[int, ...] | None, x: Tensor, what: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """A window or stride over the input's (C, *S) dimensions, Captum's convention: a tuple over (C, *S) as given
    (or over *S, all channels); an integer ``w`` is (C, w, w...) for a window (every channel at once) and w in every
    dimension for a stride."""
    dims = tuple(x.shape[1:])
    if value is None:
        return default
    if isinstance(value, bool):
        raise ClassContrastError(f"{what} must be a whole number or a tuple of them, got {value!r}")
    if isinstance(value, int):
        out = (dims[0], *([value] * (len(dims) - 1))) if what == "window" else (value,) * len(dims)
    else:
        out = tuple(value)
        if len(out) == len(dims) - 1:
            out = ((dims[0],) if what == "window" else (1,)) + out
    if len(out) != len(dims) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ClassContrastError(f"{what} must be a whole number >= 1 or a tuple of them over (C, *S) = {dims} "
                                 f"(or over *S), got {value!r}")
    if what == "window" and any(w > d for w, d in zip(out, dims, strict=True)):
        raise ClassContrastError(f"window {out} is larger than the input {dims}")
    return out


def check_gaps(window: tuple[int, ...], stride: tuple[int, ...], dims: tuple[int, ...]) -> None:
    """A stride longer than the window leaves elements between two windows that no window covers (their
    attribution would be 0/0): refused, as Captum's ``Occlusion`` refuses it."""
    for w, s, n in zip(window, stride, dims, strict=True):
        if s > w and n > w:
            raise ClassContrastError(f"occlusion: stride {stride} is longer than the window {window} in a dimension: "
                                     "the elements between windows would be covered by none; use a stride at most "
                                     "the window")


class Occlusion(PerturbationMethod):
    r"""Occlusion (Zeiler & Fergus 2014; Captum's ``Occlusion``): a window slides over the input with ``stride``,
    each position replaced by ``baseline``; an element's attribution is the mean, over the windows covering it, of
    $O(x) - O(x_{\text{occluded}})$ — for every contrast's objective O. Summed over channels unless
    ``keep_channels``.

    ``window``/``stride``: Captum's ``sliding_window_shapes``/``strides`` (a tuple over (C, *S), or over *S with all
    channels); an integer window ``w`` is a (C, w, w) window over all channels, an integer stride is that step in
    every dimension. Defaults: a window of an eighth of each spatial side (at least 1), a stride of half of it.
    Windows start at 0, ``stride`` apart, as many as Captum places (the last may stick out and is cut).
    Cost: one forward per window position and image, batched (``internal_batch_size`` rows a forward).
    """

    option_help: ClassVar[dict[str, str]] = {
        "window": "the sliding window: W (a WxW window over all channels) or C,H,W as Captum's "
                  "sliding_window_shapes (default: an eighth of each side)",
        "stride": "the window's step: S (every dimension) or C,H,W as Captum's strides (default: half the window)",
        "baseline": "the value put in (a number)",
        "keep_channels": "per-channel maps in --save-maps (drawn: their sum)"}

    name = "occlusion"

    def __init__(self, window: int | tuple[int, ...] | None = None, stride: int | tuple[int, ...] | None = None,
                 baseline: float | str | Tensor = 0.0, keep_channels: bool = False,
                 internal_batch_size: int | None = None) -> None:
        if isinstance(window, int) and isinstance(stride, int) and stride > window:
            raise ClassContrastError(f"occlusion: stride {stride} is longer than the window {window}: the pixels "
                                     "between windows would be covered by none; use a stride at most the window")
        self.window = window
        self.stride = stride
        self.baseline = check_baseline(baseline)
        self.keep_channels = keep_channels
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def _windows(self, x: Tensor) -> list[Tensor]:
        """Per dimension of (C, *S): (positions, size) booleans, which elements each window position covers."""
        spatial = tuple(max(1, -(-d // 8)) for d in x.shape[2:])
        window = sizes(self.window, x, "window", (x.shape[1], *spatial))
        stride = sizes(self.stride, x, "stride", (1, *(max(1, w // 2) for w in window[1:])))
        check_gaps(window, stride, tuple(x.shape[1:]))
        out = []
        for n, w, s in zip(x.shape[1:], window, stride, strict=True):
            count = -(-(n - w) // s) + 1
            start = torch.arange(count, device=x.device)[:, None] * s
            at = torch.arange(n, device=x.device)[None]
            out.append((at >= start) & (at < start + w))
        return out

    @staticmethod
    def _masks(cover: list[Tensor], which: Tensor, dtype: torch.dtype) -> Tensor:
        """(Q, C, *S) the windows numbered ``which`` (the first dimension's position varies fastest, as Captum)."""
        mask: Tensor | None = None
        rest = which
        for d, c in enumerate(cover):
            one = c[rest % c.shape[0]].to(dtype)
            rest = rest // c.shape[0]
            one = one.reshape(len(which), *([1] * d), c.shape[1], *([1] * (len(cover) - d - 1)))
            mask = one if mask is None else mask * one
        assert mask is not None
        return mask

    def attribute(self, x: Tensor, rec: Recording, clean: Tensor, score: Score) -> Tensor:
        cover = self._windows(x)
        total = 1
        for c in cover:
            total *= c.shape[0]

        def make(x: Tensor, images: Tensor, which: Tensor) -> Tensor:
            m = self._masks(cover, which, x.dtype)
            return x[images] * (1 - m) + baseline_rows(self.baseline, x, images) * m

        drop = clean[..., None] - self.sample_scores(x, total, make, score)  # (R, B, N)
        out = x.new_zeros(drop.shape[0], *x.shape)
        count = x.new_zeros(x.shape[1:])
        for q in row_chunks(total, max(self.internal_batch_size, 64), x.device):
            m = self._masks(cover, q, x.dtype)
            out += torch.einsum("rbq,q...->rb...", drop[..., q], m)
            count += m.sum(0)
        out = out / count
        return out if self.keep_channels else out.sum(2)


__all__ = ["Occlusion", "PerturbationMethod", "baseline_rows", "check_baseline", "check_gaps", "sizes"]
