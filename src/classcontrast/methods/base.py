"""The method axis: how activations and the gradient of one scalar become a map."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError


@dataclass
class Pass:
    """One forward pass of a call: the model input, the image each row belongs to, and per-row data
    the method needs in ``compute`` (merged into ``Recording.state``)."""

    input: Tensor
    rows: Tensor
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recording:
    """What a method records during one forward pass.

    ``input`` is fed to the model; ``tensors`` are differentiated (gradients come back with a leading
    dimension R, one per objective); ``state`` holds whatever else ``compute`` needs.
    """

    input: Tensor
    tensors: list[Tensor] = field(default_factory=list)
    layer: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A back-propagation explanation method.

    Lifecycle of one call (driven by [`explain`][classcontrast.engine.explain]): for each forward pass given by
    ``passes`` (one, on the images themselves, for most methods), ``record`` registers hooks on the
    ``ExitStack`` (removed when the pass's backward is done) and returns a `Recording`; the
    engine runs the forward pass, calls ``after_forward``, back-propagates R objectives from the logits
    to ``Recording.tensors`` and calls ``compute`` with gradients of shape (R, rows, ...), which returns
    (R, rows, h, w) maps. Rows belonging to the same image are summed.

    ``linear`` is True when the map is linear in the back-propagated gradient (activations fixed):
    then every contrast identity holds exactly, e.g. probability = p_t(1-p_t)·weighted, and the engine
    back-propagates only a basis of the objectives' gradients (see `low_rank`).
    ``batched_vjp`` is False for methods whose backward pass cannot be vectorised over objectives.
    """

    name: ClassVar[str]
    batched_vjp: ClassVar[bool] = True
    # True: the model runs on other inputs than the images (IG path points, noisy copies): targets and
    # logits come from a clean forward pass of their own, the contrast from each pass's output
    multipass: ClassVar[bool] = False
    # appended to the one-line error when the backward pass fails (what the method cannot handle)
    backward_hint: ClassVar[str] = ""
    # True: the method reads only the input and its gradient, so a model run window by window
    # (`classcontrast.models.windows.SlidingWindow`, whose layers run once per window) is explained by it
    windows: ClassVar[bool] = False
    # True: no backward pass; the map comes from the objectives' values on perturbed inputs
    # (`classcontrast.methods.perturbation.PerturbationMethod`)
    gradient_free: ClassVar[bool] = False

    @property
    def linear(self) -> bool:
        """Whether ``compute`` is linear in the gradients (True unless a method says otherwise)."""
        return True

    def passes(self, x: Tensor) -> Iterator[Pass]:
        """The forward passes of one call; by default one pass on the images themselves."""
        yield Pass(x, torch.arange(x.shape[0], device=x.device))

    @abstractmethod
    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        """Prepare the input and hooks for one forward pass."""

    def model_for_call(self, model: nn.Module) -> nn.Module:
        """The module this call runs: the model itself, unless the method must change modules (LRP's
        rules and canonizers), which it then does on a private copy so that no other thread sees it."""
        return model

    def after_forward(self, rec: Recording) -> None:
        """Called after the forward pass: fill ``rec.tensors`` from what was recorded."""

    @abstractmethod
    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        """Maps (R, B, h, w) from the recording and gradients (R, B, ...) of each recorded tensor."""

    def options(self) -> dict[str, Any]:
        """The method's settings, for provenance in saved results."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class InputMethod(Method):
    """A method whose map lives in input space: it differentiates the model input itself, and its
    per-channel attributions are summed over colour channels unless ``keep_channels``."""

    keep_channels: bool = False
    windows = True

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        xin = x.detach().requires_grad_(True)
        return Recording(input=xin, tensors=[xin])

    def channels(self, a: Tensor) -> Tensor:
        """(R, rows, C, H, W) attributions -> maps: (R, rows, H, W), or kept per channel."""
        return a if self.keep_channels else a.sum(2)


# Rows (path points, noisy copies) per forward pass of a sampling method when none is given: memory does not
# grow with the number of images (32 path points of one 224² image through EfficientNet-Lite0 took 2.6 GB
# at once; 16 rows take half), and a batch of 16 keeps the passes efficient.
INTERNAL_BATCH_SIZE = 16


def check_internal_batch_size(size: int | None) -> int:
    """``internal_batch_size`` (rows per forward pass of a sampling method): at least 1; None is
    `INTERNAL_BATCH_SIZE`."""
    if size is None:
        return INTERNAL_BATCH_SIZE
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ClassContrastError(f"internal_batch_size must be a whole number of at least 1, got {size!r}")
    return int(size)


def row_chunks(total: int, size: int | None, device: torch.device) -> Iterator[Tensor]:
    """The row indices 0 … total−1 in consecutive chunks of at most ``size`` (None: one chunk)."""
    step = size or total
    for first in range(0, total, step):
        yield torch.arange(first, min(first + step, total), device=device)
