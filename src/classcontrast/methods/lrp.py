"""Layer-wise Relevance Propagation through zennit, with the contrast's gradient as output relevance."""

from __future__ import annotations

import copy
import inspect
import itertools
from contextlib import ExitStack
from typing import Any, ClassVar

from torch import Tensor, nn

from ..errors import ClassContrastError, first_line
from .base import InputMethod, Recording

# zennit composites whose rules are linear in the incoming relevance (guided backprop and deconvnet
# rectify it), so every contrast map is the same linear combination of per-class maps
LINEAR_COMPOSITES = {"epsilon_gamma_box", "epsilon_plus", "epsilon_alpha2_beta1", "epsilon_plus_flat",
                     "epsilon_alpha2_beta1_flat", "excitation_backprop", "beta_smooth"}


def _zennit() -> Any:
    try:
        import zennit.canonizers
        import zennit.composites
    except ImportError as e:  # pragma: no cover - zennit is a dependency
        raise ClassContrastError("the lrp method needs zennit: pip install zennit") from e
    return zennit


def auto_canonizers(model: nn.Module) -> list[Any]:
    """zennit's canonizers for ``model``: those its family's adapter registers (`classcontrast.models.architectures`:
    zennit's VGG / ResNet canonizers for torchvision's VGG and ResNet), else BatchNorm merging for a network with
    BatchNorm, none otherwise."""
    from ..models.architectures import canonizers_for

    zennit = _zennit()
    known = canonizers_for(model)
    if known is not None:
        return known
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return [zennit.canonizers.SequentialMergeBatchNorm()]
    return []


class LRP(InputMethod):
    r"""Layer-wise Relevance Propagation by zennit's rules, started from the contrast's gradient:

    the output relevance is $\partial O/\partial y$ (``original``: $e_t$; ``probability``:
    $p_t(e_t - p)$, i.e. exactly Softmax-Gradient LRP, Iwana et al. 2019; ``weighted``: SGLRP divided
    by $p_t(1-p_t)$; ``Foil(s)``: $e_t - e_s$, the relevance of t against s), propagated to
    the input with the rules of ``composite`` (a name in zennit's registry, default
    ``epsilon_plus_flat``, or a zennit ``Composite``), summed over colour channels unless
    ``keep_channels``. For ``epsilon_gamma_box`` the box is the batch's per-channel value range (give a
    zennit ``EpsilonGammaBox`` for other bounds).

    ``canonizer``: ``"auto"`` (zennit's VGG / ResNet canonizers for torchvision VGG and ResNet,
    BatchNorm merging for other networks with BatchNorm), ``"none"``, or zennit canonizer(s). Rules,
    canonizers and hooks exist only during the call; the model is left as it was, also when zennit raises.

    The logits, targets and output relevance are those of the canonized model, whose relevance is
    propagated (as zennit's own attributor does with an output-relevance function). zennit's merged
    BatchNorm computes x/√(1+ε) instead of x, which moves them from the model's own in the fifth digit.
    """

    option_help: ClassVar[dict[str, str]] = {"composite": "a zennit composite", "canonizer": "auto | none"}

    name = "lrp"
    windows = False  # zennit's rules hook the layers, which run once per window
    batched_vjp = False  # zennit's rules run in Python backward hooks, one objective at a time
    backward_hint = (" (zennit's rules cover convolutional, linear, pooling, normalisation and activation layers; "
                     "a layer such as a Vision Transformer's nn.MultiheadAttention has none)")

    def __init__(self, composite: str | Any = "epsilon_plus_flat", canonizer: str | Any = "auto",
                 keep_channels: bool = False) -> None:
        registry = _zennit().composites.COMPOSITES
        if isinstance(composite, str) and composite not in registry:
            names = ", ".join(sorted(registry))
            raise ClassContrastError(f"unknown LRP composite {composite!r}; choose one of {names}")
        if isinstance(canonizer, str) and canonizer not in ("auto", "none"):
            raise ClassContrastError(f"unknown canonizer {canonizer!r}; choose auto, none or give zennit canonizers")
        self.composite = composite
        self.canonizer = canonizer
        self.keep_channels = keep_channels

    @property
    def linear(self) -> bool:
        return isinstance(self.composite, str) and self.composite in LINEAR_COMPOSITES

    def options(self) -> dict[str, object]:
        def label(v: Any) -> object:
            return v if isinstance(v, str) else type(v).__name__

        return {"composite": label(self.composite), "canonizer": label(self.canonizer),
                "keep_channels": self.keep_channels}

    def canonizers(self, model: nn.Module) -> list[Any]:
        if self.canonizer == "auto":
            return auto_canonizers(model)
        if self.canonizer in ("none", None):
            return []
        return list(self.canonizer) if isinstance(self.canonizer, (list, tuple)) else [self.canonizer]

    def model_for_call(self, model: nn.Module) -> nn.Module:
        """A private copy of the model: zennit's canonizers rewrite parameters (BatchNorm merged into the
        weights) and its rules hook every module for every thread, so on the shared model a plain forward
        pass in another thread would be wrong, and would corrupt the relevance.

        The copy's modules are new; its parameters and buffers are new tensor objects that share the
        originals' memory (no weights are copied). zennit rebinds them (``p.data = ...``, never in place),
        which changes only the copy's objects: the caller's model is never touched (tested against plain
        forward passes in other threads). A canonizer of your own that writes into a parameter's memory in
        place would reach the shared memory: give ``canonizer="none"`` or one that rebinds."""
        memo: dict[int, object] = {}
        for t in itertools.chain(model.parameters(), model.buffers()):
            if id(t) not in memo:
                memo[id(t)] = nn.Parameter(t.detach(), t.requires_grad) if isinstance(t, nn.Parameter) else t.detach()
        try:
            return copy.deepcopy(model, memo)
        except Exception as e:  # e.g. a module holding a lock or an open file
            raise ClassContrastError(f"lrp runs on a private copy of the model, and {type(model).__name__} "
                                     f"cannot be copied: {first_line(e)}") from e

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        if isinstance(self.composite, str):  # a fresh composite per call: composites hold per-model state
            cls = _zennit().composites.COMPOSITES[self.composite]
            kwargs: dict[str, Any] = {"canonizers": self.canonizers(model)}
            if "low" in inspect.signature(cls).parameters:  # ZBox's input domain: the batch's channel range
                kwargs["low"] = x.detach().amin((0, 2, 3), keepdim=True)
                kwargs["high"] = x.detach().amax((0, 2, 3), keepdim=True)
            composite = cls(**kwargs)
        else:
            composite = self.composite
        try:
            stack.enter_context(composite.context(model))
        except Exception as e:
            composite.remove()  # a registration that failed half-way is undone too
            raise ClassContrastError(f"zennit could not apply LRP to {type(model).__name__}: {first_line(e)}") from e
        return super().record(model, x, stack)

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        return self.channels(grads[0])  # the relevance
