r"""Guided Backpropagation, Guided GradCAM and Deconvolution, with every contrast.

Guided Backpropagation (Springenberg et al. 2015) back-propagates through every rectifier module (``nn.ReLU``,
``nn.ReLU6``) only the positive part of the gradient it receives: a ReLU's gradient becomes
$\mathrm{ReLU}(g)\cdot[x>0]$ (a ReLU6's $\mathrm{ReLU}(g)\cdot[0<x<6]$; Captum's ``GuidedBackprop``: its hook
rectifies the ReLU's input gradient, the same thing). Captum touches ``nn.ReLU`` only, so on a network of ReLU6
(MobileNet, EfficientNet-Lite: the embedded model) its guided map is the plain gradient; here the rule acts there too,
and a model with no rectifier module at all gets a warning. ReLUs written as functions (``F.relu``) are not modules
and keep their ordinary gradient, as in Captum. Rectifying the gradient is not linear in it: every objective is
back-propagated on its own. Deconvolution (Zeiler & Fergus 2014) passes $\mathrm{ReLU}(g)$ whatever the
rectifier's input (`Deconvolution`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastWarning
from ..spatial import resize
from .base import InputMethod, Pass, Recording
from .cam import LayerMethod, LayerReading, gradcam_map


class _Rectified(torch.autograd.Function):
    """The identity forward; backward passes only the positive part of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp_min(0)


RECTIFIERS = (nn.ReLU, nn.ReLU6)  # the modules a ReLU rule acts on (Captum's: nn.ReLU alone)


def relu_modules(model: nn.Module, method: str) -> list[nn.Module]:
    """The rectifier modules (`RECTIFIERS`) a ReLU rule acts on, with a warning when there is none (activations
    such as GELU or SiLU, or ``F.relu`` written as a function): the map is then the plain gradient's."""
    found: list[nn.Module] = [m for m in model.modules() if isinstance(m, RECTIFIERS)]
    if not found:
        others = sorted({type(m).__name__ for m in model.modules() if type(m).__module__ == nn.ReLU.__module__})
        which = f" (its activations: {', '.join(others)})" if others else ""
        warnings.warn(f"{method}: {type(model).__name__} has no ReLU or ReLU6 module{which}: its rule changes "
                      "nothing and the map is the input gradient's", ClassContrastWarning, stacklevel=2)
    return found


def guide_relus(model: nn.Module, state: dict[str, Any], stack: ExitStack, method: str = "guided_backprop") -> None:
    """Hooks (removed when ``stack`` closes) making every rectifier module of ``model`` guided in the backward pass,
    unless ``state["guided"]`` is False when its forward runs."""

    def hook(module: nn.Module, args: Any, out: Tensor) -> Tensor | None:
        return _Rectified.apply(out) if state.get("guided", True) else None

    for module in relu_modules(model, method):
        stack.enter_context(module.register_forward_hook(hook))


class _ReluRule(InputMethod):
    """An input gradient whose rectifier modules pass back another rule (`rule`), summed over colour channels unless
    ``keep_channels``; not linear in the gradient."""

    batched_vjp = False
    windows = False  # its hooks act on the model's layers, which a sliding window runs once per window

    def __init__(self, keep_channels: bool = False) -> None:
        self.keep_channels = keep_channels

    @property
    def linear(self) -> bool:
        return False

    def rule(self, model: nn.Module, state: dict[str, Any], stack: ExitStack) -> None:
        """Register the ReLUs' rule on ``model`` until ``stack`` closes."""
        raise NotImplementedError

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        rec = super().record(model, x, stack)
        self.rule(model, rec.state, stack)
        return rec

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        return self.channels(grads[0])


class GuidedBackprop(_ReluRule):
    r"""Guided Backpropagation: $\phi = \partial^{\mathrm{guided}} O/\partial x$, the input gradient with every
    rectifier module's backward rectified (module docstring), summed over colour channels unless ``keep_channels``.
    Signed (the first layer's weights give the input gradient both signs)."""

    name = "guided_backprop"

    aliases = ("guided_backpropagation",)

    def rule(self, model: nn.Module, state: dict[str, Any], stack: ExitStack) -> None:
        guide_relus(model, state, stack)


class GuidedGradCAM(LayerMethod):
    r"""Guided GradCAM (Selvaraju et al. 2017): $\phi = \partial^{\mathrm{guided}} O/\partial x \odot
    \uparrow\!M_{\mathrm{GradCAM}}$, the guided gradient times the GradCAM map upsampled (linearly) to the input,
    summed over colour channels unless ``keep_channels``. The GradCAM map is signed unless ``relu=True``
    (Captum's ``GuidedGradCam`` rectifies it; its default upsampling is nearest).

    Two backward passes per objective, as Captum's: GradCAM from the ordinary gradient at ``layer``, the guided
    gradient with the ReLUs rectified (a ReLU after the layer would otherwise change GradCAM's gradient too).
    """

    option_help: ClassVar[dict[str, str]] = {"keep_channels": "per-channel maps in --save-maps (drawn: their sum)"}

    name = "guided_gradcam"
    batched_vjp = False  # two passes on the images themselves: the targets come from the first, the map is the second's

    def __init__(self, layer: Any = None, relu: bool = False, keep_channels: bool = False) -> None:
        super().__init__(layer, relu)
        self.keep_channels = keep_channels

    @property
    def linear(self) -> bool:
        return False

    def options(self) -> dict[str, object]:
        return {**LayerReading.options(self), "keep_channels": self.keep_channels}  # no smoothing options

    def passes(self, x: Tensor) -> Iterator[Pass]:
        rows = torch.arange(x.shape[0], device=x.device)
        shared: dict[str, Tensor] = {}  # this call's GradCAM maps, from the first pass to the second
        yield Pass(x, rows, {"guided": False, "shared": shared})
        yield Pass(x, rows, {"guided": True, "shared": shared})

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        rec = super().record(model, x, stack)
        rec.input = x.detach().requires_grad_(True)
        guide_relus(model, rec.state, stack, self.name)
        return rec

    def after_forward(self, rec: Recording) -> None:
        if rec.state["guided"]:
            rec.tensors = [rec.input]
        else:
            super().after_forward(rec)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        x = rec.input
        if not rec.state["guided"]:
            cam = gradcam_map(rec.tensors[0].detach(), grads[0])
            cam = cam.clamp_min(0) if self.relu else cam
            rec.state["shared"]["cam"] = resize(cam, x.shape[2:])
            shape = (*cam.shape[:2], *x.shape[1:]) if self.keep_channels else (*cam.shape[:2], *x.shape[2:])
            return cam.new_zeros(shape)
        out: Tensor = grads[0] * rec.state["shared"]["cam"][:, :, None]
        return out if self.keep_channels else out.sum(2)




class _Deconvolved(torch.autograd.Function):
    """The rectifier's output (given) forward; backward passes the positive part of the gradient to the rectifier's
    input whatever its sign (DeconvNet)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, out: Tensor) -> Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad.clamp_min(0), None


def deconvolve_relus(model: nn.Module, stack: ExitStack) -> None:
    """Hooks (removed when ``stack`` closes) giving every rectifier module of ``model`` DeconvNet's backward pass: its
    output is tied to its input by `_Deconvolved` (an in-place ReLU is given a copy of its input, so that its input
    keeps its values)."""
    inputs: dict[int, Tensor] = {}

    def before(module: nn.Module, args: Any) -> Any:
        inputs[id(module)] = args[0]
        return (args[0].clone(), *args[1:]) if getattr(module, "inplace", False) else None

    def after(module: nn.Module, args: Any, out: Tensor) -> Any:
        return _Deconvolved.apply(inputs.pop(id(module)), out.detach())

    for module in relu_modules(model, "deconvolution"):
        stack.enter_context(module.register_forward_pre_hook(before))
        stack.enter_context(module.register_forward_hook(after))


class Deconvolution(_ReluRule):
    r"""Deconvolution (Zeiler & Fergus 2014; Captum's ``Deconvolution``): $\phi = \partial^{\mathrm{deconv}}
    O/\partial x$, the input gradient with every rectifier module's backward replaced by $\mathrm{ReLU}(g)$ — the
    positive part of the gradient it receives, whatever the sign of its input —, summed over colour channels unless
    ``keep_channels``. ReLUs written as functions keep their gradient, as in Captum; ReLU6 modules, which Captum
    leaves alone, get the rule (module docstring). Not linear in the gradient:
    every objective is back-propagated on its own."""

    name = "deconvolution"
    aliases = ("deconvnet",)

    def rule(self, model: nn.Module, state: dict[str, Any], stack: ExitStack) -> None:
        deconvolve_relus(model, stack)


__all__ = ["RECTIFIERS", "Deconvolution", "GuidedBackprop", "GuidedGradCAM", "deconvolve_relus", "guide_relus",
           "relu_modules"]
