"""The method axis: how activations and the gradient of one scalar become a map."""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
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


def _describe(hint: Any) -> str:
    """How an option's type reads in an error: ``a whole number``, ``True or False``..."""
    names = {bool: "True or False", int: "a whole number", float: "a finite number", str: "a string",
             Tensor: "a tensor", nn.Module: "a module", type(None): "None"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        return "a tuple of whole numbers"
    return getattr(hint, "__name__", str(hint))


_NO = object()  # a value that does not fit a type


def _fit(value: Any, hint: Any) -> Any:
    """``value`` as an option of type ``hint`` (an integral float as an int, a NumPy number as Python's), or `_NO`."""
    import numbers

    import numpy as np

    if hint is type(None):
        return value if value is None else _NO
    if hint is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else _NO
    if hint is int:
        if isinstance(value, (bool, np.bool_)):
            return _NO
        if hasattr(value, "__index__") and not isinstance(value, Tensor):
            return operator.index(value)
        return int(value) if isinstance(value, float) and value.is_integer() else _NO
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        return float(value) if ok and math.isfinite(float(value)) else _NO
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (tuple, list)):
            return _NO
        items = [_fit(v, int) for v in value]
        return _NO if any(v is _NO for v in items) else tuple(items)
    if isinstance(hint, type) and hint in (str, Tensor, nn.Module):
        return value if isinstance(value, hint) else _NO
    return value  # Any, or a type the checks do not know: as given


def check_option(method: str, option: str, value: Any, hint: Any) -> Any:
    """One option of a method checked against its declared type (a union: any of its members): integers must be
    whole numbers (``samples=2.5`` is not 2), booleans ``True``/``False`` (``relu="no"`` is not ``True``), numbers
    finite; a one-line error naming the method and the option. Returns the value, normalised."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    for member in members:
        fitted = _fit(value, member)
        if fitted is not _NO:
            return fitted
    wanted = " or ".join(dict.fromkeys(_describe(m) for m in members))
    raise ClassContrastError(f"{method}: {option} must be {wanted}, got {value!r}")


def _hints(init: Callable[..., None]) -> dict[str, Any]:
    """The resolved annotations of an ``__init__`` (none when they cannot be resolved: a user's method with
    annotations its module cannot evaluate is not checked)."""
    try:
        return typing.get_type_hints(init)
    except Exception:
        return {}


def _checked(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` with every option checked against its annotation first (`check_option`)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(self: Method, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as e:
            raise ClassContrastError(f"{getattr(self, 'name', type(self).__name__)}: {e}") from e
        hints = _hints(init)
        for option in list(bound.arguments)[1:]:
            if option in hints and signature.parameters[option].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                bound.arguments[option] = check_option(getattr(self, "name", type(self).__name__), option,
                                                       bound.arguments[option], hints[option])
        init(*bound.args, **bound.kwargs)

    checked._checked = True  # type: ignore[attr-defined]
    return checked


class Method(ABC):
    """An explanation method: what both kinds share (`GradientMethod`: maps from the gradient of each objective;
    `classcontrast.methods.perturbation.PerturbationMethod`: maps from the objectives' values on perturbed inputs).

    ``record`` registers the method's hooks for a forward pass on the ``ExitStack`` and returns a `Recording`;
    ``after_forward`` reads what the hooks recorded. ``linear`` is True when the map is linear in the
    back-propagated gradient (activations fixed): then every contrast identity holds exactly, e.g. probability =
    p_t(1-p_t)·weighted, and the engine back-propagates only a basis of the objectives' gradients (see `low_rank`).
    """

    name: ClassVar[str]
    # the names peers give this method (Captum's, pytorch-grad-cam's), accepted wherever one is named; not inherited
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every method's options are checked against their annotations when it is made (`check_option`)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checked", False):
            cls.__init__ = _checked(init)  # type: ignore[method-assign]

    # True: the method reads only the input (and its gradient), so a model run window by window
    # (`classcontrast.models.windows.SlidingWindow`, whose layers run once per window) is explained by it
    windows: ClassVar[bool] = False
    # appended to the one-line error when a map has NaN or infinite values (what in the method can make them)
    nonfinite_hint: ClassVar[str] = " (check the model in float64, and the method's options)"

    @property
    def linear(self) -> bool:
        """Whether the map is linear in the gradients (True unless a method says otherwise)."""
        return True

    @abstractmethod
    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        """Prepare the input and hooks for one forward pass."""

    def model_for_call(self, model: nn.Module) -> nn.Module:
        """The module this call runs: the model itself, unless the method must change modules (LRP's
        rules and canonizers), which it then does on a private copy so that no other thread sees it."""
        return model

    def after_forward(self, rec: Recording) -> None:
        """Called after the forward pass: fill ``rec.tensors`` from what was recorded."""

    def options(self) -> dict[str, Any]:
        """The method's settings, for provenance in saved results."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class GradientMethod(Method):
    """A back-propagation explanation method.

    Lifecycle of one call (driven by [`explain`][classcontrast.engine.explain]): for each forward pass given by
    ``passes`` (one, on the images themselves, for most methods), ``record`` registers hooks on the
    ``ExitStack`` (removed when the pass's backward is done) and returns a `Recording`; the
    engine runs the forward pass, calls ``after_forward``, back-propagates R objectives from the logits
    to ``Recording.tensors`` and calls ``compute`` with gradients of shape (R, rows, ...), which returns
    (R, rows, h, w) maps. Rows belonging to the same image are summed.

    ``batched_vjp`` is False for methods whose backward pass cannot be vectorised over objectives.
    """

    batched_vjp: ClassVar[bool] = True
    # False: the map ignores the gradient's values (EigenCAM): no backward pass is run, ``compute`` gets zero
    # gradients of the right shapes
    reads_gradient: ClassVar[bool] = True
    # True: the model runs on other inputs than the images (IG path points, noisy copies): targets and
    # logits come from a clean forward pass of their own, the contrast from each pass's output (an option may set it)
    multipass: bool = False
    # appended to the one-line error when the backward pass fails (what the method cannot handle)
    backward_hint: ClassVar[str] = ""

    def passes(self, x: Tensor) -> Iterator[Pass]:
        """The forward passes of one call; by default one pass on the images themselves."""
        yield Pass(x, torch.arange(x.shape[0], device=x.device))

    @abstractmethod
    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        """Maps (R, B, h, w) from the recording and gradients (R, B, ...) of each recorded tensor."""


class InputMethod(GradientMethod):
    """A method whose map lives in input space: it differentiates the model input itself, and its
    per-channel attributions are summed over colour channels unless ``keep_channels``."""

    option_help: ClassVar[dict[str, str]] = {
        "keep_channels": "per-channel maps in --save-maps (drawn: their sum)",
        "internal_batch_size": "rows (path points, noisy copies) per forward pass: bounds memory, the maps are the "
                               "same"}

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
